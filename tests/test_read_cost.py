"""What a warm read costs: no second decoding of a kept answer, and no new Redis connection
per read (the overview's reads run in pool threads, each keeping its own).

Counted: calls of ``pickle.loads`` on a kept value, and Redis connections opened.
"""

from __future__ import annotations

import pickle
from datetime import UTC, datetime
from typing import Any

import redis
from django.core.cache import cache

from dashboard import upstream
from tests.conftest import OVERVIEW_URL


def test_a_kept_answer_is_decoded_once_per_process(monkeypatch):
    value = {"points": list(range(1000))}
    entry = upstream._Entry(value, datetime(2026, 6, 1, tzinfo=UTC))
    blob = pickle.dumps(entry)
    upstream._decoded.clear()  # as a process that has never seen it
    decoded: list[bytes] = []
    real_loads = pickle.loads

    def counting_loads(data: bytes, *args: Any, **kwargs: Any) -> Any:
        decoded.append(data)
        return real_loads(data, *args, **kwargs)

    first = real_loads(blob)
    monkeypatch.setattr(pickle, "loads", counting_loads)
    second = real_loads(blob)
    third = real_loads(blob)
    assert first.value == value and first.fetched_at == entry.fetched_at
    assert second.value is first.value and third.value is first.value
    assert decoded == [], "the value was decoded again"


def test_an_unknown_answer_is_decoded(monkeypatch):
    entry = upstream._Entry(["a"], datetime(2026, 6, 1, tzinfo=UTC))
    blob = pickle.dumps(entry)
    upstream._decoded.clear()
    assert pickle.loads(blob).value == ["a"]


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
