"""Observability: JSON logs with request ids carried into upstream calls, no secret in any log
line, and Prometheus metrics at /metrics for those allowed, summed over worker processes."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from django.conf import settings as django_settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.views.debug import technical_500_response
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from billing_api.client import BillingClient
from billing_api.simulator import DEFAULT_TOKEN, Simulator
from dashboard.infra import metrics, observability
from dashboard.infra.observability import JsonFormatter, PlainFormatter
from tests.conftest import ACCOUNT_ID, OVERVIEW_URL, SAFETY_TIMEOUT, eventually, settings_module

ROOT = Path(__file__).resolve().parents[2]
METRICS_TOKEN = "metrics-token-for-the-tests-0123456789"
SIM_URL = "https://simulator.invalid/client/v4"


# ---------------------------------------------------------------- helpers


def console_handler() -> logging.Handler:
    """The handler LOGGING configures: what the process really writes."""
    for handler in logging.getLogger("billing_api").handlers:
        if handler.get_name() == "console":
            return handler
    raise AssertionError("LOGGING has no console handler on billing_api")


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """The console handler's output, as JSON lines, in a buffer, with INFO from our loggers."""
    handler = console_handler()
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    stream = handler.setStream(buffer)
    formatter = handler.formatter
    handler.setFormatter(JsonFormatter())
    levels = {name: logging.getLogger(name).level for name in ("billing_api", "dashboard")}
    for name in levels:
        logging.getLogger(name).setLevel(logging.INFO)
    yield buffer
    handler.setFormatter(formatter)
    handler.setStream(stream)
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def client_lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [line for line in lines(buffer) if line["logger"] == "billing_api.client"]


