"""Invoice PDF links: only plain https addresses on allowed hosts are linked."""

from __future__ import annotations

import pytest

from dashboard.services import pdf_links

HOSTS = ("pay.stripe.com", "invoice.stripe.com", "files.stripe.com")


@pytest.mark.parametrize(
    ("url", "linked"),
    [
        (
            "https://pay.stripe.com/invoice/acct_1/in_1/pdf",
            "https://pay.stripe.com/invoice/acct_1/in_1/pdf",
        ),
        (
            "https://invoice.stripe.com/i/acct_1/x?s=ap",
            "https://invoice.stripe.com/i/acct_1/x?s=ap",
        ),
        ("https://files.stripe.com/links/abc", "https://files.stripe.com/links/abc"),
        ("https://PAY.STRIPE.COM/invoice/x", "https://pay.stripe.com/invoice/x"),
        ("HTTPS://pay.stripe.com/invoice/x", "https://pay.stripe.com/invoice/x"),
        ("https://pay.stripe.com:443/invoice/x", "https://pay.stripe.com/invoice/x"),
        ("https://pay.stripe.com", "https://pay.stripe.com/"),
        ("javascript:alert(1)", None),
        ("JaVaScRiPt:alert(1)//https://pay.stripe.com/", None),
        (" javascript:alert(1)", None),
        ("java\tscript:alert(1)", None),
        ("data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==", None),
        ("vbscript:msgbox(1)", None),
        ("http://pay.stripe.com/invoice/x", None),
        ("//pay.stripe.com/invoice/x", None),
        ("/invoice/x", None),
        ("https:pay.stripe.com/invoice/x", None),
        ("https:///pay.stripe.com/invoice/x", None),
        ("https://pay.stripe.com.evil.test/", None),
        ("https://evil.test/pay.stripe.com", None),
        ("https://evilpay.stripe.com/", None),
        ("https://stripe.com/", None),
        ("https://pay.stripe.com./invoice/x", None),
        ("https://user@evil.test@pay.stripe.com/", None),
        ("https://pay.stripe.com@evil.test/", None),
        ("https://user:pass@pay.stripe.com/", None),
        ("https://pay.stripe.com\\@evil.test/", None),
        ("https://pay.stripe.com:8443/invoice/x", None),
        ("https://pay.stripe.com:99999/", None),
        ("https://pay.stripe.com:abc/", None),
        ("https://pаy.stripe.com/invoice/x", None),  # Cyrillic "а"
        ("https://xn--py-8kc.stripe.com/invoice/x", None),
        ("https://pay%2estripe.com/invoice/x", None),
        ("https://[::1]/invoice/x", None),
        ("https://pay.stripe.com/in voice", None),
        ("https://pay.stripe.com/\ninvoice", None),
        ("https://pay.stripe.com/" + "a" * 2100, None),
        ("", None),
        (None, None),
    ],
)
def test_it_links_only_plain_https_addresses_on_allowed_hosts(url, linked):
    assert pdf_links.safe_pdf_url(url, HOSTS) == linked


def test_it_matches_allowed_hosts_whatever_their_case():
    assert pdf_links.safe_pdf_url("https://pay.stripe.com/x", ["PAY.Stripe.com"]) is not None


def test_it_shows_a_refused_address_as_text_shortened():
    link = pdf_links.pdf_link("javascript:alert(1)", HOSTS)
    assert link == pdf_links.PdfLink(text="javascript:alert(1)") and link.withheld
    long = pdf_links.pdf_link("https://evil.test/" + "x" * 200, HOSTS)
    assert long.text is not None and len(long.text) == pdf_links.MAX_SHOWN_URL
    assert long.text.endswith("…")
    assert pdf_links.pdf_link(None, HOSTS) == pdf_links.PdfLink()
    assert not pdf_links.PdfLink().withheld
