"""Who gets what: every URL pattern, walked for anonymous, each role, no role, outsiders."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from dashboard.services.accounts import accounts_for
from tests.conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID, make_user

LOGIN = "login"  # a redirect to the login page
PERSONAS = ("anonymous", "nobody", "lead", "finance", "admin", "outsider")

READ = {"lead": 200, "finance": 200, "admin": 200}
FINANCE = {"lead": 403, "finance": 200, "admin": 200}
ADMIN_ONLY = {"lead": 403, "finance": 403, "admin": 200}
# Per URL name: what each persona gets for a GET. "outsider" is finance staff for another
# account only: the account in the URL does not exist for them (404).
EXPECTED: dict[str, dict[str, Any]] = {
    "dashboard:home": {"anonymous": LOGIN, "nobody": 403}
    | dict.fromkeys(("lead", "finance", "admin", "outsider"), 302),
    "login": dict.fromkeys(PERSONAS[1:], 302) | {"anonymous": 200},
    # The load balancers' probes: public, and the same to everyone.
    "healthz": dict.fromkeys(PERSONAS, 200),
    "readyz": dict.fromkeys(PERSONAS, 200),
    # Prometheus' scrape: a bearer token or a staff login (Billing admins are staff).
    "metrics": {"anonymous": 401, "admin": 200}
    | dict.fromkeys(("nobody", "lead", "finance", "outsider"), 403),
    "logout": dict.fromkeys(PERSONAS[1:], 405) | {"anonymous": LOGIN},
    "dashboard:all_accounts": {"anonymous": LOGIN, "nobody": 403, "outsider": 200, **READ},
    "dashboard:digest": {"anonymous": LOGIN, "nobody": 403, "outsider": 200, **READ},
    "dashboard:overview": {"anonymous": LOGIN, "nobody": 403, "outsider": 404, **READ},
    "dashboard:usage": {"anonymous": LOGIN, "nobody": 403, "outsider": 404, **READ},
    "dashboard:usage_csv": {"anonymous": LOGIN, "nobody": 403, "outsider": 404, **FINANCE},
    "dashboard:invoices": {"anonymous": LOGIN, "nobody": 403, "outsider": 404, **FINANCE},
    "dashboard:topups": {"anonymous": LOGIN, "nobody": 403, "outsider": 404, **FINANCE},
    # POST only: a GET is 405 to those who may top up, 403 (or 404) to the others.
    "dashboard:topup_create": {"anonymous": LOGIN, "nobody": 403, "outsider": 404}
    | {"lead": 403, "finance": 405, "admin": 405},
    "dashboard:topup_check": {"anonymous": LOGIN, "nobody": 403, "outsider": 404}
    | {"lead": 403, "finance": 405, "admin": 405},
    # The walk asks for top-up 1, which does not exist: permission first (403), then 404.
    "dashboard:topup_status": {"anonymous": LOGIN, "nobody": 403, "outsider": 404}
    | {"lead": 403, "finance": 404, "admin": 404},
    "dashboard:activity": {"anonymous": LOGIN, "nobody": 403, "outsider": 404, **FINANCE},
    "dashboard:activity_csv": {"anonymous": LOGIN, "nobody": 403, "outsider": 404, **FINANCE},
    # The standing rules: Billing admins only (the account first: 404 to the outsider).
    "dashboard:auto_topup": {"anonymous": LOGIN, "nobody": 403, "outsider": 404, **ADMIN_ONLY},
    "dashboard:auto_topup_delete": {
        "anonymous": LOGIN,
        "nobody": 403,
        "outsider": 404,
        **ADMIN_ONLY,
    },
    "dashboard:spending_limit": {"anonymous": LOGIN, "nobody": 403, "outsider": 404, **ADMIN_ONLY},
    "dashboard:spending_limit_delete": {
        "anonymous": LOGIN,
        "nobody": 403,
        "outsider": 404,
        **ADMIN_ONLY,
    },
    "dashboard:alerts": {"anonymous": LOGIN, "nobody": 403, "outsider": 404, **ADMIN_ONLY},
    # The walk asks for rule 1, which does not exist: permission first (403), then 404.
    "dashboard:alert_rule": {"anonymous": LOGIN, "nobody": 403, "outsider": 404}
    | {"lead": 403, "finance": 403, "admin": 404},
    "dashboard:alert_rule_delete": {"anonymous": LOGIN, "nobody": 403, "outsider": 404}
    | {"lead": 403, "finance": 403, "admin": 404},
}


def url_names() -> list[tuple[str, URLPattern]]:
    names: list[tuple[str, URLPattern]] = []
    for pattern in get_resolver().url_patterns:
        if isinstance(pattern, URLResolver):
            if pattern.namespace == "dashboard":  # the pages
                for page in pattern.url_patterns:
                    assert isinstance(page, URLPattern) and page.name, page
                    names.append((f"dashboard:{page.name}", page))
            continue  # Django's admin: walked separately below
        assert pattern.name, f"every URL pattern is named: {pattern}"
        names.append((pattern.name, pattern))
    return names


def url_for(name: str, pattern: URLPattern) -> str:
    kwargs: dict[str, Any] = dict.fromkeys(pattern.pattern.converters, ACCOUNT_ID)
    # Other path parameters (a top-up's pk) are numbers: 1, which the walk never creates.
    kwargs |= {key: 1 for key in kwargs if key != "account_id"}
    return reverse(name, kwargs=kwargs)


@pytest.fixture
def personas(db) -> dict[str, Client]:
    from dashboard import roles

    users = {
        "nobody": make_user("nora", None),
        "lead": make_user("lena", roles.TEAM_LEAD),
        "finance": make_user("frank", roles.FINANCE),
        "admin": make_user("ada", roles.BILLING_ADMIN),
        "outsider": make_user("oscar", roles.FINANCE, accounts=[OTHER_ACCOUNT_ID]),
    }
    clients = {"anonymous": Client()}
    for key, user in users.items():
        clients[key] = Client()
        clients[key].force_login(user)
    return clients


def test_it_knows_what_every_url_pattern_answers_to_whom():
    assert sorted(name for name, _ in url_names()) == sorted(EXPECTED), (
        "a new URL pattern needs its row in EXPECTED"
    )


@pytest.mark.parametrize("persona", PERSONAS)
def test_it_answers_each_persona_as_its_role_allows(personas, persona):
    client = personas[persona]
    for name, pattern in url_names():
        url = url_for(name, pattern)
        expected = EXPECTED[name][persona]
        response = client.get(url)
        if expected == LOGIN:
            assert response.status_code == 302, url
            assert response["Location"].startswith(reverse("login")), url
        else:
            assert response.status_code == expected, f"{persona} GET {url}"


@pytest.mark.parametrize(
    ("persona", "status"),
    [("admin", 200), ("finance", 302), ("lead", 302), ("nobody", 302), ("anonymous", 302)],
)
def test_it_lets_only_billing_admins_into_user_management(personas, persona, status):
    assert personas[persona].get("/admin/auth/user/").status_code == status


# Django's admin, per URL: what a Billing admin (Ada, granted every account) gets for a GET.
# Nobody else is staff: every other persona is sent to the admin's login. A superuser is
# never shown to a Billing admin: the change form says "does not exist" (a redirect to the
# admin's index), the password form 404. The walk of every change a Billing admin may and
# may not make is in test_admin_roles.py.
ADMIN_EXPECTED = {
    "/admin/": 200,
    "/admin/auth/user/": 200,
    "/admin/auth/user/add/": 200,
    "/admin/auth/user/{lena}/change/": 200,
    "/admin/auth/user/{lena}/password/": 200,
    "/admin/auth/user/{lena}/delete/": 403,
    "/admin/auth/user/{root}/change/": 302,
    "/admin/auth/user/{root}/password/": 404,
    "/admin/auth/user/{root}/history/": 302,
    "/admin/auth/group/": 200,
    "/admin/auth/group/add/": 403,
    "/admin/dashboard/auditevent/": 200,
    "/admin/dashboard/auditevent/add/": 403,
}


@pytest.mark.parametrize("persona", PERSONAS)
def test_it_answers_each_persona_in_djangos_admin_as_its_role_allows(personas, persona):
    from django.contrib.auth.models import User

    root = User.objects.create_superuser("root", "root@example.com", "not used")
    lena = User.objects.get(username="lena")
    for template, expected in ADMIN_EXPECTED.items():
        url = template.format(root=root.pk, lena=lena.pk)
        response = personas[persona].get(url)
        if persona != "admin":
            # To a login page (the site's or the admin's own).
            assert response.status_code == 302, f"{persona} GET {url}"
            login = (reverse("login"), "/admin/login/")
            assert response["Location"].startswith(login), f"{persona} GET {url}"
            continue
        assert response.status_code == expected, f"{persona} GET {url}"
        if expected == 302:
            assert response["Location"] == "/admin/", url


def test_it_hides_superuser_powers_from_billing_admins(personas):
    from django.contrib.auth.models import User

    target = User.objects.get(username="lena")
    page = personas["admin"].get(f"/admin/auth/user/{target.pk}/change/").text
    assert 'name="groups"' in page
    assert 'name="is_superuser"' not in page
    assert 'name="user_permissions"' not in page


def test_it_answers_404_for_an_account_that_is_not_configured(personas):
    response = personas["finance"].get(reverse("dashboard:overview", args=["f" * 32]))
    assert response.status_code == 404


def test_it_lists_only_granted_accounts(personas):
    from django.contrib.auth.models import User

    oscar = User.objects.get(username="oscar")
    assert [a.id for a in accounts_for(oscar)] == [OTHER_ACCOUNT_ID]
    page = personas["outsider"].get(reverse("dashboard:all_accounts")).text
    assert "Research" in page and "Production" not in page


def test_it_redirects_home_to_the_first_granted_account(personas):
    response = personas["outsider"].get("/")
    assert response["Location"] == reverse("dashboard:overview", args=[OTHER_ACCOUNT_ID])


def test_it_switches_accounts_to_the_same_page(personas):
    page = personas["finance"].get(reverse("dashboard:overview", args=[ACCOUNT_ID])).text
    assert f'href="{reverse("dashboard:overview", args=[OTHER_ACCOUNT_ID])}"' in page
    assert 'href="/accounts/"' in page


def test_it_shows_no_switcher_with_a_single_account(personas):
    page = personas["outsider"].get(reverse("dashboard:overview", args=[OTHER_ACCOUNT_ID])).text
    assert "account-switcher" not in page


def test_it_explains_a_refusal_in_the_layout(personas):
    response = personas["lead"].get(reverse("dashboard:invoices", args=[ACCOUNT_ID]))
    assert response.status_code == 403
    assert "Your role does not include this page." in response.text
    assert 'rel="stylesheet"' in response.text


def test_it_explains_a_missing_account_in_the_layout(personas, settings):
    settings.DEBUG = False
    response = personas["outsider"].get(reverse("dashboard:overview", args=[ACCOUNT_ID]))
    assert response.status_code == 404
    assert "no account here that you have been given access to" in response.text


@pytest.mark.django_db
def test_it_gives_each_role_exactly_its_permissions():
    from django.contrib.auth.models import Group

    from dashboard import roles

    for name, codenames in roles.ROLE_PERMISSIONS.items():
        held = {
            (p.content_type.app_label, p.codename)
            for p in Group.objects.get(name=name).permissions.all()
        }
        expected = {("dashboard", codename) for codename in codenames}
        if name == roles.BILLING_ADMIN:
            expected |= set(roles.ADMIN_AUTH_PERMISSIONS)
        assert held == expected, name


# Every URL that changes something, and the permission it needs.
WRITES = {
    "dashboard:topup_create": "create_topup",
    "dashboard:topup_check": "create_topup",
    "dashboard:auto_topup": "change_auto_topup",
    "dashboard:auto_topup_delete": "change_auto_topup",
    "dashboard:spending_limit": "change_spending_limit",
    "dashboard:spending_limit_delete": "change_spending_limit",
    "dashboard:alerts": "manage_alerts",
}


def test_it_lists_every_write():
    patterns = dict(url_names())
    assert all(name in patterns for name in WRITES)


@pytest.mark.parametrize("persona", ["nobody", "lead", "finance", "admin", "outsider"])
def test_it_refuses_every_write_without_its_permission_and_sends_nothing(personas, persona, sim):
    from django.contrib.auth.models import User

    from dashboard.models import AuditEvent

    client = personas[persona]
    username = {"nobody": "nora", "lead": "lena", "finance": "frank", "admin": "ada"}.get(
        persona, "oscar"
    )
    user = User.objects.get(username=username)
    for name, permission in WRITES.items():
        url = reverse(name, args=[ACCOUNT_ID])
        allowed = user.has_perm(f"dashboard.{permission}")
        before = AuditEvent.objects.filter(outcome="forbidden").count()
        response = client.post(url, {})
        if persona == "outsider":
            # The account is not theirs: 404 before any permission, and nothing recorded.
            assert response.status_code == 404, url
            assert AuditEvent.objects.filter(outcome="forbidden").count() == before, url
        elif not allowed:
            assert response.status_code == 403, f"{persona} POST {url}"
            assert AuditEvent.objects.filter(outcome="forbidden").count() == before + 1, url
        else:
            assert response.status_code != 403, f"{persona} POST {url}"
    writes = [key for key in sim.calls if not key.startswith("GET ")]
    if persona in ("nobody", "lead", "outsider"):
        assert writes == [], f"{persona} reached Cloudflare: {writes}"


def test_it_refuses_every_write_to_anonymous_visitors(personas, sim):
    for name in WRITES:
        response = personas["anonymous"].post(reverse(name, args=[ACCOUNT_ID]), {})
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    assert not [key for key in sim.calls if not key.startswith("GET ")]
