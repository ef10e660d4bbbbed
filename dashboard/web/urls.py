from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpResponse
from django.urls import URLPattern, include, path, register_converter
from django.urls.converters import StringConverter

from dashboard.web import login
from dashboard.web.views import (
    activity,
    alerts,
    digest,
    health,
    invoices,
    metrics,
    overview,
    rules,
    topups,
    usage,
)


class AccountIdConverter(StringConverter):
    """A Cloudflare account id, so ``/accounts/login/`` is never read as an account. Whether it
    is configured is the view's question (404 if not)."""

    regex = settings.ACCOUNT_ID_RE.pattern


register_converter(AccountIdConverter, "account")
# Django admin's own login page counts failures and honours locks like the main one.
admin.site.login_form = login.ThrottledAdminAuthenticationForm


def account_page(route: str, view: Callable[..., HttpResponse], name: str) -> URLPattern:
    return path(f"accounts/<account:account_id>/{route}", view, name=name)


# The dashboard's pages, named in the "dashboard" namespace: {% url 'dashboard:overview' id %}.
pages = [
    path("", overview.home, name="home"),
    path("accounts/", overview.all_accounts, name="all_accounts"),
    path("digest/", digest.digest, name="digest"),
    account_page("", overview.overview, "overview"),
    account_page("usage/", usage.usage, "usage"),
    account_page("usage.csv", usage.usage_csv, "usage_csv"),
    account_page("invoices/", invoices.invoices, "invoices"),
    account_page("topups/", topups.topups, "topups"),
    account_page("topups/new/", topups.topup_create, "topup_create"),
    account_page("topups/check/", topups.topup_check, "topup_check"),
    account_page("topups/<int:pk>/status/", topups.topup_status, "topup_status"),
    account_page("activity/", activity.activity, "activity"),
    account_page("activity.csv", activity.activity_csv, "activity_csv"),
    account_page("auto-top-up/", rules.auto_topup, "auto_topup"),
    account_page("auto-top-up/delete/", rules.auto_topup_delete, "auto_topup_delete"),
    account_page("spending-limit/", rules.spending_limit, "spending_limit"),
    account_page("spending-limit/delete/", rules.spending_limit_delete, "spending_limit_delete"),
    account_page("alerts/", alerts.alerts, "alerts"),
    account_page("alerts/<int:pk>/", alerts.alert_rule, "alert_rule"),
    account_page("alerts/<int:pk>/delete/", alerts.alert_rule_delete, "alert_rule_delete"),
]

urlpatterns = [
    # Probes for load balancers: public, cheap, exempt from the https redirect.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus: a bearer token (METRICS_TOKEN) or a staff login, else 401/403.
    path("metrics", metrics.metrics, name="metrics"),
    # Throttled: repeated failures lock out the user name and the address for a while.
    path("accounts/login/", login.LoginView.as_view(), name="login"),
    # Django's LogoutView accepts POST only, so a link or an image tag cannot log anyone out.
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include((pages, "dashboard"))),
    path("admin/", admin.site.urls),
]
