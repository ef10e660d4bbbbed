"""What views need, one module per subject, composed from Cloudflare's answers through
``dashboard.infra.upstream`` and our own tables."""

from __future__ import annotations

from dashboard.services.balance import balance_card

__all__ = ["balance_card"]