def sample(name: str, **labels: str) -> float:
    """A metric's current value in this process (0 when it has never been counted)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def make_client(sim: Simulator, **kwargs: object) -> BillingClient:
    return BillingClient(
        SIM_URL,
        DEFAULT_TOKEN,
        ACCOUNT_ID,
        http_client=httpx.Client(transport=sim.transport()),
        **kwargs,  # type: ignore[arg-type]
    )


# ---------------------------------------------------------------- JSON logs


def test_it_writes_a_log_record_as_one_json_line_with_request_id_and_extra_fields():
    token = observability.request_id.set("req-json-1")
    try:
        try:
            1 / 0  # noqa: B018
        except ZeroDivisionError:
            record = logging.getLogger("billing_api.client").makeRecord(
                "billing_api.client",
                logging.WARNING,
                __file__,
                1,
                "GET %s failed",
                ("credit-balance",),
                sys.exc_info(),
                extra={"endpoint": "GET credit-balance", "status": 503, "duration_ms": 12.5},
            )
        observability.RequestIdFilter().filter(record)
        text = JsonFormatter().format(record)
    finally:
        observability.request_id.reset(token)

    assert "\n" not in text, "one line per record"
    entry = json.loads(text)
    assert entry["message"] == "GET credit-balance failed"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "billing_api.client"
    assert entry["request_id"] == "req-json-1"
    assert entry["time"].endswith("+00:00"), "ISO-8601 in UTC"
    assert (entry["endpoint"], entry["status"], entry["duration_ms"]) == (
        "GET credit-balance",
        503,
        12.5,
    )
    assert entry["exc_type"] == "ZeroDivisionError"
    assert "Traceback" in entry["exc"] and "1 / 0" in entry["exc"]


def test_it_says_json_logs_outside_debug_and_plain_ones_in_demo_mode(load_settings):
    assert load_settings(**production()).LOG_FORMAT == "json"
    assert load_settings(**production(LOG_FORMAT="plain")).LOG_FORMAT == "plain"
    assert load_settings().LOG_FORMAT == "plain"
    demo_json = load_settings(LOG_FORMAT="JSON")
    assert demo_json.LOG_FORMAT == "json"
    assert demo_json.LOGGING["handlers"]["console"]["formatter"] == "json"
    with pytest.raises(ImproperlyConfigured, match="LOG_FORMAT must be json or plain"):
        load_settings(LOG_FORMAT="xml")


def test_a_log_level_left_empty_is_the_default_and_a_wrong_one_names_every_level(load_settings):
    assert load_settings(LOG_LEVEL="").LOG_LEVEL == "INFO"
    assert load_settings(LOG_LEVEL="critical").LOG_LEVEL == "CRITICAL"
    words = "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not 'LOUD'"
    with pytest.raises(ImproperlyConfigured, match=words):
        load_settings(LOG_LEVEL="loud")


def test_it_logs_each_upstream_call_with_endpoint_status_duration_and_retries(
    lead_client, log_output
):
    assert lead_client.get(OVERVIEW_URL).status_code == 200

    calls = {line["endpoint"]: line for line in client_lines(log_output)}
    balance = calls["GET credit-balance"]
    assert balance["status"] == 200
    assert balance["retries"] == 0
    assert balance["method"] == "GET"
    assert isinstance(balance["duration_ms"], float)
    assert balance["outcome"] == "2xx"


# ---------------------------------------------------------------- request ids


def test_it_carries_the_request_id_of_a_page_view_into_its_upstream_calls(lead_client, log_output):
    response = lead_client.get(OVERVIEW_URL, headers={"X-Request-ID": "lb-7f3a9c.01"})

    assert response.status_code == 200
    assert response["X-Request-ID"] == "lb-7f3a9c.01"
    calls = client_lines(log_output)
    assert len(calls) >= 3, "the overview reads several endpoints"
    assert {line["request_id"] for line in calls} == {"lb-7f3a9c.01"}
    pool_calls = [line for line in calls if str(line["thread"]).startswith("billing-read")]
    assert pool_calls, "the overview's reads ran in the pool's threads"


def test_it_gives_each_request_its_own_id_when_none_is_sent(lead_client, log_output):
    first = lead_client.get(OVERVIEW_URL)["X-Request-ID"]
    cache.clear()  # so that the second view asks Cloudflare too
    second = lead_client.get(OVERVIEW_URL)["X-Request-ID"]

    assert first != second
    assert len(first) == 32 and int(first, 16) >= 0
    ids = {line["request_id"] for line in client_lines(log_output)}
    assert first in ids and second in ids


@pytest.mark.parametrize(
    "incoming",
    [
        "has spaces",
        "newline\ninjected",
        "<script>alert(1)</script>",
        "a" * 129,
        "-starts-with-a-dash",
        'quote"d',
    ],
)
def test_it_replaces_a_malformed_request_id(lead_client, log_output, incoming):
    response = lead_client.get(OVERVIEW_URL, headers={"X-Request-ID": incoming})

    ours = response["X-Request-ID"]
    assert ours != incoming and len(ours) == 32
    assert {line["request_id"] for line in client_lines(log_output)} == {ours}
    assert incoming not in log_output.getvalue()


def test_djangos_own_request_log_carries_the_request_id(client, settings, log_output):
    settings.METRICS_TOKEN = METRICS_TOKEN
    response = client.get("/metrics", headers={"X-Request-ID": "probe-401"})

    assert response.status_code == 401
    logged = [line for line in lines(log_output) if line["logger"] == "django.request"]
    assert [line["request_id"] for line in logged] == ["probe-401"]
    assert logged[0]["status_code"] == 401


def test_it_sends_the_request_id_to_cloudflare_as_a_header():
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("X-Request-ID"))
        return httpx.Response(
            200, json={"success": True, "errors": [], "messages": [], "result": None}
        )

    client = BillingClient(
        SIM_URL,
        DEFAULT_TOKEN,
        ACCOUNT_ID,
        http_client=httpx.Client(transport=httpx.MockTransport(answer)),
    )
    client.delete_spending_limit()
    token = observability.request_id.set("page-42")
    try:
        client.delete_spending_limit()
    finally:
        observability.request_id.reset(token)

    assert seen == [None, "page-42"]


# ---------------------------------------------------------------- no secrets


@pytest.mark.parametrize("formatter", [JsonFormatter, PlainFormatter])
def test_no_secret_reaches_any_log_line_of_a_page_view_with_a_failing_upstream(
    lead_client, sim, settings, formatter
):
    settings.METRICS_TOKEN = METRICS_TOKEN
    sim.set_fault("*", "error", status=503)
    handler = console_handler()
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    stream = handler.setStream(buffer)
    old_formatter = handler.formatter
    handler.setFormatter(formatter())
    root = logging.getLogger()
    names = ("billing_api", "dashboard", "django", "httpx", "httpcore")
    levels = {name: logging.getLogger(name).level for name in names}
    # Everything, at every level, from every logger: what a debugging operator would see.
    root.addHandler(handler)
    for name in names:
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        response = lead_client.get(OVERVIEW_URL, headers={"X-Request-ID": "failing-page"})
    finally:
        root.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
        handler.setFormatter(old_formatter)
        handler.setStream(stream)

    assert response.status_code == 200
    output = buffer.getvalue()
    assert "503" in output and "failing-page" in output, "the failure was logged"
    for secret in (DEFAULT_TOKEN, django_settings.SECRET_KEY, METRICS_TOKEN):
        assert secret not in output


@pytest.mark.parametrize("formatter", [JsonFormatter, PlainFormatter])
def test_it_scrubs_secrets_that_something_logs_by_mistake(settings, formatter):
    settings.METRICS_TOKEN = METRICS_TOKEN
    settings.BILLING_ACCOUNT_TOKENS = {ACCOUNT_ID: "cf-api-token-only-for-this-test-9876"}
    secrets = [
        "cf-api-token-only-for-this-test-9876",
        django_settings.SECRET_KEY,
        METRICS_TOKEN,
        "opaque-bearer-credential-xyz",
    ]
    try:
        raise RuntimeError(f"connect failed for https://api?token={secrets[0]}")
    except RuntimeError:
        record = logging.getLogger("dashboard").makeRecord(
            "dashboard",
            logging.ERROR,
            __file__,
            1,
            "sent headers %s",
            ({"Authorization": f"Bearer {secrets[3]}"},),
            sys.exc_info(),
            extra={"url": f"https://x.invalid/?key={secrets[1]}", "nested": {"t": secrets[2]}},
        )
    observability.RequestIdFilter().filter(record)

    text = formatter().format(record)

    for secret in secrets:
        assert secret not in text
    if formatter is JsonFormatter:
        assert text.count("[redacted]") == 4
        entry = json.loads(text)
        assert entry["url"] == "https://x.invalid/?key=[redacted]"
        assert entry["nested"] == {"t": "[redacted]"}
    else:
        # A plain line has no extra fields: the header in the message, the URL in the trace.
        assert text.count("[redacted]") == 2


REDIS_PASSWORD = "redis-password-for-the-tests-4821"
MAIL_PASSWORD = "mail-password/for the tests-7310"
REDIS_URL_WITH_PASSWORD = f"redis://:{REDIS_PASSWORD}@cache.internal:6379/0"
# The URL carries the password percent-encoded; a library may log it decoded.
EMAIL_URL_WITH_PASSWORD = "smtp://alerts:mail-password%2Ffor%20the%20tests-7310@mail.internal:587"


@pytest.fixture
def url_passwords(settings) -> None:
    settings.REDIS_URL = REDIS_URL_WITH_PASSWORD
    settings.EMAIL_URL = EMAIL_URL_WITH_PASSWORD


@pytest.mark.parametrize("formatter", [JsonFormatter, PlainFormatter])
def test_it_scrubs_the_passwords_of_redis_and_mail_from_log_lines(url_passwords, formatter):
    record = logging.getLogger("dashboard").makeRecord(
        "dashboard",
        logging.ERROR,
        __file__,
        1,
        "cache down at %s; mail server %s refused the password %r",
        (REDIS_URL_WITH_PASSWORD, EMAIL_URL_WITH_PASSWORD, MAIL_PASSWORD),
        None,
    )
    observability.RequestIdFilter().filter(record)

    text = formatter().format(record)

    assert "redis://:[redacted]@cache.internal:6379/0" in text
    assert "smtp://alerts:[redacted]@mail.internal:587" in text
    assert "refused the password '[redacted]'" in text
    for secret in (REDIS_PASSWORD, MAIL_PASSWORD, "mail-password%2F"):
        assert secret not in text


@pytest.mark.parametrize("formatter", [JsonFormatter, PlainFormatter])
def test_it_scrubs_the_password_of_any_url_however_short(formatter):
    record = logging.getLogger("dashboard").makeRecord(
        "dashboard",
        logging.WARNING,
        __file__,
        1,
        "retrying postgres://app:pw9@db.internal:5432/spend and https://example.com:8443/a@b",
        (),
        None,
    )
    observability.RequestIdFilter().filter(record)

    text = formatter().format(record)

    assert "postgres://app:[redacted]@db.internal:5432/spend" in text
    assert "https://example.com:8443/a@b" in text, "a URL without a password is kept"


@pytest.mark.parametrize("formatter", [JsonFormatter, PlainFormatter])
def test_it_scrubs_a_secret_that_json_writes_escaped(settings, formatter):
    # A JSON line writes a quote or backslash escaped: the secret must go in that form too.
    secret = 'metrics"token\\with-quote-5521'
    settings.METRICS_TOKEN = secret
    record = logging.getLogger("dashboard").makeRecord(
        "dashboard", logging.ERROR, __file__, 1, "token was %s", (secret,), None
    )

    text = formatter().format(record)

    assert "token was [redacted]" in text
    assert "5521" not in text


@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_it_keeps_passwords_off_the_debug_error_page(url_passwords, settings, rf, accept):
    # text/html: the page DEBUG shows; text/plain: the report also sent to admins by mail.
    settings.DEBUG = True
    request = rf.get("/accounts/", headers={"Accept": accept})
    cache_url = REDIS_URL_WITH_PASSWORD  # a local variable: the page lists each frame's
    try:
        raise ConnectionError(f"Error connecting to {cache_url}")
    except ConnectionError:
        response = technical_500_response(request, *sys.exc_info())

    page = response.content.decode()
    assert response.status_code == 500 and response["Content-Type"].startswith(accept)
    assert "REDIS_URL" in page and "cache.internal" in page, "the page still says where"
    for secret in (REDIS_PASSWORD, MAIL_PASSWORD, "mail-password%2F", "mail-password/"):
        assert secret not in page


def test_a_secret_inside_another_leaves_no_part_of_it_on_the_debug_error_page(settings, rf):
    # The page shows the longer one HTML-escaped; the shorter one inside it must not be
    # redacted first, which would leave the escaped one unmatched and its tail shown.
    # Built from parts, and no part kept in a variable: the page shows this test's source
    # lines and local variables too.
    settings.DEBUG = True
    settings.METRICS_TOKEN = "shared-part-" + str(8000 + 841)
    settings.CLOUDFLARE_API_TOKEN = settings.METRICS_TOKEN + "&tail-" + str(7000 + 730)
    request = rf.get("/accounts/", headers={"Accept": "text/html"})
    token = settings.CLOUDFLARE_API_TOKEN
    try:
        raise ConnectionError(f"refused {token}")
    except ConnectionError:
        page = technical_500_response(request, *sys.exc_info()).content.decode()
    assert settings.METRICS_TOKEN not in page
    assert token.partition("&")[2] not in page


# ---------------------------------------------------------------- /metrics access


def test_metrics_ask_for_credentials_from_an_anonymous_visitor(client, settings):
    settings.METRICS_TOKEN = METRICS_TOKEN
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert b"billing_api_" not in response.content and b"dashboard_" not in response.content


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer wrong-token",
        f"Bearer {METRICS_TOKEN}x",
        f"Basic {METRICS_TOKEN}",
        "Bearer ",
    ],
)
def test_metrics_refuse_wrong_credentials(client, settings, authorization):
    settings.METRICS_TOKEN = METRICS_TOKEN
    response = client.get("/metrics", headers={"Authorization": authorization})
    assert response.status_code == 403
    assert b"dashboard_" not in response.content


def test_metrics_refuse_every_token_when_none_is_configured(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer x"}).status_code == 403


def test_metrics_answer_the_right_token(client, settings):
    settings.METRICS_TOKEN = METRICS_TOKEN
    response = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert "dashboard_page_duration_seconds" in names


def test_metrics_answer_staff_and_refuse_other_users(lead_client, admin_client):
    assert lead_client.get("/metrics").status_code == 403
    assert admin_client.get("/metrics").status_code == 200


def test_metrics_token_is_read_from_a_file(load_settings, tmp_path):
    secret_file = tmp_path / "metrics-token"
    secret_file.write_text(METRICS_TOKEN + "\n")
    assert load_settings(METRICS_TOKEN_FILE=str(secret_file)).METRICS_TOKEN == METRICS_TOKEN


# ---------------------------------------------------------------- counters


def test_counters_move_with_page_views(lead_client, admin_client):
    calls = ("billing_api_upstream_requests_total", "credit-balance", "GET", "2xx")
    page = ("dashboard_page_duration_seconds_count", "dashboard:overview", "2xx")

    def upstream_calls() -> float:
        return sample(calls[0], endpoint=calls[1], method=calls[2], outcome=calls[3])

    def pages() -> float:
        return sample(page[0], view=page[1], status=page[2])

    def cache(kind: str) -> float:
        return sample(f"dashboard_read_cache_{kind}_total", read="credit-balance")

    before = (upstream_calls(), cache("misses"), cache("hits"), pages())
    assert lead_client.get(OVERVIEW_URL).status_code == 200
    first = (upstream_calls(), cache("misses"), cache("hits"), pages())
    assert lead_client.get(OVERVIEW_URL).status_code == 200
    second = (upstream_calls(), cache("misses"), cache("hits"), pages())

    assert first[0] - before[0] == 1, "one upstream call for the balance"
    assert first[1] - before[1] >= 1, "a cache miss first"
    assert second[0] == first[0], "then no upstream call"
    assert second[1] == first[1] and second[2] - first[2] >= 1, "and a cache hit"
    assert (first[3] - before[3], second[3] - first[3]) == (1, 1), "each page view timed"
    exposed = admin_client.get("/metrics").text
    assert 'view="dashboard:overview"' in exposed and 'read="credit-balance"' in exposed
    assert 'endpoint="credit-balance"' in exposed


def test_counters_count_upstream_errors(lead_client, sim):
    sim.set_fault("GET credit-balance", "error", status=500)
    labels = {"endpoint": "credit-balance", "method": "GET"}
    errors = sample("billing_api_upstream_errors_total", **labels, error="UpstreamError")
    failed = sample("billing_api_upstream_requests_total", **labels, outcome="5xx")

    assert lead_client.get(OVERVIEW_URL).status_code == 200

    assert sample("billing_api_upstream_errors_total", **labels, error="UpstreamError") == (
        errors + 1
    )
    assert sample("billing_api_upstream_requests_total", **labels, outcome="5xx") == failed + 1


def test_counters_count_retries_and_each_attempts_latency(sim):
    client = make_client(sim, max_retries=2, sleep=lambda seconds: None)
    sim.set_fault("GET credit-balance", "error", status=503, times=1)
    labels = {"endpoint": "credit-balance", "method": "GET"}
    names: tuple[tuple[str, dict[str, str]], ...] = (
        ("billing_api_upstream_retries_total", {}),
        ("billing_api_upstream_requests_total", {"outcome": "5xx"}),
        ("billing_api_upstream_requests_total", {"outcome": "2xx"}),
        ("billing_api_upstream_request_duration_seconds_count", {}),
    )
    before = [sample(name, **labels, **extra) for name, extra in names]

    client.credit_balance()

    after = [sample(name, **labels, **extra) for name, extra in names]
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 1, 1, 2]


# ---------------------------------------------------------------- several processes

WORKER = """
import sys
import httpx
from billing_api.client import BillingClient
from billing_api.simulator import DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN, Simulator
from dashboard.infra import metrics

