"""The dashboard's own tables.

None yet: balances, invoices and usage live at Cloudflare and are read through
``billing_api``. Roles (groups with permissions) and the audit log come with later issues.
"""

from __future__ import annotations
