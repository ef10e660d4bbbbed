"""Who may see what, checked in every view: the account in the URL must be configured and
granted to the user (404 otherwise: one they may not see looks like one that does not exist),
then the view's permission (403 without it)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate

from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django_htmx.middleware import HtmxDetails

from dashboard.models import AuditEvent
from dashboard.services import audit
from dashboard.services.accounts import PERMISSIONS, Account, accounts_for, read_rights


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


AccountView = Callable[Concatenate[HtmxHttpRequest, Account, ...], HttpResponse]


def account_view(
    permission: str,
    *,
    audit_action: AuditEvent.Action | None = None,
) -> Callable[[AccountView], Callable[..., HttpResponse]]:
    """For a view taking ``(request, account, ...)``; ``permission`` is a ``dashboard`` codename.
    With ``audit_action`` (a write), a POST refused for want of it is audited before the 403."""

    def decorator(view: AccountView) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(
            request: HtmxHttpRequest, account_id: str, *args: Any, **kwargs: Any
        ) -> HttpResponse:
            # The account first: nobody writes audit rows into an account they cannot see.
            account = next((a for a in accounts_for(request.user) if a.id == account_id), None)
            if account is None:
                raise Http404("No such account")
            if not request.user.has_perm(f"dashboard.{permission}"):
                if audit_action is not None and request.method == "POST":
                    audit.record(
                        request.user,
                        account.id,
                        audit_action,
                        AuditEvent.Outcome.FORBIDDEN,
                        detail=f"missing permission {permission}",
                    )
                raise PermissionDenied
            return view(request, account, *args, **kwargs)

        return wrapper

    return decorator


class PermissionBackend(ModelBackend):
    """Django's, with a user's own and their roles' permissions read in one query with their
    granted accounts (``accounts.read_rights``), where Django takes two and the grants one."""

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, PERMISSIONS):
            read_rights(user_obj)
        return getattr(user_obj, PERMISSIONS)  # type: ignore[no-any-return]
