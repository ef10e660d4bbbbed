"""Django's admin walked as a Billing admin: every user, role and grant change they may make
and may not make. A Billing admin manages only users who hold no more than they do, gives
only roles and accounts they hold, and sees only their accounts' audit rows.

Each change is POSTed as a browser would send the admin's own form (read from the page),
with one field changed or one crafted field added; a refusal changes nothing.
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from dashboard import roles
from dashboard.models import AccountAccess, AuditEvent
from tests.conftest import ACCOUNT_ID, OTHER_ACCOUNT_ID, PASSWORD, make_user

pytestmark = pytest.mark.django_db

NEW_PASSWORD = "a brand new passphrase for them"
#: Where Django's admin sends a change form for a user it does not show: "does not exist".
ADMIN_INDEX = "/admin/"
#: The account-access inline's formset prefix (the relation's name).
GRANTS = "account_access"


class FormParser(HTMLParser):
    """What a browser would send for one form of a page: its fields and their values."""

    def __init__(self, form_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.form_id = form_id
        self.inside = False
        self.data: dict[str, list[str]] = {}
        self.select: str | None = None
        self.textarea: str | None = None

    def add(self, name: str, value: str) -> None:
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = attr.get("id") == self.form_id
        if not self.inside or "name" not in attr:
            if tag == "option" and self.select is not None and "selected" in attr:
                self.add(self.select, attr.get("value", ""))
            return
        kind = attr.get("type", "text")
        if tag == "input" and kind not in ("submit", "button", "checkbox", "radio", "file"):
            self.add(attr["name"], attr.get("value", ""))
        elif tag == "input" and kind in ("checkbox", "radio") and "checked" in attr:
            self.add(attr["name"], attr.get("value", "on"))
        elif tag == "select":
            self.select = attr["name"]
            self.data.setdefault(self.select, [])
        elif tag == "textarea":
            self.textarea = attr["name"]
            self.add(self.textarea, "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None

    def handle_data(self, data: str) -> None:
        if self.textarea is not None:
            self.data[self.textarea][-1] += data


def change_url(user: User) -> str:
    return f"/admin/auth/user/{user.pk}/change/"


def password_url(user: User) -> str:
    return f"/admin/auth/user/{user.pk}/password/"


def user_form(client: Client, url: str) -> dict[str, list[str]]:
    """The admin's user form at ``url`` as ``client``'s user sees it, ready to POST."""
    response = client.get(url)
    assert response.status_code == 200
    parser = FormParser("user_form")
    parser.feed(response.text)
    assert "username" in parser.data, "the form was read"
    assert f"{GRANTS}-TOTAL_FORMS" in parser.data, "the account-access inline was read"
    return parser.data


def change_form(client: Client, user: User) -> dict[str, list[str]]:
    data = user_form(client, change_url(user))
    assert data["username"] == [user.username]
    return data


def with_grant(data: dict[str, list[str]], account_id: str) -> dict[str, list[str]]:
    """The form with ``account_id`` chosen in the inline's empty (extra) row."""
    row = int(data[f"{GRANTS}-INITIAL_FORMS"][0])
    return data | {f"{GRANTS}-{row}-account_id": [account_id]}


def snapshot(user: User) -> tuple[object, ...]:
    """Everything about a user that a refused change must leave as it was."""
    user.refresh_from_db()
    return (
        user.username,
        user.email,
        user.password,
        user.is_active,
        user.is_staff,
        user.is_superuser,
        sorted(user.groups.values_list("name", flat=True)),
        sorted(user.user_permissions.values_list("codename", flat=True)),
        sorted(AccountAccess.objects.filter(user=user).values_list("account_id", flat=True)),
    )


def assert_refused(client: Client, user: User, data: dict[str, list[str]], message: str) -> None:
    """POSTs the change form: it comes back with ``message`` and nothing about the user
    changed, not even the other field that the same POST changes (the email)."""
    data = data | {"email": ["changed@example.com"]}
    before = snapshot(user)
    response = client.post(change_url(user), data)
    assert response.status_code == 200
    assert message in response.text
    assert snapshot(user) == before


def password_post(client: Client, user: User) -> int:
    response = client.post(
        password_url(user),
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "set_usable_password": "true"},
    )
    return response.status_code


# ---------------------------------------------------------------- personas


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def ada(db) -> User:
    """Ada, the Billing admin of the production account only."""
    return make_user("ada", roles.BILLING_ADMIN, accounts=[ACCOUNT_ID])


