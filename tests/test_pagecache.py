"""The few seconds' page cache of the overview (dashboard/pagecache.py).

What is counted: upstream calls (the simulator's), the ``X-Page-Cache`` header of a kept
answer, and what the page says.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from dashboard import pagecache, roles
from dashboard.models import AccountAccess
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL, PASSWORD

AUTO_TOPUP_URL = f"/accounts/{ACCOUNT_ID}/auto-top-up/"


def upstream_reads(sim) -> int:
    return sum(count for call, count in sim.calls.items() if call.startswith("GET "))


def balance(html: str) -> str:
    match = re.search(r'<p class="balance[^"]*">([^<]*)</p>', html)
    assert match, "no balance on the page"
    return match.group(1)


def kept(response) -> bool:
    return bool(response.get("X-Page-Cache") == "hit")


@pytest.fixture(autouse=True)
def _page_cache_on(settings) -> None:
    settings.PAGE_CACHE_SECONDS = 5
    settings.BILLING_CACHE_SECONDS = 30


def test_a_reload_gets_the_kept_page_without_reading_again(lead_client, sim):
    first = lead_client.get(OVERVIEW_URL)
    assert first.status_code == 200 and not kept(first)
    reads = upstream_reads(sim)
    again = lead_client.get(OVERVIEW_URL)
    assert again.status_code == 200 and kept(again)
    assert again.content == first.content
    assert again["Content-Type"] == first["Content-Type"]
    assert "HX-Request" in again["Vary"]
    assert upstream_reads(sim) == reads


def test_it_is_kept_per_session(lead, sim):
    one, two = Client(), Client()
    assert one.login(username=lead.username, password=PASSWORD)
    assert two.login(username=lead.username, password=PASSWORD)
    one.get(OVERVIEW_URL)
    # The same user in another session (its own CSRF token in the page) gets its own page.
    assert not kept(two.get(OVERVIEW_URL))
    assert kept(one.get(OVERVIEW_URL))


def test_a_card_and_the_whole_page_are_kept_apart(lead_client):
    lead_client.get(OVERVIEW_URL)
    card = lead_client.get(
        OVERVIEW_URL, headers={"HX-Request": "true", "HX-Target": "balance-card"}
    )
    assert card.status_code == 200 and not kept(card)
    assert "<html" not in card.text
    assert kept(lead_client.get(OVERVIEW_URL))


def test_a_page_with_a_failing_card_is_not_kept(lead_client, sim):
    sim.set_fault("GET spending-limit", "error", status=503)
    lead_client.get(OVERVIEW_URL)
    sim.clear_faults()
    # The card asks again at once (after the remembered failure), never from a kept page.
    assert not kept(lead_client.get(OVERVIEW_URL))


def test_it_ends_when_the_figures_stop_being_fresh(lead_client, monkeypatch):
    lead_client.get(OVERVIEW_URL)
    assert kept(lead_client.get(OVERVIEW_URL))
    later = timezone.now() + timedelta(seconds=31)
    monkeypatch.setattr(timezone, "now", lambda: later)
    assert not kept(lead_client.get(OVERVIEW_URL))


def test_a_change_made_here_ends_it_at_once(admin_client, sim):
    before = admin_client.get(OVERVIEW_URL)
    assert "When the balance falls below $7.50, add $1,000.00." not in before.text
    saved = admin_client.post(
        AUTO_TOPUP_URL, {"threshold": "7.50", "amount": "1000", "intent": "save"}
    )
    assert saved.status_code == 302
    after = admin_client.get(OVERVIEW_URL)
    assert not kept(after)
    assert "When the balance falls below $7.50, add $1,000.00." in after.text


def test_forget_ends_it_for_every_session(lead_client, finance_client):
    lead_client.get(OVERVIEW_URL)
    finance_client.get(OVERVIEW_URL)
    pagecache.forget(ACCOUNT_ID)
    assert not kept(lead_client.get(OVERVIEW_URL))
    assert not kept(finance_client.get(OVERVIEW_URL))


def test_a_revoked_grant_is_refused_at_once(lead, lead_client):
    lead_client.get(OVERVIEW_URL)
    AccountAccess.objects.filter(user=lead, account_id=ACCOUNT_ID).delete()
    assert lead_client.get(OVERVIEW_URL).status_code == 404


def test_a_revoked_role_is_refused_at_once(lead, lead_client):
    lead_client.get(OVERVIEW_URL)
    lead.groups.remove(Group.objects.get(name=roles.TEAM_LEAD))
    assert lead_client.get(OVERVIEW_URL).status_code == 403


def test_a_logged_out_session_gets_no_kept_page(lead_client):
    lead_client.get(OVERVIEW_URL)
    lead_client.post("/accounts/logout/")
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_zero_seconds_turns_it_off(lead_client, settings):
    settings.PAGE_CACHE_SECONDS = 0
    lead_client.get(OVERVIEW_URL)
    assert not kept(lead_client.get(OVERVIEW_URL))


def test_a_kept_page_still_shows_the_balance(finance_client, sim):
    first = finance_client.get(OVERVIEW_URL)
    again = finance_client.get(OVERVIEW_URL)
    assert kept(again) and balance(again.text) == balance(first.text)


def test_a_hard_reload_renders_the_page_again(lead_client, sim):
    lead_client.get(OVERVIEW_URL)
    for header in ({"Cache-Control": "no-cache"}, {"Pragma": "no-cache"}):
        assert not kept(lead_client.get(OVERVIEW_URL, headers=header))
    # The page rendered then is kept for the next plain reload.
    assert kept(lead_client.get(OVERVIEW_URL))
