"""Settings, read from the environment (the README describes each one). Without a Cloudflare
token or account: demo mode, on the in-process simulator. A malformed value stops the process
at start with ``ImproperlyConfigured`` naming the variable (never showing a secret).
"""

from __future__ import annotations

import math
import os
import re
import zoneinfo
from collections.abc import Callable
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


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _parsed[T](name: str, default: T, parse: Callable[[str], T], words: str) -> T:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return parse(value)
    except (ValueError, LookupError):
        raise ImproperlyConfigured(f"{name} must be {words}, not {value!r}") from None


_booleans = dict.fromkeys(("1", "true", "yes", "on"), True)
_booleans |= dict.fromkeys(("0", "false", "no", "off"), False)


def envbool(name: str, default: bool) -> bool:
    words = "true or false (1/0, yes/no, on/off)"
    return _parsed(name, default, lambda value: _booleans[value.lower()], words)


def envint(name: str, default: int, *, minimum: int | None = None, unit: str = "") -> int:
    number = _parsed(name, default, int, "a whole number")
    if minimum is not None and number < minimum:
        bound = "0 or more" if minimum == 0 else f"at least {minimum} {unit}".strip()
        raise ImproperlyConfigured(f"{name} must be {bound}, not {number}")
    return number


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(text)
    return number


def envfloat(name: str, default: float) -> float:
    return _parsed(name, default, _finite, "a finite number")


def envseconds(name: str, default: float) -> float:
    seconds = envfloat(name, default)
    if seconds <= 0:
        raise ImproperlyConfigured(f"{name} must be more than 0 seconds, not {seconds:g}")
    return seconds


def envsecret(name: str, default: str = "") -> str:
    """``NAME``, or the file named by ``NAME_FILE`` (Docker/systemd secrets); never in errors."""
    path = os.environ.get(f"{name}_FILE", "").strip()
    if not path:
        return os.environ.get(name, default).strip()
    if os.environ.get(name):
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ImproperlyConfigured(
            f"{name}_FILE names a file that cannot be read ({err.strerror})"
        ) from None


def envdollars(name: str, default: Decimal, *, minimum: Decimal) -> Decimal:
    """Dollars as plain digits with at most two decimals (no exponent, sign or NaN)."""
    value = os.environ.get(name, "").strip() or str(default)
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
    words = "an IANA time zone such as UTC or Europe/Berlin"
    return _parsed(name, default, lambda value: zoneinfo.ZoneInfo(value).key, words)


def database_from_url(name: str, url: str) -> dict[str, Any]:
    """``sqlite:////absolute/path`` or ``postgres://user:pass@host:port/db?option=value``."""
    scheme = urlsplit(url).scheme
    # dj-database-url knows MySQL, Oracle...: we neither test them nor ship their drivers.
    if scheme not in ("sqlite", "postgres", "postgresql"):
        raise ImproperlyConfigured(
            f"{name} must be a sqlite:// or postgres:// URL, not a {scheme or 'scheme-less'} one"
        )
    try:
        database: dict[str, Any] = dict(
            dj_database_url.parse(url, conn_max_age=0 if scheme == "sqlite" else 60)
        )
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
    # A database that does not answer fails a request (and /readyz) in seconds.
    database.setdefault("OPTIONS", {})["connect_timeout"] = envint(
        "DATABASE_CONNECT_TIMEOUT", 5, minimum=1, unit="second"
    )
    database["PORT"] = str(database["PORT"])
    return database


# ---------------------------------------------------------------- billing API

CLOUDFLARE_API_TOKEN = envsecret("CLOUDFLARE_API_TOKEN")
_accounts_spec = envstr("CLOUDFLARE_ACCOUNTS").strip()
DEMO_MODE = not CLOUDFLARE_API_TOKEN and not _accounts_spec

# Cloudflare account ids are 32 lowercase hex characters; the URL converter relies on it.
ACCOUNT_ID_RE = re.compile(r"[0-9a-f]{32}")


def parse_accounts(name: str, spec: str) -> dict[str, str]:
    """``id=Display name,id2=Other name`` (names optional) to {id: name}, in order."""
    accounts: dict[str, str] = {}
    for item in filter(str.strip, spec.split(",")):
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