@pytest.fixture
def ada_client(ada: User) -> Client:
    return logged_in(ada)


@pytest.fixture
def root(db) -> User:
    return User.objects.create_superuser("root", "root@example.com", PASSWORD)


@pytest.fixture
def root_client(root: User) -> Client:
    return logged_in(root)


@pytest.fixture
def bea(db) -> User:
    """Bea, a Billing admin of every account: she holds more than Ada."""
    return make_user("bea", roles.BILLING_ADMIN)


@pytest.fixture
def retired(db) -> User:
    """Rita, a Billing admin of every account, deactivated: reactivating her would raise her
    above Ada, so Ada may not touch her either."""
    user = make_user("rita", roles.BILLING_ADMIN)
    user.is_active = False
    user.save()
    return user


@pytest.fixture
def frank(db) -> User:
    """Frank, finance staff of the production account: holds less than Ada."""
    return make_user("frank", roles.FINANCE, accounts=[ACCOUNT_ID])


@pytest.fixture
def deleter(db) -> User:
    """Dan, a team lead with one permission of his own that Ada does not hold."""
    user = make_user("dan", roles.TEAM_LEAD, accounts=[ACCOUNT_ID])
    user.user_permissions.add(Permission.objects.get(codename="delete_user"))
    return user


@pytest.fixture
def auditors(db) -> Group:
    """A role Ada does not hold: it may change groups."""
    group = Group.objects.create(name="Auditors")
    group.permissions.add(Permission.objects.get(codename="change_group"))
    return group


def group_id(name: str) -> str:
    return str(Group.objects.get(name=name).pk)


# ---------------------------------------------------------------- passwords


@pytest.mark.parametrize("target", ["root", "bea", "deleter", "retired"])
def test_it_refuses_a_billing_admin_the_password_of_a_user_holding_more(
    request, ada_client, target
):
    user: User = request.getfixturevalue(target)
    before = snapshot(user)
    assert ada_client.get(password_url(user)).status_code == 404
    assert password_post(ada_client, user) == 404
    assert snapshot(user) == before
    assert user.check_password(PASSWORD)


def test_it_lets_a_billing_admin_set_a_finance_users_password(ada_client, frank):
    assert ada_client.get(password_url(frank)).status_code == 200
    assert password_post(ada_client, frank) == 302
    assert Client().login(username="frank", password=NEW_PASSWORD)


def test_it_lets_a_superuser_set_anyones_password(root_client, bea):
    assert password_post(root_client, bea) == 302
    assert Client().login(username="bea", password=NEW_PASSWORD)


# ---------------------------------------------------------------- who is shown


def test_it_lists_for_a_billing_admin_only_the_users_they_may_manage(
    ada_client, root, bea, frank, deleter
):
    page = ada_client.get("/admin/auth/user/").text
    assert f"/admin/auth/user/{frank.pk}/change/" in page
    assert f"/admin/auth/user/{root.pk}/change/" not in page
    assert f"/admin/auth/user/{bea.pk}/change/" not in page
    assert f"/admin/auth/user/{deleter.pk}/change/" not in page


@pytest.mark.parametrize("target", ["root", "bea", "deleter", "retired"])
def test_it_shows_a_billing_admin_no_user_holding_more(request, ada_client, target):
    user: User = request.getfixturevalue(target)
    response = ada_client.get(change_url(user))
    assert response.status_code == 302
    assert response["Location"] == ADMIN_INDEX
    assert ada_client.get(f"/admin/auth/user/{user.pk}/history/").status_code == 302


def test_it_lets_a_superuser_see_everyone(root_client, ada, bea, deleter):
    page = root_client.get("/admin/auth/user/").text
    for user in (ada, bea, deleter):
        assert f"/admin/auth/user/{user.pk}/change/" in page


# ---------------------------------------------------------------- (de)activate, rename, delete


@pytest.mark.parametrize("target", ["root", "bea", "deleter", "retired"])
@pytest.mark.parametrize("change", ["switch_active", "rename"])
def test_it_refuses_a_billing_admin_changes_to_a_user_holding_more(
    request, ada_client, root_client, target, change
):
    user: User = request.getfixturevalue(target)
    data = change_form(root_client, user)  # the form as it is; Ada may not even read it
    if change == "switch_active":  # deactivate, or reactivate the retired
        data["is_active"] = [] if user.is_active else ["on"]
    else:
        data["username"] = ["renamed"]
    before = snapshot(user)
    response = ada_client.post(change_url(user), data)
    assert response.status_code == 302
    assert response["Location"] == ADMIN_INDEX
    assert snapshot(user) == before


