"""Settings from the environment: typed helpers, demo mode, and clear refusals."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest
from django.core.exceptions import ImproperlyConfigured

from dashboard import settings as dashboard_settings
from dashboard.settings import envbool, envfloat, envint, envlist, envsecret, envstr
from tests.conftest import settings_module

SETTINGS_FILE = Path(dashboard_settings.__file__)
ACCOUNT = "0123456789abcdef0123456789abcdef"
VARIABLES = (
    "ALLOWED_HOSTS",
    "BILLING_API_BASE_URL",
    "BILLING_API_MAX_RETRIES",
    "BILLING_API_TIMEOUT",
    "BILLING_CACHE_SECONDS",
    "BILLING_SIMULATOR_SEED",
    "BILLING_STALE_SECONDS",
    "CLOUDFLARE_ACCOUNT_ID",
    "CLOUDFLARE_ACCOUNT_NAME",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_API_TOKEN_FILE",
    "DASHBOARD_TIME_ZONE",
    "DATABASE_URL",
    "DATABASE_URL_FILE",
    "DEBUG",
    "LOG_LEVEL",
    "SECRET_KEY",
    "SECRET_KEY_FILE",
    "TOPUP_MAX_AMOUNT",
)


@pytest.fixture
def load(monkeypatch):
    """Run the settings module afresh under the given environment (and nothing else)."""

    def load(**env: str) -> ModuleType:
        for name in VARIABLES:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return settings_module()

    return load


def production(**env: str) -> dict[str, str]:
    return {
        "CLOUDFLARE_API_TOKEN": "cf-token",
        "CLOUDFLARE_ACCOUNT_ID": ACCOUNT,
        "SECRET_KEY": "s" * 50,
        **env,
    }


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize("value", ["1", "true", "Yes", "ON"])
def test_it_reads_true_in_plain_words(monkeypatch, value):
    monkeypatch.setenv("SOME_FLAG", value)
    assert envbool("SOME_FLAG", False) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "off"])
def test_it_reads_false_in_plain_words(monkeypatch, value):
    monkeypatch.setenv("SOME_FLAG", value)
    assert envbool("SOME_FLAG", True) is False


def test_it_uses_the_default_for_an_unset_or_empty_variable(monkeypatch):
    monkeypatch.delenv("SOME_FLAG", raising=False)
    monkeypatch.setenv("SOME_NUMBER", "")
    assert envbool("SOME_FLAG", True) is True
    assert envint("SOME_NUMBER", 7) == 7
    assert envfloat("SOME_NUMBER", 2.5) == 2.5
    assert envstr("SOME_FLAG", "x") == "x"
    assert envlist("SOME_FLAG", ["a"]) == ["a"]


def test_it_refuses_a_malformed_boolean_naming_the_variable(monkeypatch):
    monkeypatch.setenv("SOME_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG.*'maybe'"):
        envbool("SOME_FLAG", False)


def test_it_reads_integers_and_refuses_malformed_ones(monkeypatch):
    monkeypatch.setenv("SOME_NUMBER", " 42 ")
    assert envint("SOME_NUMBER", 0) == 42
    monkeypatch.setenv("SOME_NUMBER", "4.2")
    with pytest.raises(ImproperlyConfigured, match="SOME_NUMBER must be a whole number"):
        envint("SOME_NUMBER", 0)


@pytest.mark.parametrize("value", ["ten", "nan", "inf"])
def test_it_refuses_a_malformed_float_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("SOME_SECONDS", value)
    with pytest.raises(ImproperlyConfigured, match="SOME_SECONDS"):
        envfloat("SOME_SECONDS", 1.0)


def test_it_reads_floats(monkeypatch):
    monkeypatch.setenv("SOME_SECONDS", "2.5")
    assert envfloat("SOME_SECONDS", 1.0) == 2.5


def test_it_reads_lists_separated_by_commas(monkeypatch):
    monkeypatch.setenv("SOME_HOSTS", " a.example, ,b.example ")
    assert envlist("SOME_HOSTS") == ["a.example", "b.example"]


def test_it_reads_a_secret_from_the_file_named_by_name_file(monkeypatch, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file\n", encoding="utf-8")
    monkeypatch.delenv("SOME_SECRET", raising=False)
    monkeypatch.setenv("SOME_SECRET_FILE", str(secret_file))
    assert envsecret("SOME_SECRET") == "from-a-file"


def test_it_refuses_a_secret_set_both_ways(monkeypatch, tmp_path):
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-a-file", encoding="utf-8")
    monkeypatch.setenv("SOME_SECRET", "inline-value")
    monkeypatch.setenv("SOME_SECRET_FILE", str(secret_file))
    with pytest.raises(ImproperlyConfigured, match="SOME_SECRET or SOME_SECRET_FILE") as caught:
        envsecret("SOME_SECRET")
    assert "inline-value" not in str(caught.value)


def test_it_refuses_an_unreadable_secret_file(monkeypatch, tmp_path):
    monkeypatch.delenv("SOME_SECRET", raising=False)
    monkeypatch.setenv("SOME_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="SOME_SECRET_FILE"):
        envsecret("SOME_SECRET")


# ---------------------------------------------------------------- the settings module


def test_it_runs_in_demo_mode_without_a_token(load):
    from billing_api.simulator import DEFAULT_ACCOUNT_ID

    settings = load()
    assert settings.DEMO_MODE is True
    assert settings.DEBUG is True
    assert list(settings.BILLING_ACCOUNTS.values()) == ["Production", "Research", "Staging"]
    assert next(iter(settings.BILLING_ACCOUNTS)) == DEFAULT_ACCOUNT_ID
    assert settings.BILLING_DEFAULT_ACCOUNT == DEFAULT_ACCOUNT_ID
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
    assert "locmem" in settings.CACHES["default"]["BACKEND"]
    assert settings.TIME_ZONE == "UTC"
    assert settings.BILLING_CACHE_SECONDS == 30


def test_it_talks_to_cloudflare_with_a_token_and_an_account(load):
    settings = load(**production())
    assert settings.DEMO_MODE is False
    assert settings.DEBUG is False
    assert settings.BILLING_API_BASE_URL == "https://api.cloudflare.com/client/v4"
    assert settings.BILLING_ACCOUNTS == {ACCOUNT: "Cloudflare"}
    assert settings.SESSION_COOKIE_SECURE is True


def test_it_reads_several_accounts_with_names_and_their_own_tokens(load):
    other = "b" * 32
    env = production(CLOUDFLARE_ACCOUNTS=f"{ACCOUNT}=Production, {other}=Research")
    del env["CLOUDFLARE_ACCOUNT_ID"]
    settings = load(**env, **{f"CLOUDFLARE_API_TOKEN_{other}": "research-token"})
    assert {ACCOUNT: "Production", other: "Research"} == settings.BILLING_ACCOUNTS
    assert {ACCOUNT: "cf-token", other: "research-token"} == settings.BILLING_ACCOUNT_TOKENS


def test_it_needs_a_token_for_every_account(load):
    other = "b" * 32
    with pytest.raises(ImproperlyConfigured, match=f"CLOUDFLARE_API_TOKEN_{other}"):
        load(CLOUDFLARE_ACCOUNTS=f"{other}=Research", SECRET_KEY="s" * 50)


@pytest.mark.parametrize(
    ("spec", "message"),
    [("nope=Bad", "not an account id"), (f"{ACCOUNT},{ACCOUNT}", "twice"), (" , ", "no account")],
)
def test_it_refuses_a_malformed_account_list(load, spec, message):
    with pytest.raises(ImproperlyConfigured, match=f"CLOUDFLARE_ACCOUNTS.*{message}"):
        load(**production(CLOUDFLARE_ACCOUNTS=spec))


def test_it_reads_the_token_from_a_file(load, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("cf-token-from-file\n", encoding="utf-8")
    env = production()
    del env["CLOUDFLARE_API_TOKEN"]
    settings = load(CLOUDFLARE_API_TOKEN_FILE=str(token_file), **env)
    assert settings.CLOUDFLARE_API_TOKEN == "cf-token-from-file"
    assert settings.DEMO_MODE is False


def test_it_points_at_another_base_url(load):
    settings = load(**production(BILLING_API_BASE_URL="http://127.0.0.1:8787/client/v4/"))
    assert settings.BILLING_API_BASE_URL == "http://127.0.0.1:8787/client/v4"


def test_it_reads_the_top_up_ceiling_from_the_environment(load):
    assert Decimal("10000") == load().TOPUP_MAX_AMOUNT
    assert Decimal("2500.50") == load(TOPUP_MAX_AMOUNT="2500.50").TOPUP_MAX_AMOUNT


@pytest.mark.parametrize("value", ["lots", "1e4", "NaN", "Infinity", "-50", "9.99", "100.001"])
def test_it_refuses_a_malformed_top_up_ceiling(load, value):
    with pytest.raises(ImproperlyConfigured, match="TOPUP_MAX_AMOUNT"):
        load(TOPUP_MAX_AMOUNT=value)


def test_it_refuses_a_token_without_an_account(load):
    with pytest.raises(ImproperlyConfigured, match="CLOUDFLARE_ACCOUNT_ID") as caught:
        load(CLOUDFLARE_API_TOKEN="cf-token", SECRET_KEY="s" * 50)
    assert "cf-token" not in str(caught.value)


def test_it_refuses_an_account_id_that_is_not_cloudflare_shaped(load):
    with pytest.raises(ImproperlyConfigured, match="CLOUDFLARE_ACCOUNT_ID must be 32"):
        load(**production(CLOUDFLARE_ACCOUNT_ID="login"))


def test_it_refuses_a_base_url_without_a_token(load):
    with pytest.raises(ImproperlyConfigured, match="BILLING_API_BASE_URL"):
        load(BILLING_API_BASE_URL="http://127.0.0.1:8787/client/v4")


def test_it_refuses_to_run_in_production_without_a_secret_key(load):
    env = production()
    del env["SECRET_KEY"]
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY"):
        load(**env)


def test_it_refuses_debug_with_a_real_token_but_no_secret_key(load):
    # The development key is public: with it anyone could sign a session for a real account.
    env = production(DEBUG="true")
    del env["SECRET_KEY"]
    with pytest.raises(ImproperlyConfigured, match="SECRET_KEY .* demo mode"):
        load(**env)


@pytest.mark.parametrize("debug", ["true", "false"])
def test_it_gives_demo_mode_a_development_key(load, debug):
    settings = load(DEBUG=debug)
    assert settings.DEMO_MODE is True
    assert settings.SECRET_KEY.startswith("dev-only-")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BILLING_API_TIMEOUT", "soon"),
        ("BILLING_API_TIMEOUT", "0"),
        ("BILLING_CACHE_SECONDS", "thirty"),
        ("BILLING_API_MAX_RETRIES", "-1"),
        ("DEBUG", "sometimes"),
        ("LOG_LEVEL", "LOUD"),
    ],
)
def test_it_refuses_malformed_values_naming_the_variable(load, name, value):
    with pytest.raises(ImproperlyConfigured, match=name):
        load(**{name: value})


def test_it_reads_the_reporting_time_zone(load):
    assert load(DASHBOARD_TIME_ZONE="Europe/Berlin").TIME_ZONE == "Europe/Berlin"


@pytest.mark.parametrize("value", ["Mars/Olympus_Mons", "../etc/passwd"])
def test_it_refuses_an_unknown_time_zone(load, value):
    with pytest.raises(ImproperlyConfigured, match="DASHBOARD_TIME_ZONE"):
        load(DASHBOARD_TIME_ZONE=value)


def test_it_reads_a_postgres_database_url(load):
    settings = load(DATABASE_URL="postgres://spend:p%40ss@db.internal:5433/spend")
    database = settings.DATABASES["default"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == ("spend", "spend", "p@ss")
    assert (database["HOST"], database["PORT"]) == ("db.internal", "5433")
    assert database["OPTIONS"] == {"connect_timeout": 5}


def test_the_database_connect_timeout_comes_from_the_environment(load):
    settings = load(DATABASE_URL="postgres://db.internal/spend", DATABASE_CONNECT_TIMEOUT="2")
    assert settings.DATABASES["default"]["OPTIONS"] == {"connect_timeout": 2}
    with pytest.raises(ImproperlyConfigured, match="DATABASE_CONNECT_TIMEOUT must be a whole"):
        load(DATABASE_URL="postgres://db.internal/spend", DATABASE_CONNECT_TIMEOUT="soon")
    with pytest.raises(ImproperlyConfigured, match="at least 1 second"):
        load(DATABASE_URL="postgres://db.internal/spend", DATABASE_CONNECT_TIMEOUT="0")


def test_it_refuses_a_database_url_it_does_not_support(load):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL must be a sqlite:// or postgres"):
        load(DATABASE_URL="mysql://user:secret@db/spend")


def test_it_reads_a_sqlite_database_url(load, tmp_path):
    settings = load(DATABASE_URL=f"sqlite:///{tmp_path / 'spend.sqlite3'}")
    database = settings.DATABASES["default"]
    assert database["ENGINE"] == "django.db.backends.sqlite3"
    assert database["NAME"] == str(tmp_path / "spend.sqlite3")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///"])
def test_it_refuses_a_sqlite_url_without_a_file(load, url):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL names no SQLite file"):
        load(DATABASE_URL=url)


def test_it_keeps_the_options_of_a_postgres_url(load):
    settings = load(DATABASE_URL="postgres://db.internal/spend?sslmode=require")
    assert settings.DATABASES["default"]["OPTIONS"] == {"sslmode": "require", "connect_timeout": 5}
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] == 60


def test_it_refuses_a_malformed_database_url_without_showing_it(load):
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL is not a well-formed") as err:
        load(DATABASE_URL="postgres://spend:hunter2-secret@db.internal:port/spend")
    assert "hunter2" not in str(err.value)


def test_it_sets_a_content_security_policy_without_unsafe_inline():
    policy = dashboard_settings.SECURE_CSP
    assert "'unsafe-inline'" not in str(policy)
    assert policy["script-src"] == ["'self'"]
    assert policy["default-src"] == ["'none'"]


def test_it_passes_the_deploy_check_in_production():
    env = {k: v for k, v in os.environ.items() if k not in VARIABLES}
    env |= production(ALLOWED_HOSTS="spend.example.com", SECRET_KEY=secrets.token_urlsafe(50))
    env["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=SETTINGS_FILE.parent.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout
