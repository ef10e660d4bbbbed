"""Login throttling: locks per user name and address and per address, that say so, end,
tell nothing, and cannot be raced.

Time is moved by ageing the failures kept in the database (``later``), never slept on.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from axes.models import AccessAttempt
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F
from django.test import Client, RequestFactory

from dashboard import settings as dashboard_settings
from dashboard.infra import throttle
from tests.conftest import PASSWORD, settings_module

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
LOCKED = "Too many failed attempts to log in"
WRONG = "Please enter a correct username and password"
HOME = "1.2.3.4"
ELSEWHERE = "5.6.7.8"
SETTINGS_FILE = Path(dashboard_settings.__file__)


def later(seconds: float) -> None:
    """As if ``seconds`` had passed since every failure kept."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(seconds=seconds))


def attempt(
    username: str, password: str = "wrong guess", address: str = HOME, client: Client | None = None
):
    return (client or Client()).post(
        LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address
    )


def fail(username: str, times: int, address: str = HOME) -> None:
    for number in range(times):
        response = attempt(username, address=address)
        assert response.status_code == 200, f"failure {number + 1} of {username}"
        assert WRONG in response.text


def logged_in(response: Any) -> bool:
    return bool(response.status_code == 302 and response["Location"] == "/")


def notice(html: str) -> str:
    """The words of the login page's error notice."""
    found = re.search(r'<div class="notice notice-error" role="alert">(.*?)</div>', html, re.S)
    assert found, "the page shows an error notice"
    return re.sub(r"<[^>]+>|\s+", " ", found.group(1)).strip()


# ------------------------------------------------- the race, and locks per name and address


def test_a_stranger_elsewhere_cannot_lock_the_user_out(lead):
    fail("lena", 4, address=ELSEWHERE)
    assert attempt("lena", address=ELSEWHERE).status_code == 429
    assert attempt("lena", PASSWORD, address=ELSEWHERE).status_code == 429
    # From her own address lena still gets in.
    assert logged_in(attempt("lena", PASSWORD, address=HOME))


def test_it_locks_a_user_name_out_at_the_fifth_failure(lead):
    fail("lena", 4)
    response = attempt("lena")
    assert response.status_code == 429
    assert notice(response.text) == (
        "Too many failed attempts to log in. Logging in is paused for a while: "
        "try again in about 15 minutes."
    )
    assert response["Retry-After"] == "900"
    # The form is still there, with the name as typed.
    assert 'value="lena"' in response.text


def test_it_refuses_the_right_password_while_locked(lead):
    fail("lena", 5 - 1)
    assert attempt("lena").status_code == 429
    client = Client()
    response = attempt("lena", PASSWORD, client=client)
    assert response.status_code == 429
    assert LOCKED in response.text
    assert "_auth_user_id" not in client.session


def test_it_counts_down_and_lets_the_user_in_when_the_lock_ends(lead):
    fail("lena", 4)
    attempt("lena")
    later(10 * 60 + 30)
    response = attempt("lena", PASSWORD)
    assert response.status_code == 429
    assert "try again in about 5 minutes." in response.text
    assert response["Retry-After"] == "270"
    later(4 * 60)
    # Attempts refused meanwhile did not make the lock last longer.
    assert "try again in about 1 minute." in attempt("lena", PASSWORD).text
    later(31)
    assert logged_in(attempt("lena", PASSWORD))


def test_it_starts_counting_afresh_after_a_lock(lead):
    fail("lena", 4)
    attempt("lena")
    later(15 * 60 + 1)
    fail("lena", 4)
    assert attempt("lena").status_code == 429


def test_it_forgets_failures_once_the_lockout_time_has_passed_without_one(lead):
    fail("lena", 4)
    later(15 * 60 + 1)
    fail("lena", 4)
    assert attempt("lena").status_code == 429


def test_it_remembers_failures_while_they_keep_coming(lead):
    """No fresh five tries at the turn of a window: each failure keeps the earlier ones."""
    fail("lena", 4)
    later(14 * 60)
    fail("lena", 0)
    assert attempt("lena").status_code == 429


def test_a_success_clears_the_users_failures(lead):
    fail("lena", 4)
    assert logged_in(attempt("lena", PASSWORD))
    fail("lena", 4)
    assert attempt("lena").status_code == 429