@pytest.mark.parametrize("change", ["deactivate", "rename"])
def test_it_lets_a_billing_admin_change_a_finance_user(ada_client, frank, change):
    data = change_form(ada_client, frank)
    if change == "deactivate":
        data.pop("is_active")
    else:
        data["username"] = ["franklin"]
    response = ada_client.post(change_url(frank), data)
    assert response.status_code == 302
    assert response["Location"] == "/admin/auth/user/"
    frank.refresh_from_db()
    assert (frank.username, frank.is_active) == (
        ("frank", False) if change == "deactivate" else ("franklin", True)
    )


@pytest.mark.parametrize("target", ["root", "bea", "frank"])
def test_it_never_lets_a_billing_admin_delete_a_user(request, ada_client, target):
    user: User = request.getfixturevalue(target)
    response = ada_client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code in (302, 403)
    assert response.status_code == 403 or response["Location"] == ADMIN_INDEX
    assert User.objects.filter(pk=user.pk).exists()


def test_it_lets_a_superuser_deactivate_and_delete_a_billing_admin(root_client, bea):
    data = change_form(root_client, bea)
    data.pop("is_active")
    assert root_client.post(change_url(bea), data).status_code == 302
    bea.refresh_from_db()
    assert not bea.is_active
    response = root_client.post(f"/admin/auth/user/{bea.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=bea.pk).exists()


def test_it_lets_a_billing_admin_add_a_user(ada_client):
    data = user_form(ada_client, "/admin/auth/user/add/")
    data |= {
        "username": ["newbie"],
        "usable_password": ["true"],
        "password1": [NEW_PASSWORD],
        "password2": [NEW_PASSWORD],
    }
    response = ada_client.post("/admin/auth/user/add/", data)
    assert response.status_code == 302
    newbie = User.objects.get(username="newbie")
    assert not newbie.is_superuser
    assert not newbie.groups.exists()
    assert not AccountAccess.objects.filter(user=newbie).exists()
    # The new user can then be managed: given a role and an account.
    data = change_form(ada_client, newbie)
    data["groups"] = [group_id(roles.FINANCE)]
    assert ada_client.post(change_url(newbie), with_grant(data, ACCOUNT_ID)).status_code == 302
    assert snapshot(newbie)[-3:] == ([roles.FINANCE], [], [ACCOUNT_ID])


def test_it_refuses_a_billing_admin_a_new_user_with_an_account_they_do_not_hold(ada_client):
    data = with_grant(user_form(ada_client, "/admin/auth/user/add/"), OTHER_ACCOUNT_ID)
    data |= {"username": ["newbie"], "usable_password": ["false"]}
    response = ada_client.post("/admin/auth/user/add/", data)
    assert response.status_code == 200
    assert "You may grant only the accounts you are granted" in response.text
    assert not User.objects.filter(username="newbie").exists()


# ---------------------------------------------------------------- roles and powers


def test_it_lets_a_billing_admin_give_a_role_they_hold(ada_client, frank):
    data = change_form(ada_client, frank)
    data["groups"] = [group_id(roles.BILLING_ADMIN)]
    assert ada_client.post(change_url(frank), data).status_code == 302
    assert list(frank.groups.values_list("name", flat=True)) == [roles.BILLING_ADMIN]


def test_it_refuses_a_billing_admin_a_role_they_do_not_hold(ada_client, frank, auditors):
    data = change_form(ada_client, frank)
    assert "Auditors" not in ada_client.get(change_url(frank)).text
    data["groups"] = [group_id(roles.FINANCE), str(auditors.pk)]
    assert_refused(ada_client, frank, data, "You may give only roles whose permissions you hold")


@pytest.mark.parametrize("field", ["is_superuser", "user_permissions"])
@pytest.mark.parametrize("target", ["frank", "ada"])
def test_it_refuses_a_billing_admin_superuser_powers_in_a_crafted_post(
    request, ada_client, target, field
):
    user: User = request.getfixturevalue(target)
    data = change_form(ada_client, user)
    assert field not in data, "the admin does not offer it"
    delete_user = Permission.objects.get(codename="delete_user")
    data[field] = ["on"] if field == "is_superuser" else [str(delete_user.pk)]
    assert_refused(ada_client, user, data, "Only a superuser may")


def test_it_lets_a_superuser_give_any_role_and_power(root_client, frank, auditors):
    data = change_form(root_client, frank)
    data["groups"] = [str(auditors.pk)]
    data["is_superuser"] = ["on"]
    data["user_permissions"] = [str(Permission.objects.get(codename="delete_user").pk)]
    assert root_client.post(change_url(frank), data).status_code == 302
    assert snapshot(frank)[5:8] == (True, ["Auditors"], ["delete_user"])


# ---------------------------------------------------------------- account grants


@pytest.mark.parametrize("target", ["frank", "ada"])
def test_it_offers_a_billing_admin_only_the_accounts_they_are_granted(request, ada_client, target):
    user: User = request.getfixturevalue(target)
    page = ada_client.get(change_url(user)).text
    assert f'value="{ACCOUNT_ID}"' in page
    assert f'value="{OTHER_ACCOUNT_ID}"' not in page


def test_it_lets_a_billing_admin_grant_an_account_they_hold(ada_client):
    nora = make_user("nora", None, accounts=[])
    data = with_grant(change_form(ada_client, nora), ACCOUNT_ID)
    assert ada_client.post(change_url(nora), data).status_code == 302
    assert snapshot(nora)[-1] == [ACCOUNT_ID]


@pytest.mark.parametrize("target", ["frank", "ada"])
def test_it_refuses_a_billing_admin_an_account_they_do_not_hold(request, ada_client, target):
    user: User = request.getfixturevalue(target)
    data = with_grant(change_form(ada_client, user), OTHER_ACCOUNT_ID)
    assert_refused(ada_client, user, data, "You may grant only the accounts you are granted")


def test_it_lets_a_superuser_grant_any_account(root_client, frank):
    data = with_grant(change_form(root_client, frank), OTHER_ACCOUNT_ID)
    assert root_client.post(change_url(frank), data).status_code == 302
    assert snapshot(frank)[-1] == sorted([ACCOUNT_ID, OTHER_ACCOUNT_ID])


# ---------------------------------------------------------------- a Billing admin's own record


def test_it_lets_a_billing_admin_change_their_own_name_but_not_raise_their_rights(
    ada_client, ada, auditors
):
    data = change_form(ada_client, ada)
    data["email"] = ["ada@new.example"]
    assert ada_client.post(change_url(ada), data).status_code == 302
    ada.refresh_from_db()
    assert ada.email == "ada@new.example"
    data = change_form(ada_client, ada)
    data["groups"] = [group_id(roles.BILLING_ADMIN), str(auditors.pk)]
    assert_refused(ada_client, ada, data, "You may give only roles whose permissions you hold")


# ---------------------------------------------------------------- the audit log


def audit_row(account_id: str) -> AuditEvent:
    return AuditEvent.objects.create(
        username="someone",
        account_id=account_id,
        action=AuditEvent.Action.TOPUP,
        outcome=AuditEvent.Outcome.ACCEPTED,
    )


def test_it_shows_a_billing_admin_only_their_accounts_audit_rows(ada_client):
    mine, other = audit_row(ACCOUNT_ID), audit_row(OTHER_ACCOUNT_ID)
    listing = ada_client.get("/admin/dashboard/auditevent/").text
    assert f"/admin/dashboard/auditevent/{mine.pk}/change/" in listing
    assert f"/admin/dashboard/auditevent/{other.pk}/change/" not in listing
    assert OTHER_ACCOUNT_ID not in listing, "not even in the account filter"
    filtered = ada_client.get(f"/admin/dashboard/auditevent/?account_id={OTHER_ACCOUNT_ID}")
    assert f"/admin/dashboard/auditevent/{other.pk}/change/" not in filtered.text
    assert ada_client.get(f"/admin/dashboard/auditevent/{mine.pk}/change/").status_code == 200
    detail = ada_client.get(f"/admin/dashboard/auditevent/{other.pk}/change/")
    assert detail.status_code == 302
    assert detail["Location"] == ADMIN_INDEX


def test_it_shows_a_superuser_every_audit_row(root_client):
    other = audit_row(OTHER_ACCOUNT_ID)
    listing = root_client.get("/admin/dashboard/auditevent/").text
    assert f"/admin/dashboard/auditevent/{other.pk}/change/" in listing
    assert root_client.get(f"/admin/dashboard/auditevent/{other.pk}/change/").status_code == 200
