"""The live job event stream: a small aiohttp process serving GET /api/v2/events.

It runs apart from the gunicorn API (`devora stream`), so open streams take none of the
API's request capacity; it imports `shared` only.
"""
from eventstream.app import create_app

__all__ = ["create_app"]
