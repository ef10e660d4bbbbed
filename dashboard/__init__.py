"""The spend dashboard: Django project and app in one package."""

from __future__ import annotations
