"""``make bench``: the load and fault benchmark (not a test). See :mod:`bench.run`."""

from __future__ import annotations
