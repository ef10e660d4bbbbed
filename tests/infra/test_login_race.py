"""Login throttling cannot be raced: guesses that arrive at once are counted before any
password is checked.

Transactional (each guess has its own thread and connection): the flush after it removes the
roles a migration made too; serialized_rollback and ``roles_back_after_module`` put them back.
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.hashers import MD5PasswordHasher

from tests.conftest import at_once
from tests.infra.test_login_throttle import attempt

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("roles_back_after_module"),
]


def test_it_checks_no_more_passwords_than_the_limit_when_guesses_arrive_at_once(lead, monkeypatch):
    """Twelve guesses at once, each in its own thread, connection and client: the failure is
    counted before the password is checked, so at most five passwords are ever checked."""
    checked: list[str] = []
    verify = MD5PasswordHasher.verify

    def counted(self: MD5PasswordHasher, password: str, encoded: str) -> bool:
        checked.append(password)
        time.sleep(0.2)  # holds the check open while the others arrive: the race, every time
        return verify(self, password, encoded)

    monkeypatch.setattr(MD5PasswordHasher, "verify", counted)
    answers: list[int] = []

    def guess(number: int, _barrier: object) -> None:
        answers.append(attempt("lena", f"guess {number}").status_code)

    at_once(12, guess)
    assert len(answers) == 12
    assert len(checked) <= 5, f"{len(checked)} passwords checked"
    assert answers.count(429) >= 12 - 5
