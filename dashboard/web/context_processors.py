from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from dashboard.demo import DEMO_USERS
from dashboard.services.accounts import accounts_for


def site(request: HttpRequest) -> dict[str, Any]:
    """What every page's layout needs: the product, demo mode and its logins."""
    return {
        "product_name": "AI Gateway spend",
        "demo_mode": settings.DEMO_MODE,
        "demo_users": DEMO_USERS if settings.DEMO_MODE else (),
        # For the account switcher; lazy, so pages that do not show it cost no query.
        "user_accounts": SimpleLazyObject(lambda: accounts_for(request.user)),
    }
