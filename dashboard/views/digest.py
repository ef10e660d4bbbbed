"""The weekly digest page: anyone who may see an account can ask for the digest, or stop it.

The digest goes to the user's own address only: a typed-in address would let anyone who may
see an account mail its figures anywhere, and keep doing so after losing the role.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from dashboard.models import DigestSubscription
from dashboard.services import digest as service

NO_ADDRESS = (
    "You have no email address on the dashboard, so no digest can be sent to you: "
    "ask a billing admin to add one to your user."
)


class DigestForm(forms.Form):
    wanted = forms.BooleanField(label="Email me a digest every Monday morning", required=False)

    def __init__(self, *args: Any, address: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.address = address

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("wanted") and not self.address:
            raise forms.ValidationError(NO_ADDRESS)
        return data


@require_http_methods(["GET", "POST"])
@permission_required(service.PERMISSION, raise_exception=True)
def digest(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)  # login required everywhere
    subscription = DigestSubscription.objects.filter(user=user).first()
    if request.method == "POST":
        form = DigestForm(request.POST, address=user.email)
        if form.is_valid():
            if form.cleaned_data["wanted"]:
                DigestSubscription.objects.get_or_create(user=user)
                messages.success(request, f"The weekly digest goes to {user.email}.")
            else:
                DigestSubscription.objects.filter(user=user).delete()
                messages.success(request, "No more weekly digest.")
            return redirect("digest")
    else:
        form = DigestForm(initial={"wanted": subscription is not None}, address=user.email)
    context = {"form": form, "subscription": subscription, "no_address": NO_ADDRESS}
    return render(request, "dashboard/digest.html", context)
