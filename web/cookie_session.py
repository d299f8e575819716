"""Flask's cookie session, opened only for requests that carry its cookie.

The session only carries the OAuth flow's state between the redirect to a provider and its
callback; every other request is bearer-authenticated and has no cookie. Flask's own
interface builds a signing serializer on every request to find that out.
"""
from __future__ import annotations

from flask import Flask, Request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface


class CookieSessionInterface(SecureCookieSessionInterface):
    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if self.get_cookie_name(app) not in request.cookies:
            # A new, empty session: written back (and signed) only if a view puts something in it.
            return self.session_class()
        return super().open_session(app, request)
