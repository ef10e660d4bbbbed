"""Settings for the spend dashboard, read from the environment.

With no ``CLOUDFLARE_API_TOKEN`` the dashboard runs in demo mode: the in-process Cloudflare
simulator, SQLite and a local-memory cache, with safe development defaults. With a token it
talks to Cloudflare (or to ``BILLING_API_BASE_URL``) and production secrets have no default.
A malformed value stops the process at start with ``ImproperlyConfigured`` naming the variable.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import dj_database_url
import django_stubs_ext
from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

# Lets Django's generic classes (ModelAdmin[User], ...) be subscripted at run time.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def envbool(name: str, default: bool) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false (1/0, yes/no, on/off), not {value!r}")


def envint(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None


def envfloat(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, not {value!r}") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ImproperlyConfigured(f"{name} must be a finite number, not {value!r}")
    return number


def envsecret(name: str, default: str = "") -> str:
    """A secret from ``NAME``, or from the file named by ``NAME_FILE`` (Docker/systemd secrets).

    The value itself is never put in an error message.
    """
    path = os.environ.get(f"{name}_FILE", "").strip()
    if path:
        if os.environ.get(name):
            raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise ImproperlyConfigured(
                f"{name}_FILE names a file that cannot be read ({err.strerror})"
            ) from None
    return os.environ.get(name, default).strip()


def envdollars(name: str, default: Decimal, *, minimum: Decimal) -> Decimal:
    """Dollars as plain digits with at most two decimals (no exponent, sign or NaN)."""
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    if not re.fullmatch(r"[0-9]+(\.[0-9]{1,2})?", value):
        raise ImproperlyConfigured(
            f"{name} must be dollars such as 10000 or 2500.50, not {value!r}"
        )
    if Decimal(value) < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value!r}")
    return Decimal(value)


def envlist(name: str, default: list[str] | None = None) -> list[str]:
    value = os.environ.get(name, "")
    if not value.strip():
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def envtimezone(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip() or default
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImproperlyConfigured(
            f"{name} must be an IANA time zone such as UTC or Europe/Berlin, not {value!r}"
        ) from None
    return value


def database_from_url(name: str, url: str) -> dict[str, Any]:
    """``sqlite:////absolute/path`` (``sqlite:///relative/path``) or
    ``postgres://user:pass@host:port/db?option=value``, parsed by dj-database-url; anything else
    is refused."""
    scheme = urlsplit(url).scheme
    # The library knows MySQL, Oracle...: we neither test them nor ship their drivers.
    if scheme not in ("sqlite", "postgres", "postgresql"):
        raise ImproperlyConfigured(
            f"{name} must be a sqlite:// or postgres:// URL, not a {scheme or 'scheme-less'} one"
        )
    try:
        parsed = dj_database_url.parse(url, conn_max_age=0 if scheme == "sqlite" else 60)
        database: dict[str, Any] = dict(parsed)
    except ValueError:
        # Not the library's message: the URL holds the password.
        raise ImproperlyConfigured(f"{name} is not a well-formed URL") from None
    if scheme == "sqlite":
        # The library would open an in-memory database, a different one per connection.
        if database["NAME"] == ":memory:":
            raise ImproperlyConfigured(
                f"{name} names no SQLite file (sqlite:////path/to/db.sqlite3)"
            )
        return database
    connect_timeout = envint("DATABASE_CONNECT_TIMEOUT", 5)
    if connect_timeout < 1:
        raise ImproperlyConfigured("DATABASE_CONNECT_TIMEOUT must be at least 1 second")
    # A database that does not answer fails a request (and /readyz) in seconds
    # instead of holding a worker until the load balancer gives up.
    database.setdefault("OPTIONS", {})["connect_timeout"] = connect_timeout
    database["PORT"] = str(database["PORT"])
    return database


# ---------------------------------------------------------------- billing API

CLOUDFLARE_API_TOKEN = envsecret("CLOUDFLARE_API_TOKEN")
_accounts_spec = envstr("CLOUDFLARE_ACCOUNTS").strip()
#: Demo mode: no token and no accounts, so the in-process simulator stands in for Cloudflare.
DEMO_MODE = not CLOUDFLARE_API_TOKEN and not _accounts_spec

# Cloudflare account ids are 32 lowercase hex characters; the URL converter relies on it.
ACCOUNT_ID_RE = re.compile(r"[0-9a-f]{32}")


def parse_accounts(name: str, spec: str) -> dict[str, str]:
    """``id=Display name,id2=Other name`` (names optional) to {id: name}, in order."""
    accounts: dict[str, str] = {}
    for item in spec.split(","):
        if not item.strip():
            continue
        account_id, _, label = item.partition("=")
        account_id = account_id.strip()
        if not ACCOUNT_ID_RE.fullmatch(account_id):
            raise ImproperlyConfigured(
                f"{name}: {account_id!r} is not an account id (32 lowercase hex characters)"
            )
        if account_id in accounts:
            raise ImproperlyConfigured(f"{name}: account {account_id} is listed twice")
        accounts[account_id] = label.strip() or f"Account {account_id[:8]}"
    if not accounts:
        raise ImproperlyConfigured(f"{name} lists no account")
    return accounts


BILLING_API_BASE_URL = envstr("BILLING_API_BASE_URL").strip().rstrip("/")
#: Per-account API tokens (secrets; never rendered). Demo mode uses the simulator's token.
BILLING_ACCOUNT_TOKENS: dict[str, str] = {}
if DEMO_MODE:
    if BILLING_API_BASE_URL:
        raise ImproperlyConfigured(
            "BILLING_API_BASE_URL is set but CLOUDFLARE_API_TOKEN is not: set both "
            "(and CLOUDFLARE_ACCOUNT_ID), or neither for demo mode"
        )
    from billing_api.simulator import DEFAULT_ACCOUNT_ID, DEFAULT_TOKEN

    # Any host works with the in-process transport; this one can never be reached by mistake.
    BILLING_API_BASE_URL = "https://simulator.invalid/client/v4"
    # Three accounts with different data, so that the switcher and "All accounts" show.
    BILLING_ACCOUNTS = {
        DEFAULT_ACCOUNT_ID: "Production",
        "5a1b2c3d4e5f60718293a4b5c6d7e8f9": "Research",
        "9f8e7d6c5b4a39281706f5e4d3c2b1a0": "Staging",
    }
    BILLING_ACCOUNT_TOKENS = dict.fromkeys(BILLING_ACCOUNTS, DEFAULT_TOKEN)
else:
    if _accounts_spec:
        BILLING_ACCOUNTS = parse_accounts("CLOUDFLARE_ACCOUNTS", _accounts_spec)
    else:
        _account_id = envstr("CLOUDFLARE_ACCOUNT_ID").strip()
        if not _account_id:
            raise ImproperlyConfigured(
                "CLOUDFLARE_API_TOKEN is set but CLOUDFLARE_ACCOUNT_ID is not: set the account "
                "id (32 hex characters, in Cloudflare's dashboard URL), or CLOUDFLARE_ACCOUNTS "
                "for several, or unset the token for demo mode"
            )
        if not ACCOUNT_ID_RE.fullmatch(_account_id):
            raise ImproperlyConfigured(
                f"CLOUDFLARE_ACCOUNT_ID must be 32 lowercase hex characters, not {_account_id!r}"
            )
        BILLING_ACCOUNTS = {_account_id: envstr("CLOUDFLARE_ACCOUNT_NAME").strip() or "Cloudflare"}
    for _account_id in BILLING_ACCOUNTS:
        # An account may have a token of its own: CLOUDFLARE_API_TOKEN_<account id>.
        _token = envsecret(f"CLOUDFLARE_API_TOKEN_{_account_id}") or CLOUDFLARE_API_TOKEN
        if not _token:
            raise ImproperlyConfigured(
                f"account {_account_id} has no token: set CLOUDFLARE_API_TOKEN_{_account_id} "
                "or CLOUDFLARE_API_TOKEN"
            )
        BILLING_ACCOUNT_TOKENS[_account_id] = _token
    BILLING_API_BASE_URL = BILLING_API_BASE_URL or "https://api.cloudflare.com/client/v4"
    if not BILLING_API_BASE_URL.startswith(("https://", "http://")):
        raise ImproperlyConfigured(
            f"BILLING_API_BASE_URL must be an http(s) URL, not {BILLING_API_BASE_URL!r}"
        )

#: The account ``/`` redirects to.
BILLING_DEFAULT_ACCOUNT = next(iter(BILLING_ACCOUNTS))
# A page waits at most this long for Cloudflare before saying so inside the card.
BILLING_API_TIMEOUT = envfloat("BILLING_API_TIMEOUT", 10.0)
if BILLING_API_TIMEOUT <= 0:
    raise ImproperlyConfigured("BILLING_API_TIMEOUT must be more than 0 seconds")
BILLING_API_MAX_RETRIES = envint("BILLING_API_MAX_RETRIES", 2)
if BILLING_API_MAX_RETRIES < 0:
    raise ImproperlyConfigured("BILLING_API_MAX_RETRIES must be 0 or more")
# Short: a balance is worth re-reading often, but a page load must not cost an upstream call
# per card per viewer (Cloudflare allows 1200 requests per 5 minutes per token).
BILLING_CACHE_SECONDS = envint("BILLING_CACHE_SECONDS", 30)
# How long the last good answer is kept for the "as of" notice when Cloudflare is down.
BILLING_STALE_SECONDS = envint("BILLING_STALE_SECONDS", 24 * 60 * 60)
if BILLING_CACHE_SECONDS < 0 or BILLING_STALE_SECONDS < 0:
    raise ImproperlyConfigured("BILLING_CACHE_SECONDS and BILLING_STALE_SECONDS must be 0 or more")
BILLING_SIMULATOR_SEED = envint("BILLING_SIMULATOR_SEED", 0)
# After a failed call, ask again no sooner than this: an outage must not be hammered by
# every page view (the last good figures are shown meanwhile).
BILLING_ERROR_CACHE_SECONDS = envint("BILLING_ERROR_CACHE_SECONDS", 10)
# How long the overview waits for its cards before sending the page with the late ones
# marked "still loading" (they then load themselves).
BILLING_PAGE_DEADLINE = envfloat("BILLING_PAGE_DEADLINE", 2.5)
# Threads per process for parallel upstream reads.
BILLING_FETCH_WORKERS = envint("BILLING_FETCH_WORKERS", 16)
if BILLING_ERROR_CACHE_SECONDS < 0 or BILLING_PAGE_DEADLINE <= 0 or BILLING_FETCH_WORKERS < 1:
    raise ImproperlyConfigured(
        "BILLING_ERROR_CACHE_SECONDS must be 0 or more, BILLING_PAGE_DEADLINE more than 0 "
        "and BILLING_FETCH_WORKERS at least 1"
    )
# With a shared cache, one process of all reads a key while the others wait; its lock
# expires after this, so a worker that dies holding it stalls that read no longer. Default:
# every try at its timeout, the longest wait between tries (a capped Retry-After), a margin.
BILLING_LOCK_SECONDS = envfloat(
    "BILLING_LOCK_SECONDS",
    BILLING_API_TIMEOUT * (BILLING_API_MAX_RETRIES + 1) + 10.0 * BILLING_API_MAX_RETRIES + 5.0,
)
if BILLING_LOCK_SECONDS <= 0:
    raise ImproperlyConfigured("BILLING_LOCK_SECONDS must be more than 0 seconds")

# The largest one-off top-up this dashboard sends, in dollars, whatever Cloudflare allows:
# a typo of a few zeros is refused even when topup/limits does not answer. At least $10,
# Cloudflare's documented minimum top-up.
TOPUP_MAX_AMOUNT = envdollars("TOPUP_MAX_AMOUNT", Decimal("10000"), minimum=Decimal("10"))

# Invoice PDFs are linked only as https addresses on these hosts (Stripe serves Cloudflare's
# invoice PDFs); any other address from upstream is shown as text, never as a link.
INVOICE_PDF_HOSTS = [
    host.lower()
    for host in envlist(
        "INVOICE_PDF_HOSTS", ["pay.stripe.com", "invoice.stripe.com", "files.stripe.com"]
    )
]
for _host in INVOICE_PDF_HOSTS:
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", _host):
        raise ImproperlyConfigured(
            f"INVOICE_PDF_HOSTS must list host names such as pay.stripe.com, not {_host!r}"
        )

# ---------------------------------------------------------------- Django core

DEBUG = envbool("DEBUG", DEMO_MODE)

SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    # DEBUG too: the development key is public, and with it anyone could sign a session.
    if not DEMO_MODE:
        raise ImproperlyConfigured(
            "SECRET_KEY (or SECRET_KEY_FILE) must be set whenever a Cloudflare token or account "
            "is configured, with DEBUG too: only demo mode has a development key"
        )
    # Demo mode only (the simulator, never real money): sessions signed with it are worthless
    # anywhere else.
    SECRET_KEY = "dev-only-insecure-secret-key-for-the-demo-dashboard-0123456789"

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    # Login throttling: failed logins kept in PostgreSQL (see dashboard.infra.throttle).
    "axes",
    # Background work (dashboard/tasks.py): jobs, retries and schedules in PostgreSQL.
    "procrastinate.contrib.django",
    "dashboard",
]

MIDDLEWARE = [
    # First: every response, a redirect or an error too, carries its request id and is timed.
    "dashboard.infra.observability.RequestIdMiddleware",
    "dashboard.infra.metrics.PageMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files before anything touches the session or the database: cheap, cacheable.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Every answer after static files: private, no-store (see dashboard/web/no_store.py).
    "dashboard.web.no_store.middleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Ends idle and old sessions before the login requirement sends them to the login page.
    "dashboard.web.login.session_expiry",
    # Login required everywhere: a view is public only if it says so (@login_not_required).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "dashboard.web.urls"
WSGI_APPLICATION = "dashboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dashboard.web.context_processors.site",
            ],
        },
    },
]

_database_url = envsecret("DATABASE_URL")
if _database_url:
    DATABASES = {"default": database_from_url("DATABASE_URL", _database_url)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": BASE_DIR / "db.sqlite3",
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
JOBS_IN_MEMORY = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
if JOBS_IN_MEMORY:
    # Procrastinate's schema is PostgreSQL's: on SQLite (demo mode) its jobs are kept in
    # memory by the one process that serves and works (dashboard.tasks.on_app_ready).
    MIGRATION_MODULES = {"procrastinate": None}
    PROCRASTINATE_ON_APP_READY = "dashboard.tasks.on_app_ready"

#: The shared cache (and single-flight lock) of all processes and hosts: redis://host:port/db.
REDIS_URL = envsecret("REDIS_URL")
if REDIS_URL:
    if urlsplit(REDIS_URL).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured("REDIS_URL must be a redis://, rediss:// or unix:// URL")
    # Seconds one Redis command may wait for an answer (connecting: half of it). A Redis that
    # is down or does not answer then costs a page this long, once: the cache answers as a
    # miss without it for a few seconds after (dashboard/infra/cache.py).
    REDIS_TIMEOUT = envfloat("REDIS_TIMEOUT", 1.0)
    if REDIS_TIMEOUT <= 0:
        raise ImproperlyConfigured("REDIS_TIMEOUT must be more than 0 seconds")
    CACHES = {
        "default": {
            # Django's Redis cache, with Redis out of reach as a miss rather than a 500.
            "BACKEND": "dashboard.infra.cache.ResilientRedisCache",
            "LOCATION": REDIS_URL,
            # Several dashboards (or test runs) can share one Redis without reading each other.
            "KEY_PREFIX": envstr("CACHE_KEY_PREFIX", "spend-dashboard"),
            "OPTIONS": {
                "socket_connect_timeout": REDIS_TIMEOUT / 2,
                "socket_timeout": REDIS_TIMEOUT,
            },
        }
    }
    # Sessions read from the shared cache, written through to the database: no one is logged
    # out when Redis restarts. Without Redis, sessions are the database's alone: a cache per
    # process would not hear of a logout in another.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    # One process, one cache: enough for demo mode and `make run`.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "spend-dashboard",
        }
    }

# Mail (alerts and digests): EMAIL_URL names the server, e.g. smtp://user:pass@host:587
# (STARTTLS; smtps:// for TLS from the start, port 465), or console:// (printed on stdout).
# Without it: printed in demo mode and with DEBUG, else the SMTP server on localhost:25.
# Defining MAILERS opts out of Django's deprecated EMAIL_* settings.
EMAIL_URL = envsecret("EMAIL_URL")


def mailer_from_url(name: str, url: str) -> dict[str, Any]:
    """A MAILERS entry from ``url`` (the password is never put in an error message)."""
    parts = urlsplit(url)
    if parts.scheme == "console":
        return {"BACKEND": "django.core.mail.backends.console.EmailBackend"}
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ImproperlyConfigured(
            f"{name} must be smtp://[user:password@]host[:port], smtps://... or console://"
        )
    try:
        port = parts.port
    except ValueError:
        raise ImproperlyConfigured(f"{name} has a malformed port") from None
    ssl = parts.scheme == "smtps"
    return {
        "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "OPTIONS": {
            "host": parts.hostname,
            "port": port or (465 if ssl else 587),
            "username": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            # smtp:// with a user name logs in, so only over STARTTLS; without one, as is.
            "use_tls": not ssl and bool(parts.username),
            "use_ssl": ssl,
            "timeout": 10,
        },
    }


if EMAIL_URL:
    MAILERS: dict[str, dict[str, Any]] = {"default": mailer_from_url("EMAIL_URL", EMAIL_URL)}
else:
    MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends."
            + ("console.EmailBackend" if DEBUG or DEMO_MODE else "smtp.EmailBackend")
        },
    }
DEFAULT_FROM_EMAIL = envstr("EMAIL_FROM", "AI Gateway spend <spend-dashboard@localhost>")

# Alerts (dashboard/services/alerts.py): the worker checks every rule this often, on a
# schedule the workers share (a cron line, so the seconds must divide a minute, an hour or a day).
ALERTS_INTERVAL_SECONDS = envint("ALERTS_INTERVAL_SECONDS", 300)


def every(seconds: int) -> str:
    """The cron line of ``seconds`` (a sixth field is seconds, as croniter reads it)."""
    if seconds < 10:
        raise ImproperlyConfigured("ALERTS_INTERVAL_SECONDS must be at least 10")
    if seconds < 60 and 60 % seconds == 0:
        return f"* * * * * */{seconds}"
    minutes, rest = divmod(seconds, 60)
    if not rest and minutes < 60 and 60 % minutes == 0:
        return f"*/{minutes} * * * *"
    hours, rest = divmod(seconds, 3600)
    if not rest and hours <= 24 and 24 % hours == 0:
        return f"0 */{hours} * * *"
    raise ImproperlyConfigured(
        "ALERTS_INTERVAL_SECONDS must divide a minute, an hour or a day (10, 30, 60, 300, 3600...)"
    )


ALERTS_CRON = every(ALERTS_INTERVAL_SECONDS)
# `make run`: the alerts worker runs in a thread of the development server (demo mode, one
# process). In production run `manage.py alerts_worker` instead.
ALERTS_IN_PROCESS = envbool("ALERTS_IN_PROCESS", False)
# The dashboard's address as its users reach it (https://spend.example.com), for the links in
# alerts and digests; none without it.
DASHBOARD_URL = envstr("DASHBOARD_URL").strip().rstrip("/")
# Webhooks to http://127.0.0.1 (tests and local receivers); otherwise https only.
ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = envbool("ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK", False)

# axes's backend first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "dashboard.infra.throttle.ThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
#: The reporting time zone: every time on a page is shown in it, and the page names it.
TIME_ZONE = envtimezone("DASHBOARD_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Where collectstatic writes and WhiteNoise serves from; settable so that several servers (or
# test runs) on one machine need not share one directory.
STATIC_ROOT = Path(envstr("STATIC_ROOT").strip() or BASE_DIR / "var" / "static")
# Without DEBUG, static files get content-hashed names (cached for ever by browsers) and
# compressed copies, from a manifest that `manage.py collectstatic` writes; with DEBUG (demo
# mode, the tests) they are served straight from static/ and need no collectstatic.
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# ---------------------------------------------------------------- security

# No inline script or style anywhere: code and styles come from our own static files.
SECURE_CSP = {
    "default-src": [CSP.NONE],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.NONE],
}
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", not DEBUG)
# No script reads the CSRF cookie: htmx sends the token from the page (hx-headers on body).
CSRF_COOKIE_HTTPONLY = True
# A login lasts at most this long (log in again after a working day), and ends sooner after
# SESSION_IDLE_SECONDS without a request (0: never for idleness). Logging out ends it at once.
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 8 * 60 * 60)
SESSION_IDLE_SECONDS = envint("SESSION_IDLE_SECONDS", 60 * 60)
if SESSION_COOKIE_AGE < 60 or SESSION_IDLE_SECONDS < 0:
    raise ImproperlyConfigured(
        "SESSION_COOKIE_AGE must be at least 60 seconds and SESSION_IDLE_SECONDS 0 or more"
    )
# Login throttling: this many failed logins lock out a user name from one address, or an
# address whatever the names, until LOGIN_LOCKOUT_SECONDS have passed since the last one.
LOGIN_MAX_FAILURES_PER_USER = envint("LOGIN_MAX_FAILURES_PER_USER", 5)
LOGIN_MAX_FAILURES_PER_ADDRESS = envint("LOGIN_MAX_FAILURES_PER_ADDRESS", 20)
LOGIN_LOCKOUT_SECONDS = envint("LOGIN_LOCKOUT_SECONDS", 15 * 60)
if min(LOGIN_MAX_FAILURES_PER_USER, LOGIN_MAX_FAILURES_PER_ADDRESS, LOGIN_LOCKOUT_SECONDS) < 1:
    raise ImproperlyConfigured(
        "LOGIN_MAX_FAILURES_PER_USER, LOGIN_MAX_FAILURES_PER_ADDRESS "
        "and LOGIN_LOCKOUT_SECONDS must each be at least 1"
    )
# django-axes does the counting; its settings follow ours (dashboard.infra.throttle reads the limits
# and the lockout time at each login). The user name with the address, and the address alone.
AXES_HANDLER = "dashboard.infra.throttle.PreCountingHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_COOLOFF_TIME = "dashboard.infra.throttle.cool_off"
AXES_USERNAME_CALLABLE = "dashboard.infra.throttle.username_key"
AXES_CLIENT_IP_CALLABLE = "dashboard.infra.throttle.client_address"
# The login view answers a lock itself (429, the form kept): no AxesMiddleware, no axes pages.
AXES_ENABLE_ADMIN = False
# How many proxies in front append to X-Forwarded-For: 0 (default) trusts only REMOTE_ADDR,
# since a client can write any X-Forwarded-For it likes.
LOGIN_TRUSTED_PROXIES = envint("LOGIN_TRUSTED_PROXIES", 0)
if LOGIN_TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured("LOGIN_TRUSTED_PROXIES must be 0 or more")
# Production defaults are HTTPS-only (`check --deploy` clean); behind a TLS-terminating proxy,
# also set SECURE_PROXY_SSL_HEADER, or every request redirects to itself.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers probe over plain http inside the network: a redirect would fail the probe.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# An hour, not a year: long enough for the check, short enough to back out of a mistake.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
# Both bind every other site on the domain (preload for years): the deployer's decision, made
# with the two variables above, not a default an app may take for them.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
# axes's middleware turns a lock into its own page; the login view answers a lock itself.
SILENCED_SYSTEM_CHECKS += ["axes.W002"]
if envbool("SECURE_PROXY_SSL_HEADER", False):
    # Only behind a proxy that sets this header itself and strips it from clients.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# ---------------------------------------------------------------- logs and metrics

# The DEBUG error page and the reports mailed to admins, with every known secret scrubbed
# (Django hides settings by name only, and not REDIS_URL's or EMAIL_URL's password).
DEFAULT_EXCEPTION_REPORTER = "dashboard.infra.observability.ScrubbingExceptionReporter"

#: Bearer token that lets a Prometheus scraper read /metrics (staff can read it logged in).
METRICS_TOKEN = envsecret("METRICS_TOKEN")
#: Several worker processes (gunicorn): the directory where each writes its metrics, summed
#: at /metrics. Read by prometheus_client itself at import; emptied when the server starts.
PROMETHEUS_MULTIPROC_DIR = envstr("PROMETHEUS_MULTIPROC_DIR").strip()
if PROMETHEUS_MULTIPROC_DIR and not (
    os.path.isdir(PROMETHEUS_MULTIPROC_DIR) and os.access(PROMETHEUS_MULTIPROC_DIR, os.W_OK)
):
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR must be a writable directory, not {PROMETHEUS_MULTIPROC_DIR!r}"
    )

LOG_LEVEL = envstr("LOG_LEVEL", "INFO").strip().upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {LOG_LEVEL!r}"
    )

# json: one JSON object per line, for a log collector; plain: one readable line, for a terminal.
LOG_FORMAT = envstr("LOG_FORMAT", "plain" if DEBUG or DEMO_MODE else "json").strip().lower()
if LOG_FORMAT not in ("json", "plain"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be json or plain, not {LOG_FORMAT!r}")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # Both formatters scrub the known secrets from every line, whatever was logged.
    "formatters": {
        "plain": {"()": "dashboard.infra.observability.PlainFormatter"},
        "json": {"()": "dashboard.infra.observability.JsonFormatter"},
    },
    "filters": {"request_id": {"()": "dashboard.infra.observability.RequestIdFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": LOG_FORMAT,
            "filters": ["request_id"],
        }
    },
    "loggers": {
        # Django's own warnings and errors (4xx/5xx requests, security) in the same format.
        "django": {
            "handlers": ["console"],
            "level": "WARNING" if LOG_LEVEL in ("DEBUG", "INFO") else LOG_LEVEL,
            "propagate": False,
        },
        "dashboard": {"handlers": ["console"], "level": LOG_LEVEL},
        # One line per upstream call: endpoint, status, duration, retries (never the token).
        "billing_api": {"handlers": ["console"], "level": LOG_LEVEL},
        # httpx logs every request URL at INFO; the URL carries the account id, never the token.
        "httpx": {"handlers": ["console"], "level": "WARNING"},
    },
}
