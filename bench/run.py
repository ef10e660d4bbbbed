"""``make bench``: the dashboard as deployed, under load and under faults (not a test).

Starts on 127.0.0.1 the standalone simulator with 200 ms added to every call, and gunicorn
(``dashboard/infra/gunicorn_conf.py``, 4 workers) on PostgreSQL (database ``spend_bench``, created
and migrated here) and Redis (a key prefix of its own, deleted at the end), logs in once and
loads the overview with wrk; ``bench/count.lua`` counts the answers per status and the
pages whose cards are stale, still loading or failed. Phases, each bounded in time:

1. the overview cold (its cache emptied) against the slowest single upstream call, then
   rendered under load (8 connections) next to ``/healthz`` on the same server;
2. viewers: upstream calls per minute at 1, 10 and 50 concurrent viewers;
3. memory: resident memory (``VmRSS``) of each gunicorn worker after that load;
4. faults: each endpoint the overview reads answers 5xx, then hangs, for 30 s each while
   viewers go on loading: 5xx answers from the dashboard, pages served stale;
5. top-ups: ``POST topup`` holds each request past the dashboard's timeout and then takes
   the payment; top-up forms confirmed twice at once (a double click) and once more (a
   retry): the dashboard's top-ups and audit rows against the payments the simulator took.

Prints a table and writes it as JSON to ``bench/results/``. ``--quick`` shortens every phase
to try the whole path in about a minute; its figures mean little. Everything it starts, it
stops. Run as ``python -m bench.run`` from the project's directory (``make bench``).
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import psycopg
import redis
from django.core.management.base import CommandError
from psycopg import sql

from bench.read import (
    HOST,
    OVERVIEW_ENDPOINTS,
    csrf_token,
    free_port,
    log_in,
    stop,
    time_single_calls,
    wait_until_answering,
)
from billing_api.client import BillingClient
from billing_api.simulator import DEFAULT_TOKEN

ROOT: Final = Path(__file__).resolve().parent.parent
SCRIPT: Final = Path(__file__).with_name("count.lua")
RESULTS: Final = Path(__file__).with_name("results")
GUNICORN_CONFIG: Final = ROOT / "dashboard" / "infra" / "gunicorn_conf.py"
DATABASE_URL: Final = "postgres://127.0.0.1:5432/spend_bench"
REDIS_URL: Final = "redis://127.0.0.1:6379/0"
WORKERS: Final = 4
#: The targets of issue 15: the cold overview at most this times the slowest single upstream
#: call; the rendered overview's p95 under load, its throughput as a share of /healthz's;
#: each worker's resident memory.
COLD_RATIO_TARGET: Final = 1.25
OVERVIEW_P95_TARGET_MS: Final = 100.0
OVERVIEW_SHARE_TARGET: Final = 0.06
WORKER_RSS_TARGET_MIB: Final = 90.0
#: Cold overviews timed (the median is reported), each after emptying the dashboard's cache.
COLD_TRIES: Final = 3
#: Added by the simulator to every upstream call.
LATENCY: Final = 0.2
#: The dashboard's cache period here (production default 30 s): more periods per phase.
CACHE_SECONDS: Final = 10
#: The dashboard's BILLING_ERROR_CACHE_SECONDS default: how long a failure is remembered.
ERROR_CACHE_SECONDS: Final = 10
JSON_MARK: Final = "BENCH-JSON "
SLACK: Final = 60.0
#: How the overview's HTML shows a card's state (templates/dashboard/overview.html); count.lua
#: looks for the same words. Stale: the last figures, with the time they are from.
STALE_MARKER: Final = "Cloudflare is not answering"
#: Not back by the page's deadline: the card loads itself.
PENDING_MARKER: Final = "Still loading"
#: No figures at all, only the error.
FAILED_MARKER: Final = 'class="notice notice-error"'
CARD_MARKERS: Final = (STALE_MARKER, PENDING_MARKER, FAILED_MARKER)


@dataclass(frozen=True)
class Plan:
    """How long each phase lasts, and with how many connections."""

    warmup: int
    throughput: int
    connections: int
    viewers: tuple[int, ...]
    viewer_seconds: int
    fault_seconds: int
    fault_viewers: int
    topup_forms: int
    #: The dashboard's BILLING_API_TIMEOUT (its default is 10 s).
    api_timeout: float


FULL: Final = Plan(
    warmup=3,
    throughput=15,
    connections=8,
    viewers=(1, 10, 50),
    viewer_seconds=30,
    fault_seconds=30,
    fault_viewers=10,
    topup_forms=3,
    api_timeout=10.0,
)
#: Every phase a few seconds: the whole path in a minute or two, figures that mean little.
QUICK: Final = dataclasses.replace(
    FULL, warmup=2, throughput=3, viewer_seconds=3, fault_seconds=3, topup_forms=2, api_timeout=2.0
)
#: The faults of phase 4, each set on one endpoint at a time.
FAULTS: Final[tuple[tuple[str, dict[str, Any]], ...]] = (
    ("error", {"status": 503}),
    ("hang", {"seconds": 30}),
)


@dataclass(frozen=True)
class Load:
    """What one wrk run saw (count.lua's JSON line)."""

    requests: int
    seconds: float
    statuses: dict[str, int]
    stale: int
    pending: int
    failed: int
    socket_errors: dict[str, int]
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def from_wrk(cls, data: dict[str, Any]) -> Load:
        latency = data["latency_us"]
        return cls(
            requests=data["requests"],
            seconds=data["duration_us"] / 1e6,
            statuses=dict(data["statuses"]),
            stale=data["stale"],
            pending=data["pending"],
            failed=data["failed"],
            socket_errors=dict(data["socket_errors"]),
            p50_ms=latency["p50"] / 1000,
            p95_ms=latency["p95"] / 1000,
            p99_ms=latency["p99"] / 1000,
            max_ms=latency["max"] / 1000,
        )

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status.startswith("5"))

    @property
    def not_200(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "200")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"rps": round(self.rps, 1)}