def test_another_user_from_the_same_address_is_unaffected_until_the_address_limit(lead, finance):
    fail("lena", 4)
    assert attempt("lena").status_code == 429  # 5 failures from HOME so far
    assert logged_in(attempt("frank", PASSWORD))
    for number in range(14):  # 19 failures from HOME, each under another name
        assert attempt(f"guess{number}").status_code == 200
    assert logged_in(attempt("frank", PASSWORD))
    # A success forgets the user name's failures, not the address's.
    response = attempt("guess-twenty")
    assert response.status_code == 429
    assert LOCKED in response.text
    assert attempt("frank", PASSWORD).status_code == 429
    # The address is locked, not frank: from elsewhere he gets in.
    assert logged_in(attempt("frank", PASSWORD, address=ELSEWHERE))


def test_it_takes_its_limits_from_settings(lead, settings):
    settings.LOGIN_MAX_FAILURES_PER_USER = 2
    settings.LOGIN_LOCKOUT_SECONDS = 120
    fail("lena", 1)
    response = attempt("lena")
    assert response.status_code == 429
    assert "about 2 minutes" in response.text
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 4  # 2 from HOME so far
    fail("nemo", 1)
    assert attempt("nobody").status_code == 429


def test_it_does_not_tell_whether_a_user_exists(lead):
    def story(username: str) -> list[tuple[int, str]]:
        seen = []
        for _ in range(6):
            response = attempt(username)
            seen.append((response.status_code, notice(response.text)))
        return seen

    assert story("lena") == story("nemo")
    assert story("lena")[-1][0] == 429


def test_it_does_not_escape_a_lock_by_changing_case_or_spaces(lead):
    fail("lena", 4)
    assert attempt(" LENA ").status_code == 429
    assert attempt("lena", PASSWORD).status_code == 429


def test_a_forged_forwarded_for_header_changes_nothing_without_trusted_proxies(lead):
    for number in range(20):
        Client().post(
            LOGIN,
            {"username": f"guess{number}", "password": "x"},
            REMOTE_ADDR=HOME,
            HTTP_X_FORWARDED_FOR=f"10.0.0.{number}",
        )
    assert attempt("lena", PASSWORD).status_code == 429


def through_proxy(username: str, password: str, forwarded: str) -> Any:
    """A login as the one trusted proxy passes it on: from its address, with the header."""
    return Client().post(
        LOGIN,
        {"username": username, "password": password},
        REMOTE_ADDR="192.168.0.1",
        HTTP_X_FORWARDED_FOR=forwarded,
    )


def test_it_locks_the_address_the_trusted_proxy_saw(lead, settings):
    settings.LOGIN_TRUSTED_PROXIES = 1
    for number in range(20):
        # Whatever the client wrote first, then the address the proxy saw: HOME.
        through_proxy(f"guess{number}", "x", f"6.6.6.6, {HOME}")
    assert through_proxy("lena", PASSWORD, HOME).status_code == 429
    # Another client behind the same proxy is not locked out.
    assert logged_in(through_proxy("lena", PASSWORD, "6.6.6.6"))


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, "9.9.9.9", "10.1.1.1"),
        (1, "9.9.9.9", "9.9.9.9"),
        (1, "6.6.6.6, 9.9.9.9", "9.9.9.9"),
        (2, "6.6.6.6, 9.9.9.9, 172.16.0.1", "9.9.9.9"),
        (2, "9.9.9.9", "10.1.1.1"),  # fewer hops than proxies: not through them all
        (1, "not-an-address", "10.1.1.1"),
        (1, "", "10.1.1.1"),
        (1, "2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),  # an IPv6 client's /64
        (1, "::ffff:9.9.9.9", "9.9.9.9"),
    ],
)
def test_it_reads_the_client_address(settings, proxies, forwarded, expected):
    settings.LOGIN_TRUSTED_PROXIES = proxies
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.1.1", HTTP_X_FORWARDED_FOR=forwarded)
    assert throttle.client_address(request) == expected


def test_it_counts_an_ipv6_client_by_its_64_prefix(lead):
    for number in range(20):
        attempt(f"guess{number}", address=f"2001:db8:1:2::{number + 1:x}")
    assert attempt("lena", PASSWORD, address="2001:db8:1:2:ffff::1").status_code == 429
    assert logged_in(attempt("lena", PASSWORD, address="2001:db8:1:3::1"))


def test_it_logs_a_lockout_without_the_password(lead, caplog):
    with caplog.at_level(logging.INFO):
        for _ in range(6):
            attempt("lena", "hunter2-secret")
    lockouts = [r for r in caplog.records if r.name == "dashboard.infra.throttle"]
    assert len(lockouts) == 1
    assert lockouts[0].levelno == logging.WARNING
    assert "user 'lena' from 1.2.3.4" in lockouts[0].getMessage()
    assert "hunter2-secret" not in caplog.text


