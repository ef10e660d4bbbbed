from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, register_converter

from dashboard.web import login, views
from dashboard.web.converters import AccountIdConverter
from dashboard.web.views import health
from dashboard.web.views import metrics as metrics_views

register_converter(AccountIdConverter, "account")
# Django admin's own login page counts failures and honours locks like the main one.
admin.site.login_form = login.ThrottledAdminAuthenticationForm

# The dashboard's pages, named in the "dashboard" namespace: {% url 'dashboard:overview' id %}.
pages = [
    path("", views.home, name="home"),
    path("accounts/", views.all_accounts, name="all_accounts"),
    path("digest/", views.digest, name="digest"),
    path("accounts/<account:account_id>/", views.overview, name="overview"),
    path("accounts/<account:account_id>/usage/", views.usage, name="usage"),
    path("accounts/<account:account_id>/usage.csv", views.usage_csv, name="usage_csv"),
    path("accounts/<account:account_id>/invoices/", views.invoices, name="invoices"),
    path("accounts/<account:account_id>/topups/", views.topups, name="topups"),
    path("accounts/<account:account_id>/topups/new/", views.topup_create, name="topup_create"),
    path("accounts/<account:account_id>/topups/check/", views.topup_check, name="topup_check"),
    path(
        "accounts/<account:account_id>/topups/<int:pk>/status/",
        views.topup_status,
        name="topup_status",
    ),
    path("accounts/<account:account_id>/activity/", views.activity, name="activity"),
    path("accounts/<account:account_id>/activity.csv", views.activity_csv, name="activity_csv"),
    path("accounts/<account:account_id>/auto-top-up/", views.auto_topup, name="auto_topup"),
    path(
        "accounts/<account:account_id>/auto-top-up/delete/",
        views.auto_topup_delete,
        name="auto_topup_delete",
    ),
    path(
        "accounts/<account:account_id>/spending-limit/", views.spending_limit, name="spending_limit"
    ),
    path(
        "accounts/<account:account_id>/spending-limit/delete/",
        views.spending_limit_delete,
        name="spending_limit_delete",
    ),
    path("accounts/<account:account_id>/alerts/", views.alerts, name="alerts"),
    path("accounts/<account:account_id>/alerts/<int:pk>/", views.alert_rule, name="alert_rule"),
    path(
        "accounts/<account:account_id>/alerts/<int:pk>/delete/",
        views.alert_rule_delete,
        name="alert_rule_delete",
    ),
]

urlpatterns = [
    # Probes for load balancers: public, cheap, exempt from the https redirect.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    # Prometheus: a bearer token (METRICS_TOKEN) or a staff login, else 401/403.
    path("metrics", metrics_views.metrics, name="metrics"),
    # Throttled: repeated failures lock out the user name and the address for a while.
    path("accounts/login/", login.LoginView.as_view(), name="login"),
    # Django's LogoutView accepts POST only, so a link or an image tag cannot log anyone out.
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include((pages, "dashboard"))),
    path("admin/", admin.site.urls),
]