class Simulator:
    """The standalone simulator in a process of its own, steered through its admin API."""

    def __init__(self, stack: ExitStack, tmp: Path, account_id: str) -> None:
        port = free_port()
        log_path = tmp / "simulator.log"
        log = stack.enter_context(log_path.open("w"))
        command = [
            *(sys.executable, "-m", "billing_api.simulator", "--port", str(port)),
            *("--account", account_id, "--topup-settle-seconds", "1", "--quiet"),
        ]
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        stack.callback(stop, process)
        self.origin = f"http://{HOST}:{port}"
        self.base_url = f"{self.origin}/client/v4"
        self.account_id = account_id
        wait_until_answering(process, f"{self.origin}/__simulator/info", log_path)
        self.admin = stack.enter_context(httpx.Client(base_url=self.origin, timeout=10.0))

    def _call(self, method: str, action: str, **kwargs: Any) -> dict[str, Any]:
        answer = self.admin.request(method, f"/__simulator/{action}", **kwargs)
        if answer.status_code >= 300:
            raise CommandError(f"simulator {method} {action}: {answer.text}")
        data: dict[str, Any] = answer.json()
        return data

    def set_fault(self, endpoint: str, kind: str, **params: Any) -> None:
        self._call("POST", "faults", json={"endpoint": endpoint, "kind": kind, **params})

    def clear_faults(self, endpoint: str) -> None:
        """Ends the faults on ``endpoint`` and releases every request held by any fault."""
        self._call("DELETE", "faults", params={"endpoint": endpoint})

    def reset_calls(self) -> None:
        self._call("POST", "reset-calls")

    def calls(self) -> dict[str, int]:
        return dict(self._call("GET", "calls")["calls"])

    def in_flight(self, endpoint: str) -> int:
        return int(self._call("GET", "in-flight")["in_flight"].get(endpoint, 0))

    def payments_since(self, since: float) -> int:
        """Top-ups made with the API token since ``since``: the simulator's manual invoices."""
        found = 0
        with BillingClient(self.base_url, DEFAULT_TOKEN, self.account_id, max_retries=0) as api:
            page = 1
            while True:
                history = api.invoice_history("manual", page)
                found += sum(
                    1
                    for invoice in history.invoices
                    if invoice.created_by == "api-token"
                    and invoice.created is not None
                    and invoice.created.timestamp() >= since
                )
                if not history.pagination.has_more:
                    return found
                page += 1


def wait_for(check: Callable[[], bool], timeout: float) -> bool:
    """Polls ``check`` until it holds (True) or ``timeout`` seconds pass (False)."""
    limit = time.monotonic() + timeout
    while not check():
        if time.monotonic() >= limit:
            return False
        time.sleep(0.2)
    return True


def git_commit() -> str:
    """The commit measured, with "+changes" when the working tree differs from it."""
    head = subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return (head or "unknown") + ("+changes" if dirty else "")


