"""Production serving: settings for gunicorn, WhiteNoise and Redis, the deploy check, and
``make serve`` itself on this machine's PostgreSQL and Redis."""

from __future__ import annotations

import ast
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from dashboard import settings as dashboard_settings
from tests.conftest import settings_module

ROOT = Path(dashboard_settings.__file__).resolve().parent.parent
SETTINGS_FILE = ROOT / "dashboard" / "settings.py"
ACCOUNT = "0123456789abcdef0123456789abcdef"
#: settings.py's readers of the environment: every function of its named env...
ENV_HELPERS = {
    name
    for name, value in vars(dashboard_settings).items()
    if name.startswith("env") and callable(value)
}


def settings_variables() -> dict[str, str]:
    """Every environment variable settings.py reads, by name, with the helper that reads it.

    A name built at run time (``f"CLOUDFLARE_API_TOKEN_{account_id}"``) is given as its
    constant start followed by ``<...>``.
    """
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(SETTINGS_FILE.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in ENV_HELPERS or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            found[first.value] = node.func.id
        elif isinstance(first, ast.JoinedStr):
            start = "".join(
                part.value
                for part in first.values[:1]
                if isinstance(part, ast.Constant) and isinstance(part.value, str)
            )
            found[start + "<...>"] = node.func.id
    return found


def clean_environ() -> dict[str, str]:
    """This process's environment without anything settings.py would read."""
    # A prefix covers NAME, NAME_FILE and the names built from it (a token per account).
    prefixes = tuple(name.removesuffix("<...>") for name in settings_variables())
    return {key: value for key, value in os.environ.items() if not key.startswith(prefixes)}


def production(**env: str) -> dict[str, str]:
    """A complete production environment (nothing here is contacted by the checks)."""
    return {
        "CLOUDFLARE_API_TOKEN": "cf-token-" + secrets.token_hex(8),
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "spend.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://spend.example.com",
        "DATABASE_URL": "postgres://spend@127.0.0.1:5432/spend",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        **env,
    }


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch) -> Callable[..., ModuleType]:
    """Run the settings module afresh under exactly the given environment."""

    def load(**env: str) -> ModuleType:
        for key in set(os.environ) - set(clean_environ()):
            monkeypatch.delenv(key)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return settings_module()

    return load


