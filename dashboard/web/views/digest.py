"""The weekly digest page: ask for the digest, or stop it. It goes to the user's own address
only: a typed-in one would let anyone mail an account's figures anywhere, even after losing
the role."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import permission_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from dashboard.services import digest as service
from dashboard.web.forms import NO_DIGEST_ADDRESS, DigestForm


@require_http_methods(["GET", "POST"])
@permission_required(service.PERMISSION, raise_exception=True)
def digest(request: HttpRequest) -> HttpResponse:
    user = request.user
    assert isinstance(user, User)  # login required everywhere
    subscription = service.subscription(user)
    if request.method == "POST":
        form = DigestForm(request.POST, address=user.email)
        if form.is_valid():
            wanted = form.cleaned_data["wanted"]
            service.set_wanted(user, wanted)
            messages.success(
                request,
                f"The weekly digest goes to {user.email}." if wanted else "No more weekly digest.",
            )
            return redirect("dashboard:digest")
    else:
        form = DigestForm(initial={"wanted": subscription is not None}, address=user.email)
    context = {"form": form, "subscription": subscription, "no_address": NO_DIGEST_ADDRESS}
    return render(request, "dashboard/digest.html", context)