def ensure_database(url: str) -> None:
    """Creates the bench database if it does not exist (the server's role may create one)."""
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    if not name:
        raise CommandError(f"BENCH_DATABASE_URL names no database: {url}")
    with psycopg.connect(
        host=parts.hostname or HOST,
        port=parts.port or 5432,
        user=parts.username or None,
        password=parts.password or None,
        dbname="postgres",
        autocommit=True,
        connect_timeout=10,
    ) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _status(pid: int | str) -> dict[str, str]:
    """The fields of ``/proc/<pid>/status`` (empty if the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {name: value.strip() for name, _, value in (x.partition(":") for x in text.splitlines())}


def resident_kib(pid: int) -> int:
    """Resident memory (VmRSS) of a process, in KiB (0 if it is gone)."""
    return int(_status(pid).get("VmRSS", "0 kB").split()[0])


def worker_memory(master_pid: int) -> dict[int, int]:
    """Resident memory (VmRSS, KiB) of each child process of ``master_pid``."""
    found: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _status(entry.name).get("PPid") == str(master_pid):
            found[int(entry.name)] = resident_kib(int(entry.name))
    return found


class Bench:
    """One run: the servers it started, the logged-in client, and the figures so far."""

    def __init__(self, plan: Plan, stack: ExitStack, tmp: Path) -> None:
        self.plan = plan
        self.stack = stack
        self.tmp = tmp
        self.results: dict[str, Any] = {}
        # A new account each run: the bench database's rows of this run are told apart by it.
        self.account_id = uuid.uuid4().hex
        self.sim = Simulator(stack, tmp, self.account_id)
        self.http = httpx.Client()
        self.cookie = ""
        self.base = ""
        self.master_pid = 0

    # ------------------------------------------------------------ setup

    def say(self, line: str = "") -> None:
        print(line, flush=True)

    def environment(self, sim: Simulator, database_url: str, prefix: str) -> dict[str, str]:
        """The dashboard's settings: production (no DEBUG, secrets required) over plain http."""
        kept = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CLOUDFLARE_", "BILLING_", "SECURE_", "SESSION_", "CSRF_"))
            and key not in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG", "STATIC_ROOT")
        }
        return kept | {
            "DJANGO_SETTINGS_MODULE": "dashboard.settings",
            "CLOUDFLARE_API_TOKEN": DEFAULT_TOKEN,
            "CLOUDFLARE_ACCOUNTS": f"{sim.account_id}=Bench",
            "BILLING_API_BASE_URL": sim.base_url,
            "BILLING_API_TIMEOUT": f"{self.plan.api_timeout:g}",
            "BILLING_CACHE_SECONDS": str(CACHE_SECONDS),
            "BILLING_ERROR_CACHE_SECONDS": str(ERROR_CACHE_SECONDS),
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "CACHE_KEY_PREFIX": prefix,
            "SECRET_KEY": secrets.token_urlsafe(50),
            "DEBUG": "false",
            "ALLOWED_HOSTS": HOST,
            # Plain http on 127.0.0.1: no redirect to https, cookies sent without TLS.
            "SECURE_SSL_REDIRECT": "false",
            "SESSION_COOKIE_SECURE": "false",
            "CSRF_COOKIE_SECURE": "false",
            "STATIC_ROOT": str(self.tmp / "static"),
            "LOG_LEVEL": "WARNING",
        }

    def prepare(self, env: dict[str, str]) -> None:
        """Migrates the bench database, collects static files, creates the demo logins."""
        os.environ.update(env)
        import django
        from django.core.management import call_command

        django.setup()
        call_command("migrate", "--noinput", verbosity=0)
        call_command("collectstatic", "--noinput", verbosity=0)
        call_command("demo_users", force=True, stdout=io.StringIO())

    def start_dashboard(self, env: dict[str, str]) -> None:
        port = free_port()
        log_path = self.tmp / "gunicorn.log"
        log = self.stack.enter_context(log_path.open("w"))
        command = [
            *(sys.executable, "-m", "gunicorn", "--config", str(GUNICORN_CONFIG)),
            *("--bind", f"{HOST}:{port}", "--workers", str(WORKERS)),
        ]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.stack.callback(stop, process)
        self.base = f"http://{HOST}:{port}"
        self.master_pid = process.pid
        wait_until_answering(process, f"{self.base}/healthz", log_path)
        # Every worker is up once the master has forked them all.
        if not wait_for(lambda: len(worker_memory(process.pid)) >= WORKERS, 30):
            raise CommandError(f"gunicorn did not start {WORKERS} workers")

    def log_in(self) -> None:
        self.http = self.stack.enter_context(httpx.Client(base_url=self.base, timeout=30.0))
        log_in(self.http)
        self.cookie = "; ".join(f"{c.name}={c.value}" for c in self.http.cookies.jar)

    @property
    def overview_path(self) -> str:
        return f"/accounts/{self.account_id}/"

    def overview_clean(self) -> bool:
        """The overview answers 200 with every card fresh (no stale, late or failed card)."""
        page = self.http.get(self.overview_path)
        return page.status_code == 200 and not any(m in page.text for m in CARD_MARKERS)

    # ------------------------------------------------------------ load

    def wrk(self, path: str, connections: int, seconds: int, *, cookie: bool = True) -> Load:
        threads = max(1, min(2, connections))
        command = [
            *("wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "20s"),
            *("-s", str(SCRIPT), f"{self.base}{path}", "--", self.cookie if cookie else ""),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + SLACK)
        line = next((x for x in done.stdout.splitlines() if x.startswith(JSON_MARK)), None)
        if done.returncode != 0 or line is None:
            raise CommandError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return Load.from_wrk(json.loads(line[len(JSON_MARK) :]))

    # ------------------------------------------------------------ phases

    def warm_up(self) -> None:
        if not wait_for(self.overview_clean, 30):
            page = self.http.get(self.overview_path)
            raise CommandError(
                f"the overview did not show every card fresh within 30 s (HTTP "
                f"{page.status_code}, {[m for m in CARD_MARKERS if m in page.text] or 'no marker'})"
            )
        self.wrk(self.overview_path, self.plan.connections, self.plan.warmup)

    def cold(self, prefix: str) -> None:
        """The overview with the dashboard's cache emptied, against each upstream call alone."""
        self.say(f"Cold overview: {COLD_TRIES} tries, each after emptying the cache …")
        single = {
            name: seconds * 1000
            for name, seconds in time_single_calls(self.sim.base_url, self.account_id).items()
        }
        self.http.get(self.overview_path)  # this worker's first render (templates, imports)
        tries = []
        for _ in range(COLD_TRIES):
            forget_cache(prefix, "*:billing:*")
            started = time.perf_counter()
            page = self.http.get(self.overview_path)
            took = time.perf_counter() - started
            timing = re.search(r"dur=([\d.]+)", page.headers.get("Server-Timing", ""))
            if page.status_code != 200 or timing is None:
                raise CommandError(f"the cold overview answered HTTP {page.status_code}")
            tries.append((took * 1000, float(timing[1])))
        client_ms = sorted(t[0] for t in tries)[len(tries) // 2]
        server_ms = sorted(t[1] for t in tries)[len(tries) // 2]
        slowest = max(single, key=lambda name: single[name])
        ratio = client_ms / single[slowest]
        self.results["cold"] = {
            "tries": [{"client_ms": round(c, 1), "server_ms": round(s, 1)} for c, s in tries],
            "client_ms": round(client_ms, 1),
            "server_ms": round(server_ms, 1),
            "single_calls_ms": {name: round(ms, 1) for name, ms in single.items()},
            "slowest_call": slowest,
            "ratio": round(ratio, 3),
            "target_met": ratio <= COLD_RATIO_TARGET,
        }

    def throughput(self) -> None:
        plan = self.plan
        self.say(f"Throughput: {plan.connections} connections, {plan.throughput} s each …")
        health = self.wrk("/healthz", plan.connections, plan.throughput, cookie=False)
        # Each view rendered: the reads come from the cache, the page is built anew.
        overview = self.wrk(self.overview_path, plan.connections, plan.throughput)
        share = overview.rps / health.rps if health.rps else 0.0
        self.results["throughput"] = {
            "connections": plan.connections,
            "seconds": plan.throughput,
            "healthz": health.as_dict(),
            "overview": overview.as_dict(),
            "overview_share": round(share, 3),
            "p95_target_met": overview.p95_ms < OVERVIEW_P95_TARGET_MS,
            "share_target_met": share >= OVERVIEW_SHARE_TARGET,
        }

    def viewers(self) -> None:
        plan = self.plan
        self.say(f"Viewers: {', '.join(map(str, plan.viewers))}, {plan.viewer_seconds} s each …")
        rows: list[dict[str, Any]] = []
        for count in plan.viewers:
            self.sim.reset_calls()
            load = self.wrk(self.overview_path, count, plan.viewer_seconds)
            calls = self.sim.calls()
            minutes = load.seconds / 60
            # A cached answer is refreshed no sooner than a cache period after the last one.
            allowed = int(load.seconds // CACHE_SECONDS) + 1
            rows.append(
                {
                    "viewers": count,
                    "load": load.as_dict(),
                    "calls": calls,
                    "allowed_per_endpoint": allowed,
                    "within": all(calls.get(name, 0) <= allowed for name in OVERVIEW_ENDPOINTS),
                    "calls_per_minute": round(sum(calls.values()) / minutes, 1),
                    "per_endpoint_per_minute": {
                        name: round(calls.get(name, 0) / minutes, 1) for name in OVERVIEW_ENDPOINTS
                    },
                }
            )
        # Flat: at every level, each endpoint is asked at most once per cache period, whatever
        # the number of viewers and of worker processes.
        self.results["viewers"] = {
            "seconds": plan.viewer_seconds,
            "cache_seconds": CACHE_SECONDS,
            "ideal_calls_per_minute": len(OVERVIEW_ENDPOINTS) * 60 / CACHE_SECONDS,
            "levels": rows,
            "target_met": all(row["within"] for row in rows),
        }

    def memory(self) -> None:
        workers = worker_memory(self.master_pid)
        self.results["memory"] = {
            "worker_rss_kib": {str(pid): kib for pid, kib in sorted(workers.items())},
            "master_rss_kib": resident_kib(self.master_pid),
            "target_met": all(kib / 1024 < WORKER_RSS_TARGET_MIB for kib in workers.values()),
        }

    def faults(self) -> None:
        plan = self.plan
        self.say(
            f"Faults: 5xx, then hang, on each of {len(OVERVIEW_ENDPOINTS)} endpoints, "
            f"{plan.fault_seconds} s each, {plan.fault_viewers} viewers …"
        )
        rows = []
        loads = []
        for endpoint in OVERVIEW_ENDPOINTS:
            for kind, params in FAULTS:
                self.sim.set_fault(endpoint, kind, **params)
                try:
                    load = self.wrk(self.overview_path, plan.fault_viewers, plan.fault_seconds)
                finally:
                    self.sim.clear_faults(endpoint)
                started = time.monotonic()
                bound = ERROR_CACHE_SECONDS + plan.api_timeout + 10
                recovered = wait_for(self.overview_clean, bound)
                loads.append(load)
                rows.append(
                    {
                        "endpoint": endpoint,
                        "fault": kind,
                        "load": load.as_dict(),
                        "recovered_after_s": round(time.monotonic() - started, 1)
                        if recovered
                        else None,
                    }
                )
        self.results["faults"] = {
            "seconds": plan.fault_seconds,
            "viewers": plan.fault_viewers,
            "rows": rows,
            "server_errors": sum(load.server_errors for load in loads),
            "stale_pages": sum(load.stale for load in loads),
            "target_met": all(load.server_errors == 0 for load in loads),
        }

    def topups(self) -> None:
        """Top-ups whose ``POST topup`` times out at the dashboard after the simulator took it."""
        from dashboard.models import AuditEvent, Topup

        plan = self.plan
        count = plan.topup_forms
        hold = min(30.0, plan.api_timeout + 2)
        self.say(
            f"Top-ups: {count} forms, POST topup held {hold:g} s (client timeout "
            f"{plan.api_timeout:g} s), each confirmed twice at once and once more …"
        )
        self.sim.reset_calls()
        since = time.time() - 1
        self.sim.set_fault("POST topup", "hang", seconds=hold)
        try:
            forms = [self.topup_form(Decimal(25 + i)) for i in range(count)]
            with ThreadPoolExecutor(max_workers=2 * count) as pool:
                first = list(pool.map(self.confirm, [*forms, *forms]))
            again = [self.confirm(form) for form in forms]
            # The held calls end on their own; the simulator then takes each payment.
            wait_for(lambda: self.sim.in_flight("POST topup") == 0, hold + SLACK)
        finally:
            self.sim.clear_faults("POST topup")
        rows = Topup.objects.filter(account_id=self.account_id)
        keys = {form["idempotency_key"] for form in forms}
        wait_for(lambda: self.sim.payments_since(since) >= len(keys), 15)
        payments = self.sim.payments_since(since)
        audited = set(
            AuditEvent.objects.filter(
                account_id=self.account_id, action=AuditEvent.Action.TOPUP
            ).values_list("idempotency_key", flat=True)
        )
        unknown = list(rows.filter(status=Topup.Status.UNKNOWN))
        statuses_before = sorted(row.status for row in rows)
        for topup in unknown:
            self.check_topup(topup.pk)
        self.results["topups"] = {
            "forms": count,
            "submissions": len(first) + len(again),
            "answers": sorted({*first, *again}),
            "hold_seconds": hold,
            "client_timeout_seconds": plan.api_timeout,
            "dashboard_topups": rows.count(),
            "statuses_after_timeout": statuses_before,
            "statuses_after_check": sorted(row.status for row in rows.all()),
            "topups_without_audit": len({row.idempotency_key for row in rows} - audited),
            "audit_rows": AuditEvent.objects.filter(
                account_id=self.account_id, action=AuditEvent.Action.TOPUP
            ).count(),
            "simulator_topup_calls": self.sim.calls().get("POST topup", 0),
            "simulator_payments": payments,
            "duplicate_payments": max(0, payments - len(keys)),
            "lost_payments": max(0, len(keys) - payments),
        }
        result = self.results["topups"]
        result["target_met"] = (
            result["topups_without_audit"] == 0
            and result["duplicate_payments"] == 0
            and result["dashboard_topups"] == len(keys)
        )

    def topup_form(self, amount: Decimal) -> dict[str, str]:
        """The top-up form filled in and past its first step (the confirmation page)."""
        path = f"/accounts/{self.account_id}/topups/"
        page = self.http.get(path)
        key = re.search(r'name="idempotency_key" value="([0-9a-f]{32})"', page.text)
        if page.status_code != 200 or key is None:
            raise CommandError(f"the top-up page has no form (HTTP {page.status_code})")
        form = {
            "csrfmiddlewaretoken": csrf_token(page),
            "amount": str(amount),
            "idempotency_key": key[1],
        }
        step = self.http.post(f"{path}new/", data=form)
        confirmation = re.search(r'name="confirmation" value="([^"]*)"', step.text)
        if step.status_code != 200 or "Charge $" not in step.text or confirmation is None:
            raise CommandError(f"the top-up form was not confirmed (HTTP {step.status_code})")
        # The Charge button sends back what the confirmation step handed out.
        return form | {"confirmation": confirmation[1]}

    def confirm(self, form: dict[str, str]) -> int:
        """Presses "Charge" with its own connection (as a second click or tab does)."""
        with httpx.Client(
            base_url=self.base, cookies=self.http.cookies, timeout=self.plan.api_timeout + SLACK
        ) as own:
            answer = own.post(
                f"/accounts/{self.account_id}/topups/new/", data=form | {"confirm": "1"}
            )
        return answer.status_code

    def check_topup(self, pk: int) -> None:
        """ "Check again": the dashboard looks for the charge in the invoices, sends nothing."""
        page = self.http.get(f"/accounts/{self.account_id}/topups/?topup={pk}")
        self.http.post(
            f"/accounts/{self.account_id}/topups/check/",
            data={"csrfmiddlewaretoken": csrf_token(page), "topup": str(pk)},
        )

    # ------------------------------------------------------------ run

    def run(self) -> None:
        self.results["setup"] = {
            "commit": git_commit(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "plan": dataclasses.asdict(self.plan),
            "workers": WORKERS,
            "worker_class": "gthread, dashboard/infra/gunicorn_conf.py",
            "upstream_latency_s": LATENCY,
            "cache_seconds": CACHE_SECONDS,
            "cpus": os.cpu_count(),
        }
        self.sim.set_fault("*", "latency", seconds=LATENCY)
        database_url = os.environ.get("BENCH_DATABASE_URL", DATABASE_URL)
        ensure_database(database_url)
        prefix = f"bench-{uuid.uuid4().hex[:12]}"
        self.stack.callback(forget_cache, prefix)
        env = self.environment(self.sim, database_url, prefix)
        self.say(f"Preparing {urlsplit(database_url).path.lstrip('/')} (migrate, static files) …")
        self.prepare(env)
        self.start_dashboard(env)
        self.say(
            f"Dashboard: gunicorn, {WORKERS} workers, {self.base}; simulator {self.sim.origin}"
        )
        self.log_in()
        self.cold(prefix)
        self.warm_up()
        self.throughput()
        self.viewers()
        self.memory()
        self.faults()
        self.topups()


def forget_cache(prefix: str, keys: str = "*") -> None:
    """Deletes the keys (all by default) the bench's dashboard put in Redis."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        batch = list(client.scan_iter(match=f"{prefix}:{keys}", count=500))
        while batch:
            client.delete(*batch[:500])
            batch = batch[500:]
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="every phase short (about a minute)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print(
            "wrk is not installed: `make bench` installs it (apt-get install wrk)", file=sys.stderr
        )
        return 2
    started = time.monotonic()
    results: dict[str, Any] = {}
    failure = ""
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        try:
            bench = Bench(QUICK if args.quick else FULL, stack, tmp)
            results = bench.results
            bench.run()
        except (CommandError, OSError, httpx.HTTPError, psycopg.Error, redis.RedisError) as err:
            failure = str(err)
            log = tmp / "gunicorn.log"
            if log.exists():
                failure += "\nThe end of gunicorn's log:\n" + log.read_text()[-3000:]
    results.setdefault("setup", {}).update(
        quick=args.quick, took_s=round(time.monotonic() - started, 1)
    )
    table = render(results)
    print()
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}{'-quick' if args.quick else ''}{'-failed' if failure else ''}.json"
    saved = results | {"table": table} | ({"failed": failure} if failure else {})
    (RESULTS / name).write_text(json.dumps(saved, indent=2) + "\n")
    print(f"\nWritten to bench/results/{name}")
    if failure:
        print(f"\nmake bench failed: {failure}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- the table


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _not_200(load: dict[str, Any]) -> int:
    return sum(n for status, n in load["statuses"].items() if status != "200")


def _setup_lines(setup: dict[str, Any]) -> list[str]:
    lines = [
        f"make bench{' --quick' if setup.get('quick') else ''} on commit "
        f"{setup.get('commit', '?')}, {setup.get('started_at', '?')}, {setup.get('cpus', '?')} "
        f"CPUs, took {setup.get('took_s', 0):.0f} s",
    ]
    if "workers" in setup:
        lines.append(
            f"gunicorn {setup['workers']} workers ({setup['worker_class']}), PostgreSQL, Redis; "
            f"simulator +{setup['upstream_latency_s'] * 1000:.0f} ms per call; "
            f"dashboard cache {setup['cache_seconds']} s"
        )
    return lines


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A title line of column names over rows: each row's label, then right-aligned cells."""
    label = max([len(title) - 2, *(len(str(row[0])) for row in rows)])
    widths = [
        max(len(name), *(len(str(row[i + 1])) for row in rows)) for i, name in enumerate(columns)
    ]

    def line(first: str, cells: Sequence[object]) -> str:
        return (
            first
            + "  "
            + "  ".join(f"{cell!s:>{w}}" for cell, w in zip(cells, widths, strict=True))
        )

    return [
        line(f"{title:<{label + 2}}", columns),
        *(line(f"  {row[0]!s:<{label}}", row[1:]) for row in rows),
    ]


def _cold_lines(c: dict[str, Any]) -> list[str]:
    return [
        f"Cold overview (cache emptied, median of {len(c['tries'])}): {c['client_ms']:.0f} ms "
        f"at the client ({c['server_ms']:.0f} ms in the view); slowest single upstream call "
        f"{c['single_calls_ms'][c['slowest_call']]:.0f} ms ({c['slowest_call']})",
        f"  cold / slowest call: {c['ratio']:.2f}x "
        f"[target <= {COLD_RATIO_TARGET:g}x: {_verdict(c['target_met'])}]",
    ]


def _throughput_lines(t: dict[str, Any]) -> list[str]:
    rows = [
        (
            name,
            f"{load['rps']:.1f}",
            f"{load['p50_ms']:.0f}",
            f"{load['p95_ms']:.0f}",
            f"{load['p99_ms']:.0f}",
            _not_200(load),
        )
        for name, load in (
            ("/healthz", t["healthz"]),
            ("overview, rendered (reads cached)", t["overview"]),
        )
    ]
    return [
        *_table(
            f"Throughput, {t['connections']} connections, {t['seconds']} s each",
            ("req/s", "p50 ms", "p95 ms", "p99 ms", "not 200"),
            rows,
        ),
        f"  overview p95: {t['overview']['p95_ms']:.0f} ms "
        f"[target < {OVERVIEW_P95_TARGET_MS:g} ms: {_verdict(t['p95_target_met'])}]; "
        f"overview / healthz throughput: {t['overview_share']:.1%} "
        f"[target >= {OVERVIEW_SHARE_TARGET:.0%}: {_verdict(t['share_target_met'])}]",
    ]


def _viewer_lines(v: dict[str, Any]) -> list[str]:
    rows = [
        (
            f"{row['viewers']} viewer{'s' if row['viewers'] > 1 else ''}",
            f"{row['load']['rps']:.1f}",
            f"{row['load']['p95_ms']:.0f}",
            _not_200(row["load"]),
            f"{row['calls_per_minute']:.1f}",
            *(row["calls"].get(name, 0) for name in OVERVIEW_ENDPOINTS),
            row["allowed_per_endpoint"],
        )
        for row in v["levels"]
    ]
    short = [f"calls {name.split(' ', 1)[1].split('-')[-1]}" for name in OVERVIEW_ENDPOINTS]
    return [
        *_table(
            f"Viewers, {v['seconds']} s each",
            ("req/s", "p95 ms", "not 200", "upstream calls/min", *short, "allowed"),
            rows,
        ),
        f"  one call per endpoint per cache period = {v['ideal_calls_per_minute']:g}/min;"
        f" [target flat, never more calls than allowed: {_verdict(v['target_met'])}]",
    ]


def _memory_lines(m: dict[str, Any]) -> list[str]:
    rss = [kib / 1024 for kib in m["worker_rss_kib"].values()]
    mean = sum(rss) / max(1, len(rss))
    return [
        "Memory (VmRSS after the viewers): workers "
        + ", ".join(f"{mib:.0f}" for mib in rss)
        + f" MiB (mean {mean:.0f}); master {m['master_rss_kib'] / 1024:.0f} MiB "
        f"[target < {WORKER_RSS_TARGET_MIB:g} MiB each: {_verdict(m['target_met'])}]"
    ]


def _fault_lines(f: dict[str, Any]) -> list[str]:
    rows = [
        (
            f"{row['endpoint'].split(' ', 1)[1]} {'5xx' if row['fault'] == 'error' else 'hang'}",
            row["load"]["requests"],
            f"{row['load']['p95_ms']:.0f}",
            _not_200(row["load"]),
            sum(n for status, n in row["load"]["statuses"].items() if status[0] == "5"),
            row["load"]["stale"],
            row["load"]["pending"],
            row["load"]["failed"],
            "-" if row["recovered_after_s"] is None else f"{row['recovered_after_s']:.1f} s",
        )
        for row in f["rows"]
    ]
    return [
        *_table(
            f"Faults, {f['viewers']} viewers, {f['seconds']} s each",
            ("pages", "p95 ms", "not 200", "5xx", "stale", "loading", "failed", "clean again"),
            rows,
        ),
        f"  5xx from the dashboard: {f['server_errors']} [target 0: {_verdict(f['target_met'])}];"
        f" pages served with stale data: {f['stale_pages']}",
    ]


def _topup_lines(u: dict[str, Any]) -> list[str]:
    return [
        f"Top-ups, POST topup held {u['hold_seconds']:g} s past a "
        f"{u['client_timeout_seconds']:g} s client timeout: {u['forms']} forms, "
        f"{u['submissions']} confirmations (answers {', '.join(map(str, u['answers']))})",
        f"  dashboard top-ups {u['dashboard_topups']} ({', '.join(u['statuses_after_timeout'])};"
        f" after 'Check again': {', '.join(u['statuses_after_check'])}), "
        f"audit rows {u['audit_rows']}",
        f"  simulator: {u['simulator_topup_calls']} POST topup calls, {u['simulator_payments']} "
        f"payments; duplicate payments {u['duplicate_payments']}, top-ups without an audit row "
        f"{u['topups_without_audit']} [target 0 and 0: {_verdict(u['target_met'])}]",
    ]


SECTIONS: Final[tuple[tuple[str, Callable[[dict[str, Any]], list[str]]], ...]] = (
    ("cold", _cold_lines),
    ("throughput", _throughput_lines),
    ("viewers", _viewer_lines),
    ("memory", _memory_lines),
    ("faults", _fault_lines),
    ("topups", _topup_lines),
)


def render(results: dict[str, Any]) -> str:
    """The table: a block per phase that ran (all of them unless the run failed)."""
    blocks = [_setup_lines(results.get("setup", {}))]
    blocks += [lines(results[key]) for key, lines in SECTIONS if key in results]
    return "\n\n".join("\n".join(block) for block in blocks)


if __name__ == "__main__":
    sys.exit(main())
