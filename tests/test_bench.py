"""`make bench` counts stale, late and failed cards by words in the overview's HTML.

The benchmark itself is not a test (it runs for minutes and its figures depend on the
machine). What can silently go wrong is cheap to check: if the template changed those words,
or count.lua looked for other ones than the runner, the fault phase would count no stale page
and say nothing. These tests render each state and check the markers both use.
"""

from __future__ import annotations

import re
from pathlib import Path

from bench.run import CARD_MARKERS, FAILED_MARKER, PENDING_MARKER, SCRIPT, STALE_MARKER
from tests.conftest import OVERVIEW_URL, SAFETY_TIMEOUT, hold, wait_for_background_reads


def found(html: str) -> set[str]:
    return {marker for marker in CARD_MARKERS if marker in html}


def test_count_lua_looks_for_the_runners_markers():
    lua = Path(SCRIPT).read_text()
    looked_for = re.findall(r"""has\(body, (?:"([^"]*)"|'([^']*)')\)""", lua)
    assert {double or single for double, single in looked_for} == set(CARD_MARKERS)


def test_a_fresh_overview_has_no_marker(lead_client):
    response = lead_client.get(OVERVIEW_URL)
    assert response.status_code == 200
    assert found(response.text) == set()


def test_a_card_showing_its_last_figures_is_counted_stale(lead_client, sim, settings):
    settings.BILLING_CACHE_SECONDS = 0  # every view asks Cloudflare again
    lead_client.get(OVERVIEW_URL)
    sim.set_fault("GET credit-balance", "error", status=503)
    assert found(lead_client.get(OVERVIEW_URL).text) == {STALE_MARKER}


def test_a_card_with_no_figures_is_counted_failed(lead_client, sim):
    sim.set_fault("GET credit-balance", "error", status=503)  # nothing cached to fall back on
    assert found(lead_client.get(OVERVIEW_URL).text) == {FAILED_MARKER}


def test_a_card_late_for_the_page_is_counted_pending(lead_client, sim, settings):
    settings.BILLING_PAGE_DEADLINE = 0.5
    hold(sim, "GET usage-history", times=1)
    html = lead_client.get(OVERVIEW_URL).text
    # The held read goes on in the background: let it end inside this test.
    assert sim.wait_for_in_flight({"GET usage-history": 1}, SAFETY_TIMEOUT)
    sim.release()
    wait_for_background_reads()
    assert found(html) == {PENDING_MARKER}
