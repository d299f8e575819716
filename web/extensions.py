"""Unbound extensions, bound to the app in the factory."""
from __future__ import annotations

from flask_caching import Cache
from flask_limiter import Limiter

from web.auth import rate_limit_key

limiter = Limiter(rate_limit_key)
cache = Cache()
