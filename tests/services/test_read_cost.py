"""What a warm read costs: no new Redis connection per read (the overview's reads run in
pool threads, each keeping its own), and no figures worked out again from a kept read."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis
from django.core.cache import cache
from django.urls import reverse

from dashboard.services import runway
from dashboard.settings import BILLING_ACCOUNTS
from tests.conftest import OVERVIEW_URL


def test_warm_overviews_open_no_new_redis_connections(
    redis_cache, lead_client, settings, monkeypatch
):
    assert lead_client.get(OVERVIEW_URL).status_code == 200
    assert lead_client.get(OVERVIEW_URL).status_code == 200
    opened: list[object] = []
    # ``connect`` is called for every command (and returns at once when connected);
    # ``_connect`` opens a socket.
    real_connect = redis.connection.Connection._connect

    def counting_connect(self: Any) -> Any:
        opened.append(self)
        return real_connect(self)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(redis.connection.Connection, "_connect", counting_connect)
    views = 12
    for _ in range(views):
        assert lead_client.get(OVERVIEW_URL).status_code == 200
    assert cache.get("no-such-key") is None
    # Each pool thread keeps its connection (a new thread opens one): at most one per thread,
    # however many views. A connection per read would be 4 per view, 48 here.
    assert len(opened) <= settings.BILLING_FETCH_WORKERS < 4 * views, (
        f"{len(opened)} Redis connections opened by {views} warm overviews"
    )


def test_the_usage_figures_are_worked_out_once_per_cache_period(
    redis_cache, lead_client, monkeypatch
):
    grouped: list[object] = []
    real = runway.daily_totals

    def counting(*args: Any, **kwargs: Any) -> Any:
        grouped.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(runway, "daily_totals", counting)
    for _ in range(3):
        assert lead_client.get(OVERVIEW_URL).status_code == 200
    assert lead_client.get(reverse("dashboard:all_accounts")).status_code == 200
    # Grouped into days when read from Cloudflare, once per account; kept with the read.
    assert len(grouped) == len(BILLING_ACCOUNTS)


def test_a_warm_overview_reads_in_the_request_thread(redis_cache, lead_client, monkeypatch):
    assert lead_client.get(OVERVIEW_URL).status_code == 200
    assert "aria-busy" not in lead_client.get(OVERVIEW_URL).content.decode()
    submitted: list[object] = []
    real_submit = ThreadPoolExecutor.submit

    def counting_submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        submitted.append(fn)
        return real_submit(self, fn, *args, **kwargs)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", counting_submit)
    assert lead_client.get(OVERVIEW_URL).status_code == 200
    # Handing kept reads to pool threads cost more than the reads themselves.
    assert submitted == []


def test_a_warm_overview_costs_five_queries(
    redis_cache, admin_client, django_assert_max_num_queries
):
    assert admin_client.get(OVERVIEW_URL).status_code == 200
    # The user; their permissions (their own and their roles') with their granted accounts;
    # the account's alert rules (runway threshold, firing alerts, cap banner); unsettled
    # top-ups; the limit card's refusal: 5, where the rights took three queries and the
    # rules two.
    with django_assert_max_num_queries(5):
        assert admin_client.get(OVERVIEW_URL).status_code == 200
