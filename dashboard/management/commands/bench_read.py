"""``manage.py bench_read``: how fast the overview reads, and how often it asks Cloudflare.

Starts, on 127.0.0.1 only, the standalone simulator with a latency fault on every endpoint
and a real dashboard server (``runserver --noreload``, a throwaway SQLite database, a Billing
admin login), then prints:

* each upstream endpoint the overview uses, timed directly (their sum and maximum);
* the overview's response time cold (an account nobody has read yet, so the cache is empty
  for it) and warm (read again within the cache period);
* the upstream calls the simulator served while ``--clients`` concurrent clients loaded the
  overview for ``--seconds``, per endpoint per cache period per process.

Targets: cold under 1.5 × the slowest single call (the reads run in parallel); at most one
upstream call per endpoint per cache period per process (cache and single flight). Not a
test: figures depend on the machine. Everything it starts, it stops.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from argparse import ArgumentParser
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing_api.client import BillingClient
from billing_api.simulator import DEFAULT_TOKEN, Simulator
from billing_api.simulator.server import start_server
from dashboard.services import runway

HOST = "127.0.0.1"
PASSWORD = "demo-admin-2026"  # manage.py demo_users --force: a throwaway database
USERNAME = "admin"
# The reads the overview makes for a user who may see invoices.
OVERVIEW_ENDPOINTS = (
    "GET credit-balance",
    "GET usage-history",
    "GET spending-limit",
    "GET invoice-preview",
)
STEP_TIMEOUT = 120.0


def _account_id(index: int) -> str:
    return hashlib.md5(f"bench-read-{index}".encode()).hexdigest()  # 32 lowercase hex


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until_answering(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Waits (at most 30 s) until ``url`` answers 200; the server's log tail if it does not."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(f"{url}: the server stopped:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise CommandError(f"{url} did not answer within 30 s:\n{log.read_text()[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def csrf_token(page: httpx.Response) -> str:
    """The CSRF token of the (first) form on ``page``."""
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    if not match:
        raise CommandError(f"no CSRF token on {page.url.path}")
    return match[1]


def log_in(http: httpx.Client, username: str = USERNAME, password: str = PASSWORD) -> None:
    """Logs ``http`` in through the login form: its cookie jar then holds the session."""
    token = csrf_token(http.get("/accounts/login/"))
    answer = http.post(
        "/accounts/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": token},
    )
    if answer.status_code != 302:
        raise CommandError(f"login failed: HTTP {answer.status_code}")


def time_single_calls(base_url: str, account_id: str) -> dict[str, float]:
    """Each endpoint the overview uses, called directly: the median of three calls."""
    span = runway.usage_range(datetime.now(UTC), UTC)
    calls: dict[str, Callable[[BillingClient], object]] = {
        "GET credit-balance": lambda c: c.credit_balance(),
        "GET usage-history": lambda c: c.usage_history("hour", span.start, span.end),
        "GET spending-limit": lambda c: c.spending_limit(),
        "GET invoice-preview": lambda c: c.invoice_preview(),
    }
    timings: dict[str, float] = {}
    # One log line per call is for operators, not for this report.
    logging.getLogger("billing_api").setLevel(logging.WARNING)
    with BillingClient(base_url, DEFAULT_TOKEN, account_id, max_retries=0) as client:
        client.credit_balance()  # open the connection first
        for name, call in calls.items():
            samples = []
            for _ in range(3):
                started = time.perf_counter()
                call(client)
                samples.append(time.perf_counter() - started)
            timings[name] = statistics.median(samples)
    return timings


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


class Command(BaseCommand):
    help = "Benchmark the overview's upstream reads against a slow simulator (prints figures)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--seconds", type=float, default=30.0, help="length of the load run")
        parser.add_argument("--clients", type=int, default=20, help="concurrent clients")
        parser.add_argument(
            "--latency", type=float, default=0.2, help="seconds added to every upstream call"
        )
        parser.add_argument("--cold", type=int, default=5, help="cold samples (one account each)")
        parser.add_argument("--warm", type=int, default=10, help="warm samples")
        parser.add_argument(
            "--cache-seconds", type=int, default=30, help="BILLING_CACHE_SECONDS of the server"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        seconds: float = options["seconds"]
        clients: int = options["clients"]
        latency: float = options["latency"]
        cold: int = options["cold"]
        warm: int = options["warm"]
        cache_seconds: int = options["cache_seconds"]
        if seconds <= 0 or clients < 1 or cold < 1 or warm < 1 or cache_seconds < 1:
            raise CommandError("--seconds, --clients, --cold, --warm and --cache-seconds: > 0")
        # Account 0 warms the server up, 1..cold are the cold samples, the last one takes the load.
        accounts = [_account_id(i) for i in range(cold + 2)]
        with ExitStack() as stack:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-read-")))
            sim = Simulator(seed=0, accounts=accounts)
            server = start_server(sim, HOST, 0)
            stack.callback(server.stop)
            sim.set_fault("*", "latency", seconds=latency)
            self.say(f"Simulator on {server.origin}, {_ms(latency)} added to every endpoint.")

            single = time_single_calls(server.base_url, accounts[0])
            base = self.start_dashboard(stack, tmp, server.base_url, accounts, cache_seconds)
            http = stack.enter_context(httpx.Client(base_url=base, timeout=30.0))
            log_in(http)
            self.overview(http, accounts[0])  # imports, templates, thread pool, connections

            cold_times = [self.overview(http, account) for account in accounts[1 : cold + 1]]
            warm_times = [self.overview(http, accounts[1]) for _ in range(warm)]

            sim.reset_calls()
            load = self.load(http, accounts[-1], clients, seconds)
            calls = Counter(httpx.get(f"{server.origin}/__simulator/calls").json()["calls"])
            self.report(single, cold_times, warm_times, load, calls, clients, cache_seconds)

    # ------------------------------------------------------------ steps

    def say(self, line: str = "") -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def start_dashboard(
        self,
        stack: ExitStack,
        tmp: Path,
        base_url: str,
        accounts: list[str],
        cache_seconds: int,
    ) -> str:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CLOUDFLARE_", "BILLING_", "DATABASE_URL", "SECRET_KEY"))
        }
        env |= {
            "CLOUDFLARE_API_TOKEN": DEFAULT_TOKEN,
            "CLOUDFLARE_ACCOUNTS": ",".join(f"{a}=Bench {i}" for i, a in enumerate(accounts)),
            "BILLING_API_BASE_URL": base_url,
            "BILLING_CACHE_SECONDS": str(cache_seconds),
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "DEBUG": "1",
            "ALLOWED_HOSTS": HOST,
            "LOG_LEVEL": "WARNING",
        }
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        for step in (["migrate", "--noinput"], ["demo_users", "--force"]):
            done = subprocess.run(
                [*manage, *step], env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT
            )
            if done.returncode != 0:
                raise CommandError(f"manage.py {step[0]} failed:\n{done.stderr[-2000:]}")
        port = free_port()
        log = stack.enter_context((tmp / "server.log").open("w"))
        process = subprocess.Popen(
            [*manage, "runserver", f"{HOST}:{port}", "--noreload"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        stack.callback(stop, process)
        base = f"http://{HOST}:{port}"
        wait_until_answering(process, f"{base}/accounts/login/", tmp / "server.log")
        self.say(f"Dashboard on {base} (runserver, pid {process.pid}).")
        return base

    def overview(self, http: httpx.Client, account_id: str) -> tuple[float, float]:
        """(server time from the view's Server-Timing header, time seen by the client)."""
        started = time.perf_counter()
        response = http.get(f"/accounts/{account_id}/")
        took = time.perf_counter() - started
        if response.status_code != 200 or "Still loading" in response.text:
            raise CommandError(f"overview of {account_id}: HTTP {response.status_code} or late")
        match = re.search(r"dur=([\d.]+)", response.headers.get("Server-Timing", ""))
        if not match:
            raise CommandError("the overview sent no Server-Timing header")
        return float(match[1]) / 1000, took

    def load(
        self, http: httpx.Client, account_id: str, clients: int, seconds: float
    ) -> dict[str, Any]:
        self.say(f"Loading the overview with {clients} clients for {seconds:g} s …")
        url = f"/accounts/{account_id}/"
        times: list[float] = []
        failures = Counter[str]()
        guard = threading.Lock()
        start_line = threading.Barrier(clients + 1)
        stop_at = [0.0]

        def client() -> None:
            with httpx.Client(
                base_url=str(http.base_url), cookies=http.cookies, timeout=30.0
            ) as own:
                start_line.wait()
                while time.monotonic() < stop_at[0]:
                    started = time.perf_counter()
                    try:
                        response = own.get(url)
                        outcome = str(response.status_code)
                        if response.status_code == 200 and "Still loading" in response.text:
                            outcome = "200 with a card still loading"
                    except httpx.HTTPError as err:
                        outcome = type(err).__name__
                    took = time.perf_counter() - started
                    with guard:
                        times.append(took)
                        if outcome != "200":
                            failures[outcome] += 1

        threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        stop_at[0] = began + seconds
        start_line.wait()
        for thread in threads:
            thread.join(timeout=seconds + 60)
        elapsed = time.monotonic() - began
        return {"times": times, "failures": failures, "elapsed": elapsed}

    # ------------------------------------------------------------ report

    def report(
        self,
        single: dict[str, float],
        cold: list[tuple[float, float]],
        warm: list[tuple[float, float]],
        load: dict[str, Any],
        calls: Counter[str],
        clients: int,
        cache_seconds: int,
    ) -> None:
        slowest = max(single.values())
        say = self.say
        say()
        say("Single upstream calls, made directly (median of 3):")
        for name, took in single.items():
            say(f"  {name:<22} {_ms(took):>8}")
        say(f"  {'sum':<22} {_ms(sum(single.values())):>8}")
        say(f"  {'max':<22} {_ms(slowest):>8}")
        say()
        target = 1.5 * slowest
        cold_server = [server for server, _ in cold]
        verdict = "met" if max(cold_server) < target else "MISSED"
        say("Overview, full page for a Billing admin (4 reads): server time (client round trip)")
        for label, samples in (("cold, empty cache", cold), ("warm, from cache", warm)):
            server = [s for s, _ in samples]
            client = [c for _, c in samples]
            say(
                f"  {label:<18} n={len(samples):<3} median {_ms(statistics.median(server))} "
                f"({_ms(statistics.median(client))}), max {_ms(max(server))} ({_ms(max(client))})"
            )
        say(f"  [target: cold < 1.5 × slowest single call = {_ms(target)}: {verdict}]")
        times: list[float] = load["times"]
        elapsed: float = load["elapsed"]
        say()
        say(f"Load: {clients} concurrent clients for {elapsed:.1f} s")
        if times:
            ordered = sorted(times)
            p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
            say(
                f"  {len(times)} overviews ({len(times) / elapsed:.0f}/s), "
                f"median {_ms(statistics.median(times))}, p95 {_ms(p95)}, max {_ms(max(times))}"
            )
        failures: Counter[str] = load["failures"]
        say(f"  not plain 200: {dict(failures) if failures else 'none'}")
        periods = max(1, math.ceil(elapsed / cache_seconds))
        say(
            f"Upstream calls served meanwhile (1 dashboard process, cache {cache_seconds} s, "
            f"{periods} cache period{'s' if periods > 1 else ''} spanned):"
        )
        worst = 0.0
        for name in sorted(set(calls) | set(OVERVIEW_ENDPOINTS)):
            per_period = calls[name] / periods
            worst = max(worst, per_period)
            say(f"  {name:<22} {calls[name]:>4} calls = {per_period:.2f} per cache period")
        verdict = "met" if worst <= 1 else "MISSED"
        say(f"  [target ≤ 1 call per endpoint per cache period per process: {verdict}]")