client = BillingClient(
    "https://simulator.invalid/client/v4", DEFAULT_TOKEN, DEFAULT_ACCOUNT_ID,
    http_client=httpx.Client(transport=Simulator(seed=0).transport()),
)
for _ in range(int(sys.argv[1])):
    client.credit_balance()
    metrics.record_cache("credit-balance", hit=False)
"""


def run_workers(directory: Path, counts: tuple[int, ...]) -> None:
    """Runs one process per count at once, each making that many upstream calls."""
    env = {
        **os.environ,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
        "PYTHONPATH": str(ROOT),
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(count)], env=env, cwd=ROOT)
        for count in counts
    ]
    for worker in workers:
        assert worker.wait(timeout=SAFETY_TIMEOUT * 3) == 0


def test_multiprocess_mode_sums_every_worker_process(tmp_path, admin_client, settings):
    run_workers(tmp_path, (3, 4))
    assert len(list(tmp_path.glob("counter_*.db"))) == 2, "one file per process"

    body, _ = metrics.exposition(str(tmp_path))
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    call = (("endpoint", "credit-balance"), ("method", "GET"), ("outcome", "2xx"))
    assert values[("billing_api_upstream_requests_total", call)] == 7
    latency = (("endpoint", "credit-balance"), ("method", "GET"))
    assert values[("billing_api_upstream_request_duration_seconds_count", latency)] == 7
    assert values[("dashboard_read_cache_misses_total", (("read", "credit-balance"),))] == 7

    # /metrics serves the sum when the server runs in multiprocess mode.
    settings.PROMETHEUS_MULTIPROC_DIR = str(tmp_path)
    exposed = admin_client.get("/metrics").text
    assert (
        'billing_api_upstream_requests_total{endpoint="credit-balance",method="GET",'
        'outcome="2xx"} 7.0'
    ) in exposed

    # A dead worker's counts stay; a new server starts from an empty directory.
    for path in tmp_path.glob("counter_*.db"):
        metrics.mark_process_dead(int(path.stem.split("_")[-1]), str(tmp_path))
    assert metrics.exposition(str(tmp_path))[0] == body
    metrics.empty_multiproc_dir(str(tmp_path))
    assert b"billing_api_upstream_requests_total{" not in metrics.exposition(str(tmp_path))[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def exposed_value(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return None


@pytest.mark.timeout(120)
def test_gunicorn_workers_share_one_metrics_view_from_an_emptied_directory(tmp_path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    run_workers(metrics_dir, (2,))  # a previous run's figures, to be forgotten at start
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    drop = ("DATABASE_URL", "REDIS_URL", "CLOUDFLARE_", "BILLING_", "DJANGO_SETTINGS_MODULE")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)} | {
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "METRICS_TOKEN": METRICS_TOKEN,
        "LOG_FORMAT": "json",
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "2",
    }
    output = tmp_path / "gunicorn.out"
    with output.open("wb") as out:
        server = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "--config",
                "dashboard/infra/gunicorn_conf.py",
                "--bind",
                f"127.0.0.1:{port}",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def healthy() -> bool:
            assert server.poll() is None, output.read_text(errors="replace")
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        eventually(healthy, "gunicorn answered /healthz", timeout=SAFETY_TIMEOUT * 3)
        # One connection per request, so that both workers serve some.
        for _ in range(20):
            assert httpx.get(f"{base}/healthz", timeout=SAFETY_TIMEOUT).status_code == 200
        refused = httpx.get(
            f"{base}/metrics", headers={"X-Request-ID": "scrape-1"}, timeout=SAFETY_TIMEOUT
        )
        scrape = httpx.get(
            f"{base}/metrics",
            headers={"Authorization": f"Bearer {METRICS_TOKEN}"},
            timeout=SAFETY_TIMEOUT,
        )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)

    assert refused.status_code == 401 and refused.headers["X-Request-ID"] == "scrape-1"
    assert scrape.status_code == 200
    # Warming /healthz up counted too: at least the 20, from whichever workers served them.
    healthz = exposed_value(
        scrape.text, "dashboard_page_duration_seconds_count", status="2xx", view="healthz"
    )
    assert healthz is not None and healthz >= 20
    assert (
        exposed_value(
            scrape.text,
            "billing_api_upstream_requests_total",
            endpoint="credit-balance",
            method="GET",
            outcome="2xx",
        )
        is None
    ), "the previous run's counts were emptied at start"
    printed = output.read_text(errors="replace")
    logged = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert any(
        line["logger"] == "django.request" and line["request_id"] == "scrape-1" for line in logged
    ), "JSON log lines with the request id"
    assert any(
        '"GET /metrics HTTP/1.1" 401' in line and line.endswith("request_id=scrape-1")
        for line in printed.splitlines()
    ), "gunicorn's access line names the request id"


def test_multiprocess_dir_must_be_a_writable_directory(load_settings, tmp_path):
    assert (
        str(tmp_path)
        == load_settings(PROMETHEUS_MULTIPROC_DIR=str(tmp_path)).PROMETHEUS_MULTIPROC_DIR
    )
    with pytest.raises(ImproperlyConfigured, match="PROMETHEUS_MULTIPROC_DIR"):
        load_settings(PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "missing"))


# ---------------------------------------------------------------- settings under test

SETTINGS_VARIABLES = (
    "CLOUDFLARE_ACCOUNTS",
    "CLOUDFLARE_ACCOUNT_ID",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_API_TOKEN_FILE",
    "BILLING_API_BASE_URL",
    "DEBUG",
    "LOG_FORMAT",
    "LOG_LEVEL",
    "METRICS_TOKEN",
    "METRICS_TOKEN_FILE",
    "PROMETHEUS_MULTIPROC_DIR",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
)


def production(**env: str) -> dict[str, str]:
    return {
        "CLOUDFLARE_API_TOKEN": "cf-token-for-settings",
        "CLOUDFLARE_ACCOUNT_ID": "0123456789abcdef0123456789abcdef",
        "SECRET_KEY": "s" * 50,
        **env,
    }


@pytest.fixture
def load_settings(monkeypatch):
    """Runs the settings module afresh under the given environment."""

    def load(**env: str) -> ModuleType:
        for name in SETTINGS_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return settings_module()

    return load
