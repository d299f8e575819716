"""Periodic jobs as plain data keyed by task name; run exactly one beat."""
from __future__ import annotations

BEAT_SCHEDULE: dict[str, dict] = {}
