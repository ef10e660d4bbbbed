"""The weekly digest page: anyone who may see an account can ask for the digest, or stop it."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from dashboard.models import DigestSubscription


class DigestForm(forms.Form):
    wanted = forms.BooleanField(label="Email me a digest every Monday morning", required=False)
    email = forms.EmailField(
        label="To", required=False, error_messages={"invalid": "Enter an email address."}
    )

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("wanted") and not data.get("email") and "email" not in self.errors:
            self.add_error("email", "Enter the address to send the digest to.")
        return data


@require_http_methods(["GET", "POST"])
@permission_required("dashboard.view_overview", raise_exception=True)
def digest(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)  # login required everywhere
    subscription = DigestSubscription.objects.filter(user=user).first()
    if request.method == "POST":
        form = DigestForm(request.POST)
        if form.is_valid():
            if form.cleaned_data["wanted"]:
                DigestSubscription.objects.update_or_create(
                    user=user, defaults={"email": form.cleaned_data["email"]}
                )
                messages.success(
                    request, f"The weekly digest goes to {form.cleaned_data['email']}."
                )
            else:
                DigestSubscription.objects.filter(user=user).delete()
                messages.success(request, "No more weekly digest.")
            return redirect("digest")
    else:
        form = DigestForm(
            initial={
                "wanted": subscription is not None,
                "email": subscription.email if subscription else user.email,
            }
        )
    return render(request, "dashboard/digest.html", {"form": form, "subscription": subscription})