def test_it_keeps_no_password_with_the_failures(lead):
    fail("lena", 2)
    attempt("nemo", "hunter2-secret")
    kept = list(AccessAttempt.objects.values_list("username", "post_data", "get_data"))
    assert sorted(kept) == [("lena", "", ""), ("nemo", "", "")]


def test_it_does_not_count_a_form_left_empty(lead):
    for _ in range(10):
        response = Client().post(LOGIN, {"username": "lena", "password": ""}, REMOTE_ADDR=HOME)
        assert response.status_code == 200
        assert "This field is required." in response.text
    assert logged_in(attempt("lena", PASSWORD))


def test_the_admin_login_honours_the_same_locks(admin):
    fail("ada", 5 - 1)
    assert attempt("ada").status_code == 429
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/",
        {"username": "ada", "password": PASSWORD},
        REMOTE_ADDR=HOME,
    )
    assert LOCKED in response.text
    assert "_auth_user_id" not in client.session


def test_the_admin_login_counts_its_failures_too(admin):
    for _ in range(5):
        Client().post("/admin/login/", {"username": "ada", "password": "wrong"}, REMOTE_ADDR=HOME)
    assert attempt("ada", PASSWORD).status_code == 429


def load_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    """The settings module run afresh with these variables set (demo mode otherwise)."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings_module()


def test_its_limits_and_session_times_come_from_the_environment(monkeypatch):
    loaded = load_settings(
        monkeypatch,
        LOGIN_MAX_FAILURES_PER_USER="3",
        LOGIN_MAX_FAILURES_PER_ADDRESS="50",
        LOGIN_LOCKOUT_SECONDS="1800",
        LOGIN_TRUSTED_PROXIES="1",
        SESSION_COOKIE_AGE="3600",
        SESSION_IDLE_SECONDS="0",
    )
    assert (loaded.LOGIN_MAX_FAILURES_PER_USER, loaded.LOGIN_MAX_FAILURES_PER_ADDRESS) == (3, 50)
    assert loaded.LOGIN_LOCKOUT_SECONDS == 1800
    assert loaded.LOGIN_TRUSTED_PROXIES == 1
    assert (loaded.SESSION_COOKIE_AGE, loaded.SESSION_IDLE_SECONDS) == (3600, 0)
    assert loaded.CSRF_COOKIE_HTTPONLY is True


def test_its_defaults(monkeypatch):
    for name in (
        "LOGIN_MAX_FAILURES_PER_USER",
        "LOGIN_MAX_FAILURES_PER_ADDRESS",
        "LOGIN_LOCKOUT_SECONDS",
        "LOGIN_TRUSTED_PROXIES",
        "SESSION_COOKIE_AGE",
        "SESSION_IDLE_SECONDS",
    ):
        monkeypatch.delenv(name, raising=False)
    loaded = load_settings(monkeypatch)
    assert (loaded.LOGIN_MAX_FAILURES_PER_USER, loaded.LOGIN_MAX_FAILURES_PER_ADDRESS) == (5, 20)
    assert loaded.LOGIN_LOCKOUT_SECONDS == 900
    assert loaded.LOGIN_TRUSTED_PROXIES == 0
    assert (loaded.SESSION_COOKIE_AGE, loaded.SESSION_IDLE_SECONDS) == (8 * 3600, 3600)
    # axes's backend comes first: it refuses a locked-out login before any password check.
    assert loaded.AUTHENTICATION_BACKENDS[0] == "dashboard.infra.throttle.ThrottleBackend"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("LOGIN_MAX_FAILURES_PER_USER", "0", "LOGIN_MAX_FAILURES_PER_USER must be at least 1"),
        ("LOGIN_LOCKOUT_SECONDS", "soon", "LOGIN_LOCKOUT_SECONDS must be a whole number"),
        ("LOGIN_TRUSTED_PROXIES", "-1", "LOGIN_TRUSTED_PROXIES must be 0 or more"),
        ("SESSION_COOKIE_AGE", "10", "SESSION_COOKIE_AGE must be at least 60 seconds"),
        ("SESSION_IDLE_SECONDS", "-5", "SESSION_IDLE_SECONDS must be 0 or more"),
    ],
)
def test_it_refuses_a_bad_value_naming_it(monkeypatch, name, value, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        load_settings(monkeypatch, **{name: value})
