"""Django's admin, for billing admins: they manage only users who hold no more than they do,
give only roles and accounts they hold, and see only their accounts' audit rows."""

from __future__ import annotations

from typing import Any

from django import forms
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import AnonymousUser, Group, Permission, User
from django.core.exceptions import ValidationError
from django.db.models import Field, ManyToManyField, Q, QuerySet
from django.http import HttpRequest

from dashboard.models import AccountAccess, AuditEvent, account_choices

#: Only a superuser may set these: they raise rights past any role.
SUPERUSER_FIELDS = frozenset({"is_superuser", "user_permissions"})
NOT_YOUR_ROLE = "You may give only roles whose permissions you hold yourself."
NOT_YOUR_ACCOUNT = "You may grant only the accounts you are granted yourself."

Requester = User | AnonymousUser


def not_held_permissions(requester: Requester) -> QuerySet[Permission]:
    """Every permission ``requester`` holds neither through a role nor as their own."""
    held = Permission.objects.filter(Q(group__user=requester.pk) | Q(user=requester.pk))
    return Permission.objects.exclude(pk__in=held.values("pk"))


def granted_accounts(requester: Requester) -> QuerySet[AccountAccess]:
    # Read afresh, not from the login's snapshot: a grant must bound the next grant at once.
    return AccountAccess.objects.filter(user=requester.pk)


def manageable(users: QuerySet[User], requester: Requester) -> QuerySet[User]:
    """Of ``users``, those ``requester`` may see and change."""
    if requester.is_superuser:
        return users
    not_held = not_held_permissions(requester)
    holding_more = User.objects.filter(
        Q(groups__permissions__in=not_held) | Q(user_permissions__in=not_held)
    )
    granted_more = AccountAccess.objects.exclude(
        account_id__in=granted_accounts(requester).values("account_id")
    )
    return (
        users.filter(is_superuser=False)
        .exclude(pk__in=holding_more.values("pk"))
        .exclude(pk__in=granted_more.values("user"))
    )


def may_manage(requester: Requester, user: User | None) -> bool:
    """Whether ``requester`` may see and change ``user`` (None: users at large, as a list)."""
    return user is None or manageable(User.objects.filter(pk=user.pk), requester).exists()


def grantable_groups(requester: Requester) -> QuerySet[Group]:
    """The roles ``requester`` may give: those whose every permission they hold."""
    groups = Group.objects.all()
    if requester.is_superuser:
        return groups
    beyond = Group.objects.filter(permissions__in=not_held_permissions(requester))
    return groups.exclude(pk__in=beyond.values("pk"))


def grantable_account_choices(requester: Requester) -> list[tuple[str, str]]:
    choices = account_choices()
    if requester.is_superuser:
        return choices
    granted = set(granted_accounts(requester).values_list("account_id", flat=True))
    return [(key, label) for key, label in choices if key in granted]


class BoundedUserChangeForm(UserChangeForm[User]):
    """The change form for a non-superuser: a POST naming a superuser field (hidden from them,
    so Django would ignore it) is refused whole, so a crafted request changes nothing."""

    def clean(self) -> dict[str, Any] | None:
        if SUPERUSER_FIELDS & set(self.data):
            raise ValidationError(
                "Only a superuser may make superusers or give single permissions."
            )
        return super().clean()


class AccountAccessInline(admin.TabularInline[AccountAccess, User]):
    model = AccountAccess
    extra = 1
    fields = ("account_id", "granted_at")
    readonly_fields = ("granted_at",)

    def formfield_for_choice_field(
        self, db_field: Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.TypedChoiceField | None:
        if db_field.name == "account_id":
            # The choices are also what the field accepts: another id POSTed is refused.
            kwargs["choices"] = [("", "---------"), *grantable_account_choices(request.user)]
            kwargs["error_messages"] = {"invalid_choice": NOT_YOUR_ACCOUNT}
        return super().formfield_for_choice_field(db_field, request, **kwargs)


class DashboardUserAdmin(UserAdmin[User]):
    inlines = (AccountAccessInline,)
    list_display = ("username", "email", "is_active", "roles")

    @admin.display(description="Roles")
    def roles(self, user: User) -> str:
        return ", ".join(group.name for group in user.groups.all()) or "none"

    # Every view of a user (list, change, password, history, delete) reads through these.
    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        return manageable(super().get_queryset(request), request.user)

    def has_view_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return super().has_view_permission(request, obj) and may_manage(request.user, obj)

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return super().has_change_permission(request, obj) and may_manage(request.user, obj)

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return super().has_delete_permission(request, obj) and may_manage(request.user, obj)

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser or obj is None:
            return fieldsets
        return [
            (name, {**opts, "fields": [f for f in opts["fields"] if f not in SUPERUSER_FIELDS]})
            for name, opts in fieldsets
        ]

    def get_form(
        self, request: HttpRequest, obj: User | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is not None and not request.user.is_superuser:
            kwargs["form"] = BoundedUserChangeForm
        return super().get_form(request, obj, change=change, **kwargs)

    def formfield_for_manytomany(
        self, db_field: ManyToManyField[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.ModelMultipleChoiceField[Any] | None:
        if db_field.name == "groups":
            # The queryset is also what the field accepts: another group POSTed is refused.
            kwargs["queryset"] = grantable_groups(request.user)
            kwargs["error_messages"] = {"invalid_choice": NOT_YOUR_ROLE}
        return super().formfield_for_manytomany(db_field, request, **kwargs)


admin.site.unregister(User)
admin.site.register(User, DashboardUserAdmin)
admin.site.site_header = "AI Gateway spend: users and access"


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    """Read-only, as the audit log is everywhere; a non-superuser sees their accounts' rows."""

    list_display = ("at", "username", "account_id", "action", "outcome", "upstream_status")
    list_filter = ("action", "outcome", "account_id")
    search_fields = ("username", "account_id", "request_id", "idempotency_key", "detail")
    date_hierarchy = "at"

    def get_queryset(self, request: HttpRequest) -> QuerySet[AuditEvent]:
        events = super().get_queryset(request)
        if request.user.is_superuser:
            return events
        return events.filter(account_id__in=granted_accounts(request.user).values("account_id"))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False


if settings.JOBS_IN_MEMORY:
    # Demo mode keeps the jobs in memory (settings): procrastinate's pages have no table.
    for model in apps.get_app_config("procrastinate").get_models():
        if admin.site.is_registered(model):
            admin.site.unregister(model)