BILLING_DEFAULT_ACCOUNT = next(iter(BILLING_ACCOUNTS))
BILLING_API_TIMEOUT = envseconds("BILLING_API_TIMEOUT", 10.0)
BILLING_API_MAX_RETRIES = envint("BILLING_API_MAX_RETRIES", 2, minimum=0)
# Cloudflare allows 1200 requests per 5 minutes per token: not a call per card per viewer.
BILLING_CACHE_SECONDS = envint("BILLING_CACHE_SECONDS", 30, minimum=0)
BILLING_STALE_SECONDS = envint("BILLING_STALE_SECONDS", 24 * 60 * 60, minimum=0)
BILLING_SIMULATOR_SEED = envint("BILLING_SIMULATOR_SEED", 0)
# An outage is not hammered by every page view.
BILLING_ERROR_CACHE_SECONDS = envint("BILLING_ERROR_CACHE_SECONDS", 10, minimum=0)
BILLING_PAGE_DEADLINE = envseconds("BILLING_PAGE_DEADLINE", 2.5)
BILLING_FETCH_WORKERS = envint("BILLING_FETCH_WORKERS", 16, minimum=1)
# Default: every try at its timeout, the longest wait between tries (a capped Retry-After), a
# margin; a worker that dies holding the lock stalls that read no longer.
BILLING_LOCK_SECONDS = envseconds(
    "BILLING_LOCK_SECONDS",
    BILLING_API_TIMEOUT * (BILLING_API_MAX_RETRIES + 1) + 10.0 * BILLING_API_MAX_RETRIES + 5.0,
)

# Refuses a typo of a few zeros even when topup/limits does not answer; $10: Cloudflare's floor.
TOPUP_MAX_AMOUNT = envdollars("TOPUP_MAX_AMOUNT", Decimal("10000"), minimum=Decimal("10"))

# Any other invoice PDF address from upstream is shown as text, never as a link.
_stripe_hosts = ["pay.stripe.com", "invoice.stripe.com", "files.stripe.com"]
INVOICE_PDF_HOSTS = [host.lower() for host in envlist("INVOICE_PDF_HOSTS", _stripe_hosts)]
for _host in INVOICE_PDF_HOSTS:
    if not re.fullmatch(r"[a-z0-9-]+(\.[a-z0-9-]+)+", _host):
        raise ImproperlyConfigured(
            f"INVOICE_PDF_HOSTS must list host names such as pay.stripe.com, not {_host!r}"
        )

# ---------------------------------------------------------------- Django core

DEBUG = envbool("DEBUG", DEMO_MODE)

SECRET_KEY = envsecret("SECRET_KEY")
# DEBUG too: the development key is public, and with it anyone could sign a session.
if not SECRET_KEY and not DEMO_MODE:
    raise ImproperlyConfigured(
        "SECRET_KEY (or SECRET_KEY_FILE) must be set whenever a Cloudflare token or account "
        "is configured, with DEBUG too: only demo mode has a development key"
    )
# Demo mode only (the simulator, never real money).
SECRET_KEY = SECRET_KEY or "dev-only-insecure-secret-key-for-the-demo-dashboard-0123456789"

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
    "axes",  # login throttling (dashboard.infra.throttle)
    "procrastinate.contrib.django",  # background jobs (dashboard/tasks.py)
    "dashboard",
]