def run_manage(
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean_environ() | {"DJANGO_SETTINGS_MODULE": "dashboard.settings"} | env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# ---------------------------------------------------------------- settings


def test_it_finds_the_variables_settings_reads() -> None:
    variables = settings_variables()
    assert variables["SECRET_KEY"] == "envsecret"
    assert variables["REDIS_URL"] == "envsecret"
    assert variables["STATIC_ROOT"] == "envstr"
    assert variables["BILLING_API_TIMEOUT"] == "envseconds"
    assert variables["TOPUP_MAX_AMOUNT"] == "envdollars"
    assert "CLOUDFLARE_API_TOKEN_<...>" in variables


def test_it_selects_a_shared_redis_cache_and_cached_sessions_from_redis_url(load) -> None:
    settings = load(**production(REDIS_URL="redis://cache.internal:6380/2"))
    cache = settings.CACHES["default"]
    assert cache["BACKEND"] == "dashboard.infra.cache.ResilientRedisCache"
    assert cache["LOCATION"] == "redis://cache.internal:6380/2"
    assert settings.SESSION_ENGINE == "django.contrib.sessions.backends.cached_db"


def test_it_keeps_sessions_in_the_database_without_redis(load) -> None:
    env = production()
    del env["REDIS_URL"]
    settings = load(**env)
    assert "locmem" in settings.CACHES["default"]["BACKEND"]
    assert getattr(settings, "SESSION_ENGINE", "django.contrib.sessions.backends.db") == (
        "django.contrib.sessions.backends.db"
    )


@pytest.mark.parametrize("url", ["memcached://127.0.0.1:11211", "127.0.0.1:6379", "http://redis"])
def test_it_refuses_a_redis_url_of_another_kind(load, url: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="REDIS_URL must be a redis://"):
        load(**production(REDIS_URL=url))


def test_it_serves_hashed_compressed_static_files_in_production(load, tmp_path: Path) -> None:
    settings = load(**production(STATIC_ROOT=str(tmp_path)))
    assert settings.DEBUG is False
    assert settings.STORAGES["staticfiles"]["BACKEND"] == (
        "whitenoise.storage.CompressedManifestStaticFilesStorage"
    )
    assert tmp_path == settings.STATIC_ROOT
    middleware = settings.MIDDLEWARE
    security = middleware.index("django.middleware.security.SecurityMiddleware")
    assert middleware[security + 1] == "whitenoise.middleware.WhiteNoiseMiddleware"


def test_it_serves_static_files_straight_from_the_tree_in_demo_mode(load) -> None:
    settings = load()
    assert settings.DEBUG is True
    backend = settings.STORAGES["staticfiles"]["BACKEND"]
    assert backend == "django.contrib.staticfiles.storage.StaticFilesStorage"
    assert settings.WHITENOISE_USE_FINDERS is True


def test_it_exempts_only_the_probes_from_the_https_redirect(load) -> None:
    settings = load(**production())
    assert settings.SECURE_SSL_REDIRECT is True
    exempt = [re.compile(pattern) for pattern in settings.SECURE_REDIRECT_EXEMPT]
    for path, exempted in [("healthz", True), ("readyz", True), ("accounts/login/", False)]:
        assert any(pattern.search(path) for pattern in exempt) is exempted, path


# ---------------------------------------------------------------- manage.py in production


def test_it_passes_the_deploy_check_with_everything_a_production_server_sets(
    tmp_path: Path,
) -> None:
    result = run_manage(
        "check", "--deploy", "--fail-level", "WARNING", env=production(STATIC_ROOT=str(tmp_path))
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_it_collects_hashed_and_compressed_static_files(tmp_path: Path) -> None:
    result = run_manage("collectstatic", "--noinput", env=production(STATIC_ROOT=str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "staticfiles.json").is_file()
    hashed = list((tmp_path / "css").glob("app.*.css"))
    assert hashed, "app.css has a hashed copy"
    assert Path(f"{hashed[0]}.gz").is_file()


# ---------------------------------------------------------------- make serve, for real


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def wait_until(
    check: Callable[[], bool], what: str, timeout: float, output: Path | None = None
) -> None:
    limit = time.monotonic() + timeout
    while not check():
        if time.monotonic() > limit:
            printed = output.read_text(errors="replace") if output else ""
            pytest.fail(f"never happened: {what}\n{printed}")
        time.sleep(0.1)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    """``make serve`` on a free port with its own database and cache prefix, stopped as by ^C."""
    port = free_port()
    database = f"serve_{uuid.uuid4().hex[:12]}"
    prefix = f"serve-test-{uuid.uuid4().hex}"
    output = tmp_path / "serve.out"
    env = clean_environ() | {
        "SERVE_DATABASE": database,
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "STATIC_ROOT": str(tmp_path / "static"),
        "CACHE_KEY_PREFIX": prefix,
    }
    with output.open("wb") as out:
        process = subprocess.Popen(
            ["make", "--no-print-directory", "serve"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield f"http://127.0.0.1:{port}", output, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        subprocess.run(
            ["dropdb", "-h", "127.0.0.1", "-p", "5432", "--if-exists", database],
            capture_output=True,
            timeout=30,
        )
        client = redis.Redis.from_url("redis://127.0.0.1:6379/0")
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


# A fresh database is migrated and static files collected: slower than a unit test.
@pytest.mark.timeout(300)
def test_make_serve_runs_the_dashboard_on_gunicorn_and_stops_with_its_simulator(served) -> None:
    base, output, process = served
    wait_until(
        lambda: answers(base + "/healthz") or process.poll() is not None,
        "make serve answered /healthz",
        # A bound for a machine busy with other work, never a claim about speed.
        timeout=180,
        output=output,
    )
    printed = output.read_text(errors="replace")
    assert process.poll() is None, printed
    assert "finance" in printed and "demo-finance-2026" in printed, "the demo logins are printed"
    simulator = re.search(
        r"Cloudflare simulator .* at (http://127\.0\.0\.1:\d+)/client/v4", printed
    )
    assert simulator, printed
    assert (ROOT / "var" / "secret_key").stat().st_mode & 0o777 == 0o600

    with httpx.Client(base_url=base, timeout=30, follow_redirects=True) as client:
        assert client.get("/readyz").json()["status"] == "ok"
        login = client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)
        assert token, login.text
        page = client.post(
            "/accounts/login/",
            data={
                "username": "finance",
                "password": "demo-finance-2026",
                "csrfmiddlewaretoken": token.group(1),
            },
        )
        assert page.status_code == 200
        assert re.search(r"/accounts/[0-9a-f]{32}/$", str(page.url)), page.url
        assert "Credit balance" in page.text
        assert re.search(r"\$[\d,]+\.\d\d", page.text), "figures from the simulator"
        stylesheet = re.search(r'href="(/static/css/app\.[0-9a-f]{12}\.css)"', page.text)
        assert stylesheet, "static files have hashed names"
        css = client.get(stylesheet.group(1), headers={"Accept-Encoding": "gzip"})
        assert css.status_code == 200 and css.headers["Content-Encoding"] == "gzip"
        assert "immutable" in css.headers["Cache-Control"]
        # Every demo account is served by the one simulator.
        for account in dashboard_settings.BILLING_ACCOUNTS:
            assert client.get(f"/accounts/{account}/").status_code == 200

    os.killpg(process.pid, signal.SIGINT)
    process.wait(timeout=60)
    wait_until(lambda: not answers(simulator.group(1) + "/__simulator/info"), "simulator gone", 10)
    assert not answers(base + "/healthz")


# ---------------------------------------------------------------- the list of settings


def documented(name: str, text: str, line_start: str) -> bool:
    """``NAME`` (or ``PREFIX<account id>`` for a built name) starts a line of ``text``."""
    if name.endswith("<...>"):
        pattern = re.escape(name.removesuffix("<...>")) + r"<[^>]+>"
    else:
        pattern = re.escape(name) + r"\b"
    return re.search(line_start + pattern, text, re.MULTILINE) is not None


def test_env_example_lists_every_variable_settings_reads() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    missing = [name for name in settings_variables() if not documented(name, example, r"^(# )?")]
    assert not missing, f".env.example lacks {missing}"


def test_env_example_offers_the_file_form_of_the_required_secrets() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    for name in ("CLOUDFLARE_API_TOKEN", "SECRET_KEY", "DATABASE_URL", "REDIS_URL"):
        assert re.search(rf"^# {name}_FILE=", example, re.MULTILINE), name


def test_env_example_lists_the_gunicorn_variables() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    config = (ROOT / "dashboard" / "infra" / "gunicorn_conf.py").read_text(encoding="utf-8")
    names = set(re.findall(r'(?:environ\.get|_positive)\(\s*"([A-Z_]+)"', config))
    assert {"WEB_CONCURRENCY", "GUNICORN_THREADS"} <= names
    missing = [name for name in sorted(names) if not documented(name, example, r"^(# )?")]
    assert not missing, f".env.example lacks {missing}"


def test_the_readme_configuration_table_lists_every_variable_settings_reads() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    # The first cell of each row names one variable or several: "| `A`, `B` | ...".
    names = " ".join(row.split("|")[1] for row in section.splitlines() if row.startswith("| `"))
    missing = [
        name
        for name in settings_variables()
        if not documented(name, names.replace("`", "\n").replace(",", "\n"), r"^\s*")
    ]
    assert not missing, f"README's configuration table lacks {missing}"
