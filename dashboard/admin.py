"""Django's admin, for billing admins: users, their roles (groups) and their accounts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.http import HttpRequest

from dashboard.models import AccountAccess, AuditEvent


class AccountAccessInline(admin.TabularInline[AccountAccess, User]):
    model = AccountAccess
    extra = 1
    fields = ("account_id", "granted_at")
    readonly_fields = ("granted_at",)


class DashboardUserAdmin(UserAdmin[User]):
    inlines = (AccountAccessInline,)
    list_display = ("username", "email", "is_active", "roles")

    @admin.display(description="Roles")
    def roles(self, user: User) -> str:
        return ", ".join(group.name for group in user.groups.all()) or "none"

    def get_fieldsets(self, request: HttpRequest, obj: User | None = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if request.user.is_superuser or obj is None:
            return fieldsets
        # A billing admin gives roles; only a superuser may make superusers or hand out
        # single permissions, or a billing admin could raise their own rights.
        hidden = {"is_superuser", "user_permissions"}
        return [
            (name, {**opts, "fields": [f for f in opts["fields"] if f not in hidden]})
            for name, opts in fieldsets
        ]


admin.site.unregister(User)
admin.site.register(User, DashboardUserAdmin)
admin.site.site_header = "AI Gateway spend: users and access"


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin[AuditEvent]):
    """Read-only: the audit log is append-only, in the admin as everywhere."""

    list_display = ("at", "username", "account_id", "action", "outcome", "upstream_status")
    list_filter = ("action", "outcome", "account_id")
    search_fields = ("username", "account_id", "request_id", "idempotency_key", "detail")
    date_hierarchy = "at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: AuditEvent | None = None) -> bool:
        return False
