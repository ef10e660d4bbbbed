"""The simulator's HTTP front: in a thread, and as ``python -m billing_api.simulator``."""

from __future__ import annotations

import queue
import threading
import time

import httpx
import pytest

from billing_api.simulator import DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN, Simulator
from billing_api.simulator.server import start_server
from tests.billing_api.conftest import START, free_port, read_banner, run_module
from tests.conftest import SAFETY_TIMEOUT

BILLING = f"/accounts/{DEFAULT_ACCOUNT_ID}/ai-gateway/billing"
AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


@pytest.fixture
def sim() -> Simulator:
    return Simulator(seed=1, clock=lambda: START, topup_settle_seconds=60)


@pytest.fixture
def server(sim: Simulator):
    running = start_server(sim)
    yield running
    running.stop()


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.origin, timeout=5) as c:
        yield c


def test_it_serves_billing_calls_over_http(server, http):
    assert server.base_url.startswith("http://127.0.0.1:")
    assert server.base_url.endswith("/client/v4")
    response = http.get(f"/client/v4{BILLING}/credit-balance", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cf-ray"]
    assert response.json()["result"]["payment_method"] == {"brand": "visa", "last4": "4242"}
    history = http.get(
        f"/client/v4{BILLING}/usage-history",
        params={"value_grouping_window": "hour"},
        headers=AUTH,
    )
    assert len(history.json()["result"]["history"]) == 24
    assert http.get(f"/client/v4{BILLING}/credit-balance").status_code == 401
    assert http.get("/client/v4/nowhere", headers=AUTH).status_code == 404


def test_it_switches_a_fault_at_run_time_and_counts_calls(http):
    path = f"/client/v4{BILLING}/invoice-history"
    assert http.get(path, headers=AUTH).status_code == 200
    created = http.post(
        "/__simulator/faults",
        json={
            "endpoint": "GET invoice-history",
            "kind": "rate_limit",
            "retry_after": 3,
            "times": 1,
        },
    )
    assert created.status_code == 201
    assert created.json()["faults"]["GET invoice-history"][0]["kind"] == "rate_limit"
    limited = http.get(path, headers=AUTH)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert http.get(path, headers=AUTH).status_code == 200
    assert http.get("/__simulator/calls").json()["calls"] == {"GET invoice-history": 3}

    http.post("/__simulator/faults", json={"endpoint": "*", "kind": "error", "status": 502})
    assert http.get(path, headers=AUTH).status_code == 502
    assert http.delete("/__simulator/faults").json()["faults"] == {}
    assert http.get(path, headers=AUTH).status_code == 200

    assert http.post("/__simulator/reset-calls").status_code == 200
    assert http.get("/__simulator/calls").json()["calls"] == {}


@pytest.mark.parametrize(
    "spec",
    [
        {"endpoint": "GET nowhere", "kind": "error"},
        {"endpoint": "GET credit-balance", "kind": "explode"},
        {"endpoint": "GET credit-balance", "kind": "error", "status": 200},
        {"kind": "error"},
    ],
)
def test_it_refuses_a_bad_fault_from_the_admin_api(http, spec):
    response = http.post("/__simulator/faults", json=spec)
    assert response.status_code == 400
    assert response.json()["ok"] is False


def call_in_thread(server, path: str) -> queue.Queue[int]:
    """Calls a billing ``path`` from a thread of its own; the status arrives on the queue."""
    answers: queue.Queue[int] = queue.Queue()

    def call() -> None:
        with httpx.Client(base_url=server.origin, timeout=SAFETY_TIMEOUT + 30) as other:
            answers.put(other.get(f"/client/v4{BILLING}/{path}", headers=AUTH).status_code)

    threading.Thread(target=call, daemon=True).start()
    return answers


def test_it_releases_a_hung_request_when_faults_are_cleared(http, server):
    # The hang lasts 30 s: only the release can answer it within the safety bounds below.
    http.post("/__simulator/faults", json={"endpoint": "GET spending-limit", "kind": "hang"})
    answers = call_in_thread(server, "spending-limit")
    deadline = time.monotonic() + SAFETY_TIMEOUT
    while http.get("/__simulator/calls").json()["calls"].get("GET spending-limit") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert http.get("/__simulator/in-flight").json()["in_flight"] == {"GET spending-limit": 1}
    assert answers.empty()  # still hanging
    http.delete("/__simulator/faults", params={"endpoint": "GET spending-limit"})
    assert answers.get(timeout=SAFETY_TIMEOUT) == 200
    assert http.get("/__simulator/in-flight").json()["in_flight"] == {}


def test_it_shows_calls_in_flight_and_releases_them_from_the_admin_api(http, server, sim):
    spec = {"endpoint": "GET credit-balance", "kind": "latency", "seconds": 30}
    assert http.post("/__simulator/faults", json=spec).status_code == 201
    first, second = call_in_thread(server, "credit-balance"), call_in_thread(server, "topup/limits")
    assert sim.wait_for_in_flight({"GET credit-balance": 1}, SAFETY_TIMEOUT)
    assert second.get(timeout=SAFETY_TIMEOUT) == 200  # not held: another endpoint
    in_flight = http.get("/__simulator/in-flight").json()
    assert in_flight == {"ok": True, "in_flight": {"GET credit-balance": 1}}
    assert http.post("/__simulator/release").json() == {"ok": True}
    assert first.get(timeout=SAFETY_TIMEOUT) == 200
    assert http.get("/__simulator/in-flight").json()["in_flight"] == {}
    # Releasing ends the calls held, not the fault.
    assert sim.faults() == {
        "GET credit-balance": [{"kind": "latency", "times": None, "seconds": 30}]
    }


def test_it_times_out_a_client_during_a_hang(http, server):
    # Held until the server stops: the client's read timeout is all that can end the wait.
    http.post(
        "/__simulator/faults", json={"endpoint": "GET topup/config", "kind": "hang", "times": 1}
    )
    with pytest.raises(httpx.ReadTimeout):
        http.get(
            f"/client/v4{BILLING}/topup/config",
            headers=AUTH,
            timeout=httpx.Timeout(SAFETY_TIMEOUT, read=0.2),
        )


def test_it_settles_topups_when_admin_advances_time(http, sim):
    created = http.post(f"/client/v4{BILLING}/topup", json={"amount": 2500}, headers=AUTH)
    intent = {"payment_intent_id": created.json()["result"]["payment_intent_id"]}
    status = http.post(f"/client/v4{BILLING}/topup/status", json=intent, headers=AUTH)
    assert status.json()["result"]["status"] == "pending"
    assert http.post("/__simulator/advance", json={"seconds": 61}).json()["now"] == START + 61
    status = http.post(f"/client/v4{BILLING}/topup/status", json=intent, headers=AUTH)
    assert status.json()["result"]["status"] == "completed"


def test_it_arms_an_auto_topup_failure_and_reports_info_from_the_admin_api(http, sim):
    assert http.post("/__simulator/fail-auto-topup", json={}).json() == {"ok": True}
    assert sim.account(DEFAULT_ACCOUNT_ID).auto_topup_failure is not None
    info = http.get("/__simulator/info").json()
    assert info["accounts"] == [DEFAULT_ACCOUNT_ID] and info["mode"] == "default"
    assert http.post("/__simulator/fail-auto-topup", json={"account_id": "x"}).status_code == 404
    assert http.get("/__simulator/nothing").status_code == 404


def test_it_runs_as_a_module_and_stops_on_sigterm(tmp_path):
    port = free_port()
    log = tmp_path / "stderr.log"
    with log.open("w") as stderr, run_module(["--port", str(port), "--seed", "5"], stderr) as lines:
        printed = read_banner(lines)
        assert printed["base URL"] == f"http://127.0.0.1:{port}/client/v4"
        assert printed["token"] == DEFAULT_TOKEN
        assert printed["account"] == DEFAULT_ACCOUNT_ID
        response = httpx.get(
            f"{printed['base URL']}/accounts/{printed['account']}/ai-gateway/billing/topup/limits",
            headers={"Authorization": f"Bearer {printed['token']}"},
            timeout=5,
        )
        assert response.json()["result"]["min_cents"] == 1000
    logged = log.read_text()
    assert "GET /client/v4/accounts/" in logged  # requests are logged
    assert DEFAULT_TOKEN not in logged  # the token is not
