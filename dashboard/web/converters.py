from __future__ import annotations


class AccountIdConverter:
    """A Cloudflare account id: 32 lowercase hex characters, so ``/accounts/login/`` is never
    read as an account. Whether it is configured is the view's question (404 if not)."""

    regex = "[0-9a-f]{32}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