MIDDLEWARE = [
    # First: every response, a redirect or an error too, carries its request id and is timed.
    "dashboard.infra.observability.RequestIdMiddleware",
    "dashboard.infra.metrics.PageMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files before anything touches the session or the database.
    "whitenoise.middleware.WhiteNoiseMiddleware",
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
DATABASES = {
    "default": database_from_url("DATABASE_URL", _database_url)
    if _database_url
    else {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
JOBS_IN_MEMORY = DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3"
if JOBS_IN_MEMORY:
    # Procrastinate's schema is PostgreSQL's: on SQLite (demo mode) the one process that
    # serves and works keeps the jobs in memory.
    MIGRATION_MODULES = {"procrastinate": None}
    PROCRASTINATE_ON_APP_READY = "dashboard.tasks.on_app_ready"

#: The shared cache (and single-flight lock) of all processes and hosts: redis://host:port/db.
REDIS_URL = envsecret("REDIS_URL")
if REDIS_URL:
    if urlsplit(REDIS_URL).scheme not in ("redis", "rediss", "unix"):
        raise ImproperlyConfigured("REDIS_URL must be a redis://, rediss:// or unix:// URL")
    # A Redis that is down costs a page this long, once (dashboard/infra/cache.py).
    REDIS_TIMEOUT = envseconds("REDIS_TIMEOUT", 1.0)
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
    # Written through to the database: nobody is logged out when Redis restarts. Without
    # Redis, sessions are the database's alone: a cache per process would miss a logout.
    SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "spend-dashboard",
        }
    }

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


_default_mailer = "console" if DEBUG or DEMO_MODE else "smtp"
MAILERS: dict[str, dict[str, Any]] = {
    "default": mailer_from_url("EMAIL_URL", EMAIL_URL)
    if EMAIL_URL
    else {"BACKEND": f"django.core.mail.backends.{_default_mailer}.EmailBackend"}
}
DEFAULT_FROM_EMAIL = envstr("EMAIL_FROM", "AI Gateway spend <spend-dashboard@localhost>")

ALERTS_INTERVAL_SECONDS = envint("ALERTS_INTERVAL_SECONDS", 300, minimum=10, unit="seconds")


def every(seconds: int) -> str:
    """The cron line of ``seconds`` (a sixth field is seconds, as croniter reads it)."""
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
ALERTS_IN_PROCESS = envbool("ALERTS_IN_PROCESS", False)
DASHBOARD_URL = envstr("DASHBOARD_URL").strip().rstrip("/")
# Webhooks to http://127.0.0.1 (tests and local receivers); otherwise https only.
ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK = envbool("ALERT_WEBHOOK_ALLOW_HTTP_LOOPBACK", False)

# axes's backend first: it refuses a locked-out login before any password is checked.
AUTHENTICATION_BACKENDS = [
    "dashboard.infra.throttle.ThrottleBackend",
    "dashboard.web.access.PermissionBackend",
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
TIME_ZONE = envtimezone("DASHBOARD_TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(envstr("STATIC_ROOT").strip() or BASE_DIR / "var" / "static")
# Without DEBUG, content-hashed names (cached for ever) from `manage.py collectstatic`.
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
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", 8 * 60 * 60, minimum=60, unit="seconds")
SESSION_IDLE_SECONDS = envint("SESSION_IDLE_SECONDS", 60 * 60, minimum=0)
LOGIN_MAX_FAILURES_PER_USER = envint("LOGIN_MAX_FAILURES_PER_USER", 5, minimum=1)
LOGIN_MAX_FAILURES_PER_ADDRESS = envint("LOGIN_MAX_FAILURES_PER_ADDRESS", 20, minimum=1)
LOGIN_LOCKOUT_SECONDS = envint("LOGIN_LOCKOUT_SECONDS", 15 * 60, minimum=1, unit="second")
# django-axes counts: the user name with the address, and the address alone (infra/throttle.py).
AXES_HANDLER = "dashboard.infra.throttle.PreCountingHandler"
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"], "ip_address"]
AXES_COOLOFF_TIME = "dashboard.infra.throttle.cool_off"
AXES_USERNAME_CALLABLE = "dashboard.infra.throttle.username_key"
AXES_CLIENT_IP_CALLABLE = "dashboard.infra.throttle.client_address"
AXES_ENABLE_ADMIN = False
# Proxies in front that append to X-Forwarded-For: 0 trusts only REMOTE_ADDR (clients forge it).
LOGIN_TRUSTED_PROXIES = envint("LOGIN_TRUSTED_PROXIES", 0, minimum=0)
# HTTPS only by default; behind a TLS-terminating proxy also set SECURE_PROXY_SSL_HEADER.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers probe over plain http inside the network: a redirect would fail the probe.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
# An hour, not a year: long enough for the check, short enough to back out of a mistake.
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0 if DEBUG else 3600)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
# W005/W021 bind every other site on the domain: the deployer's decision (the two above).
# axes.W002 asks for its middleware: the login view answers a lock itself.
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021", "axes.W002"]
if envbool("SECURE_PROXY_SSL_HEADER", False):
    # Only behind a proxy that sets this header itself and strips it from clients.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# ---------------------------------------------------------------- logs and metrics

# The DEBUG error page and the reports mailed to admins, with every known secret scrubbed.
DEFAULT_EXCEPTION_REPORTER = "dashboard.infra.observability.ScrubbingExceptionReporter"

METRICS_TOKEN = envsecret("METRICS_TOKEN")
# prometheus_client reads it itself at import.
PROMETHEUS_MULTIPROC_DIR = envstr("PROMETHEUS_MULTIPROC_DIR").strip()
if PROMETHEUS_MULTIPROC_DIR and not (
    os.path.isdir(PROMETHEUS_MULTIPROC_DIR) and os.access(PROMETHEUS_MULTIPROC_DIR, os.W_OK)
):
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR must be a writable directory, not {PROMETHEUS_MULTIPROC_DIR!r}"
    )

LOG_LEVEL = envstr("LOG_LEVEL").strip().upper() or "INFO"
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(
        f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {LOG_LEVEL!r}"
    )
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
        "django": {
            "handlers": ["console"],
            "level": "WARNING" if LOG_LEVEL in ("DEBUG", "INFO") else LOG_LEVEL,
            "propagate": False,
        },
        "dashboard": {"handlers": ["console"], "level": LOG_LEVEL},
        "billing_api": {"handlers": ["console"], "level": LOG_LEVEL},
        # httpx logs every request URL at INFO.
        "httpx": {"handlers": ["console"], "level": "WARNING"},
    },
}
