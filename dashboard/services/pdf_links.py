"""Invoice PDF links: linked only when plainly https on a host Cloudflare's invoices use
(``INVOICE_PDF_HOSTS``); any other address is shown as text, never linked."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

#: A withheld address is shown cut to this many characters.
MAX_SHOWN_URL = 60


@dataclass(frozen=True)
class PdfLink:
    """An invoice's PDF: ``url`` to link, or ``text`` (the address as sent) not to link."""

    url: str | None = None
    text: str | None = None

    @property
    def withheld(self) -> bool:
        return self.url is None and self.text is not None


def safe_pdf_url(url: str | None, hosts: Collection[str]) -> str | None:
    """The address to link, or None unless ``url`` is plainly https on an allowed host. Strict:
    no user info, no port but 443, no control characters, spaces or backslashes (browsers read
    them as ``/``), an ASCII host matched exactly; rebuilt from the parts checked, it is what the
    browser follows."""
    if not url or len(url) > 2048:
        return None
    if any(ord(char) <= 0x20 or ord(char) == 0x7F or char == "\\" for char in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = parts.hostname
    if parts.scheme != "https" or not host or not host.isascii():
        return None
    # The host alone or with ":443": this rules out user info (an "@") and any other port.
    if parts.netloc.lower() not in (host, f"{host}:443"):
        return None
    if host not in {h.lower() for h in hosts}:
        return None
    return urlunsplit(("https", host, parts.path or "/", parts.query, parts.fragment))


def pdf_link(url: str | None, hosts: Collection[str]) -> PdfLink:
    if not url:
        return PdfLink()
    safe = safe_pdf_url(url, hosts)
    if safe is not None:
        return PdfLink(url=safe)
    shown = url if len(url) <= MAX_SHOWN_URL else url[: MAX_SHOWN_URL - 1] + "\u2026"
    return PdfLink(text=shown)
