"""Links into Cloudflare's own dashboard, for what the API cannot do for us."""

from __future__ import annotations

#: AI Gateway in Cloudflare's dashboard, for one account. Cloudflare's docs send people to
#: it as dash.cloudflare.com/?to=/:account/ai/ai-gateway; they publish no deeper link to its
#: billing tab (credits, payment method, auto top-up), which is reached from there.
AI_GATEWAY = "https://dash.cloudflare.com/{account_id}/ai/ai-gateway"


def ai_gateway_url(account_id: str) -> str:
    return AI_GATEWAY.format(account_id=account_id)
