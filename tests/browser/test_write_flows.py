"""The write flows in a real browser: the auto top-up rule, the spending limit, a refusal by
Cloudflare, a read that fails, a double-clicked top-up and the usage export.

Each test waits on elements and URLs (Playwright's expectations), never on sleeps.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from playwright.sync_api import Page, expect

from billing_api.simulator import Simulator
from tests.browser.conftest import HTMX_IDLE, confirm_topup, login, screenshot
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL

# The live server needs a transactional database; the roles (groups) come from migrations,
# so they are put back after each test's flush.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

AUTO_TOPUP_URL = f"{OVERVIEW_URL}auto-top-up/"
LIMIT_URL = f"{OVERVIEW_URL}spending-limit/"
TOPUPS_URL = f"{OVERVIEW_URL}topups/"
USAGE_URL = f"{OVERVIEW_URL}usage/"
MONEY = re.compile(r"-?\$[\d,]+\.\d\d")


def fill_rule(page: Page, threshold: str, amount: str) -> None:
    """Types the rule into the sentence's two inputs, one at a time.

    Each input checks itself when it changes (an htmx request, synced on the form with
    ``replace``): a second check that starts while the first is out aborts it, and htmx logs
    that abort as a console error (reported as a bug). So the test leaves each input (its
    ``change``) and waits for its check to end before typing into the next one.
    """
    form = page.locator("#auto-topup-form")
    for label, value in (
        ("Threshold, in dollars", threshold),
        ("Amount to add, in dollars", amount),
    ):
        field = form.get_by_label(label)
        field.fill(value)
        with page.expect_request_finished(lambda r: "intent=validate" in (r.post_data or "")):
            field.blur()
        page.wait_for_function(HTMX_IDLE)


def test_a_quick_typist_gets_no_errors_from_the_live_checks(page, live_server, admin, sim):
    login(page, live_server, admin, AUTO_TOPUP_URL)
    form = page.locator("#auto-topup-form")
    # No waiting between the inputs: the first input's check is still out when the second
    # one's starts (the page fixture fails the test on any console error).
    form.get_by_label("Threshold, in dollars").fill("12")
    form.get_by_label("Amount to add, in dollars").fill("40")
    form.get_by_label("Threshold, in dollars").fill("13")
    form.get_by_label("Amount to add, in dollars").fill("41")
    page.get_by_role("button", name="Save the rule").click()
    expect(page.locator("#auto-topup-summary")).to_contain_text("$13.00")
    page.wait_for_function(HTMX_IDLE)


def test_admin_changes_then_turns_off_the_auto_top_up_rule(page, live_server, admin, sim):
    login(page, live_server, admin, AUTO_TOPUP_URL)
    summary = page.locator("#auto-topup-summary")
    expect(summary).to_contain_text("When the balance falls below")

    fill_rule(page, "12", "40")
    page.locator("#auto-topup-form").get_by_role("button", name="Save the rule").click()
    rule = "When the balance falls below $12.00, add $40.00."
    expect(page.locator("#auto-topup-form .notice-success")).to_contain_text(
        f"Auto top-up rule saved. {rule}"
    )
    expect(summary).to_contain_text(rule)
    config = sim.account(ACCOUNT_ID).topup_config
    assert (config.threshold, config.amount) == (1200, 4000)
    screenshot(page, "auto-topup-saved")

    page.get_by_role("link", name="Turn auto top-up off…").click()
    page.wait_for_url(re.compile(r"/auto-top-up/delete/$"))
    confirm = page.locator("#auto-topup-delete")
    expect(confirm).to_contain_text("Turn auto top-up off?")
    expect(confirm).to_contain_text(rule)
    confirm.get_by_role("button", name="Turn auto top-up off").click()
    page.wait_for_url(re.compile(re.escape(AUTO_TOPUP_URL) + "$"))
    expect(page.locator(".messages")).to_contain_text("Auto top-up is off.")
    expect(summary).to_contain_text("Auto top-up is off.")
    expect(page.locator("#auto-topup-form-title")).to_have_text("Set up auto top-up")
    assert sim.account(ACCOUNT_ID).topup_config.amount is None
    assert sim.account(ACCOUNT_ID).topup_config.threshold is None


def test_admin_sets_a_limit_that_is_already_used_up(page, live_server, admin, sim):
    login(page, live_server, admin, LIMIT_URL)
    form = page.locator("#spending-limit-form")
    form.get_by_label("Limit, in dollars").fill("1")
    form.get_by_role("radio", name=re.compile(r"^Monthly")).check()
    form.get_by_role("radio", name=re.compile(r"^Fixed")).check()
    save = form.get_by_role("button", name=re.compile(r"^(Set|Save) the limit$"))
    save.click()

    impact = page.locator("#spending-limit-form .impact")
    expect(impact).to_contain_text(re.compile(r"This blocks gateway traffic now: \$[\d,]+\.\d\d"))
    expect(impact).to_contain_text("already spent this month")
    assert sim.calls["POST spending-limit"] == 0

    impact.get_by_label("I understand this stops AI traffic now").check()
    save.click()
    expect(page.locator("#spending-limit-form .notice-success")).to_contain_text(
        "Spending limit set: $1.00"
    )
    expect(page.locator("#spending-limit-summary")).to_contain_text("the limit is reached")
    limit = sim.account(ACCOUNT_ID).spending_limit
    assert (limit.amount, limit.duration, limit.strategy) == (100, "monthly", "fixed")
    assert sim.calls["POST spending-limit"] == 1
    # Only at the end: a screenshot leaves style="" on the inputs (Playwright hides the caret),
    # which htmx's settling would copy onto the swapped-in form, against the style-src policy.
    screenshot(page, "spending-limit-set")


def test_cloudflare_refuses_the_rule_in_current_mode(
    page, live_server, admin, current_mode: Simulator
):
    login(page, live_server, admin, AUTO_TOPUP_URL)
    fill_rule(page, "12", "40")
    page.locator("#auto-topup-form").get_by_role("button", name="Save the rule").click()

    form = page.locator("#auto-topup-form")
    refusal = form.locator(".refusal")
    expect(refusal).to_contain_text("Cloudflare refused this on")
    expect(refusal).to_contain_text("only from its own dashboard")
    # What was typed is still there, in the (now disabled) form.
    for label, value in (("Threshold, in dollars", "12"), ("Amount to add, in dollars", "40")):
        expect(form.get_by_label(label)).to_have_value(value)
        expect(form.get_by_label(label)).to_be_disabled()  # in the disabled fieldset
    assert current_mode.account(ACCOUNT_ID).topup_config.amount != 4000
    screenshot(page, "auto-topup-refused")

    page.reload()
    refusal = page.locator("#auto-topup-form .refusal")
    expect(refusal).to_contain_text("Cloudflare refused this on")
    threshold = page.locator("#auto-topup-form").get_by_label("Threshold, in dollars")
    expect(threshold).to_be_visible()
    # The notice comes before the form in the document.
    assert refusal.evaluate(
        "(notice, input) => !!(notice.compareDocumentPosition(input)"
        " & Node.DOCUMENT_POSITION_FOLLOWING)",
        threshold.element_handle(),
    )


def test_the_overview_survives_a_failing_spending_limit_read(page, live_server, finance, sim):
    sim.set_fault("GET spending-limit", "error", status=503)
    login(page, live_server, finance, OVERVIEW_URL)
    limit_card = page.locator("#limit-card")
    expect(limit_card).not_to_have_attribute("aria-busy", "true")
    expect(limit_card.locator(".notice")).to_be_visible()
    expect(limit_card.locator(".notice")).not_to_be_empty()
    expect(limit_card.locator(".figure-line")).to_have_count(0)
    expect(page.locator("#balance-card .balance")).to_have_text(MONEY)
    expect(page.locator("#balance-card .notice")).to_have_count(0)
    screenshot(page, "overview-limit-failing")


def test_a_double_click_on_charge_makes_one_top_up(page, live_server, finance, sim):
    login(page, live_server, finance, TOPUPS_URL)
    charge = confirm_topup(page, "25")
    expect(charge).to_have_text("Charge $25.00")
    charge.dblclick()

    status = page.locator("#topup-status")
    expect(status).to_contain_text("Cloudflare is processing the payment of $25.00")
    sim.advance_clock(6)
    expect(status).to_contain_text("Done: $25.00 was added to the balance.")
    page.wait_for_function(HTMX_IDLE)
    assert sim.calls["POST topup"] == 1
    expect(page.locator("#topup-history")).to_contain_text("Completed")


def test_finance_downloads_the_usage_csv(page, live_server, finance):
    login(page, live_server, finance, USAGE_URL)
    link = page.get_by_role("link", name="Download CSV")
    expect(link).to_be_visible()
    with page.expect_download() as download_info:
        link.click()
    download = download_info.value
    assert download.failure() is None
    assert re.fullmatch(
        rf"usage-{ACCOUNT_ID}-\d{{4}}-\d\d-\d\d-\d{{4}}-\d\d-\d\d-\w+\.csv",
        download.suggested_filename,
    ), download.suggested_filename
    with open(download.path(), encoding="utf-8", newline="") as file:
        rows = list(csv.reader(io.StringIO(file.read())))
    header, *data = rows
    assert re.fullmatch(r"bucket_start \(.+\)", header[0]), header
    assert header[1:] == ["bucket_start_utc", "spend_usd"]
    assert data, "no data rows"
    local, utc, spend = data[0]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", local), local
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", utc), utc
    assert re.fullmatch(r"-?\d+\.\d{2,}", spend), spend
    assert all(len(row) == 3 for row in data)


def test_money_is_typed_as_people_type_it(page, live_server, admin, sim):
    login(page, live_server, admin, TOPUPS_URL)
    expect(confirm_topup(page, "$1,000")).to_have_text("Charge $1,000.00")

    page.goto(f"{live_server.url}{TOPUPS_URL}")
    form = page.locator("#topup-form")
    form.get_by_label("Amount (US dollars)").fill("1e3")
    form.get_by_role("button", name="Continue").click()
    expect(form.locator(".field-error")).to_have_text(
        "Enter the amount as plain digits, such as 25 or 1,000.50, without an exponent."
    )
    form.get_by_label("Amount (US dollars)").fill("1,000.50")
    form.get_by_role("button", name="Continue").click()
    expect(form.locator(".field-error")).to_have_text(
        "The amount must be between $10.00 and $1,000.00: $1,000.00 is the largest top-up "
        "for this account."
    )
    expect(form.get_by_label("Amount (US dollars)")).to_have_value("1,000.50")
    screenshot(page, "topup-amount-out-of-range")

    page.goto(f"{live_server.url}{AUTO_TOPUP_URL}")
    fill_rule(page, "$1,000", "1,000.00")
    expect(page.locator("#auto-topup-feedback .errors")).to_have_count(0)
    page.locator("#auto-topup-form").get_by_role("button", name="Save the rule").click()
    expect(page.locator("#auto-topup-summary")).to_contain_text(
        "When the balance falls below $1,000.00, add $1,000.00."
    )
    assert sim.calls["POST topup"] == 0


def test_the_overview_says_what_cloudflare_did_with_a_limit(page, live_server, admin, sim):
    login(page, live_server, admin, LIMIT_URL)
    form = page.locator("#spending-limit-form")
    form.get_by_label("Limit, in dollars").fill("$50,000")
    form.get_by_role("radio", name=re.compile(r"^Weekly")).check()
    form.get_by_role("button", name=re.compile(r"^(Set|Save) the limit$")).click()
    expect(page.locator("#spending-limit-form .notice-success")).to_contain_text(
        "Spending limit set: $50,000.00 a week"
    )
    page.goto(f"{live_server.url}{OVERVIEW_URL}")
    card = page.locator("#limit-card")
    expect(card.locator(".figure-line")).to_contain_text("$50,000.00 per week")
    expect(card).not_to_contain_text("can no longer be set")
    expect(card.locator(".refusal")).to_have_count(0)
    screenshot(page, "overview-limit-set")


def test_the_overview_says_a_refusal_in_plain_words_first(
    page, live_server, admin, current_mode: Simulator
):
    login(page, live_server, admin, LIMIT_URL)
    form = page.locator("#spending-limit-form")
    form.get_by_label("Limit, in dollars").fill("50,000")
    form.get_by_role("button", name=re.compile(r"^(Set|Save) the limit$")).click()
    expect(form.locator(".refusal")).to_contain_text("Cloudflare refused this on")
    screenshot(page, "spending-limit-refused")

    page.goto(f"{live_server.url}{OVERVIEW_URL}")
    refusal = page.locator("#limit-card .refusal")
    paragraphs = refusal.locator("p")
    expect(paragraphs.first).to_contain_text("Cloudflare no longer lets anyone set or change")
    expect(
        paragraphs.first.get_by_role("link", name="Cloudflare’s dashboard, AI Gateway")
    ).to_be_visible()
    expect(paragraphs.last).to_contain_text("Cloudflare said: “Deprecated:")
    screenshot(page, "overview-limit-refused")
