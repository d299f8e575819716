"""Domain errors. The web layer renders each as an RFC 9457 problem with its status."""
from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A failure the client can act on; `status` and `title` shape the problem response."""

    status = 400
    title = "Bad request"
    type_slug = "bad-request"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, type_slug: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if type_slug:
            self.type_slug = type_slug
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra


class Unauthorized(DomainError):
    status, title, type_slug = 401, "Unauthorized", "unauthorized"


class PaymentRequired(DomainError):
    status, title, type_slug = 402, "Plan limit reached", "plan-limit"


class ServiceUnavailable(DomainError):
    status, title, type_slug = 503, "Service unavailable", "service-unavailable"


class Forbidden(DomainError):
    status, title, type_slug = 403, "Forbidden", "forbidden"


class NotFound(DomainError):
    status, title, type_slug = 404, "Not found", "not-found"


class Conflict(DomainError):
    status, title, type_slug = 409, "Conflict", "conflict"


class Unprocessable(DomainError):
    status, title, type_slug = 422, "Unprocessable content", "validation-error"

    def __init__(self, detail: str, *, field: str | None = None, **kwargs: Any) -> None:
        if field and "errors" not in kwargs:
            kwargs["errors"] = [{"loc": field.split("."), "msg": detail, "type": "value_error"}]
        super().__init__(detail, **kwargs)
