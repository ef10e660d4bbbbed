"""The views, one module per page; each checks its permission (dashboard.web.access)."""
