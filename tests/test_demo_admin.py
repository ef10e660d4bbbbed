"""Django's admin in demo mode (SQLite, jobs in memory, as ``make run`` has it): every page a
superuser can reach answers, none with a 500 for a table that is not there."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import run_on_fresh_sqlite

SCRIPT = """
import io, re
import django
from django.core.management import call_command
django.setup()
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from django.test import Client
User.objects.create_superuser("root", "root@example.com", "a-long-enough-password")
client = Client(raise_request_exception=False)
assert client.login(username="root", password="a-long-enough-password")
index = client.get("/admin/")
print("/admin/", index.status_code)
for path in sorted(set(re.findall(r'href="(/admin/[a-z_]+/[a-z_]+/)"', index.text))):
    print(path, client.get(path).status_code)
"""


def test_every_admin_page_a_superuser_sees_in_demo_mode_answers(tmp_path: Path) -> None:
    done = run_on_fresh_sqlite(
        SCRIPT,
        tmp_path / "demo.sqlite3",
        timeout=120,
        DEBUG="true",
        ALLOWED_HOSTS="testserver",
        LOG_LEVEL="CRITICAL",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    answers = dict(line.rsplit(" ", 1) for line in done.stdout.splitlines())
    assert answers.pop("/admin/") == "200"
    assert "/admin/auth/user/" in answers, "the admin index lists the models"
    assert {path: status for path, status in answers.items() if status != "200"} == {}
