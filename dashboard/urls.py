from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, register_converter

from dashboard import views
from dashboard.converters import AccountIdConverter

register_converter(AccountIdConverter, "account")

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    # Django's LogoutView accepts POST only, so a link or an image tag cannot log anyone out.
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", views.all_accounts, name="all_accounts"),
    path("accounts/<account:account_id>/", views.overview, name="overview"),
    path("accounts/<account:account_id>/usage/", views.usage, name="usage"),
    path("accounts/<account:account_id>/usage.csv", views.usage_csv, name="usage_csv"),
    path("accounts/<account:account_id>/invoices/", views.invoices, name="invoices"),
    path("admin/", admin.site.urls),
]
