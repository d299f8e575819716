"""OpenAPI response declarations, so the document lists every status a route can answer."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from shared.schemas.common import Problem
from web.problems import PROBLEM_MIME

BEARER = [{"bearer": []}]
SECURITY_SCHEMES = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}

_PROBLEM_SCHEMA = Problem.model_json_schema()
_DESCRIPTIONS = {
    400: "Bad request", 401: "Missing or invalid credentials", 402: "Plan limit reached",
    403: "Forbidden", 404: "Not found", 409: "Conflict", 413: "Request body too large",
    415: "Unsupported media type", 422: "Validation failed", 429: "Rate limit exceeded",
    500: "Internal server error", 503: "Service unavailable",
}
_HEADER_DOCS = {
    429: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
}


def problem_response(status: int) -> dict[str, Any]:
    response: dict[str, Any] = {"description": _DESCRIPTIONS.get(status, "Error"),
                                "content": {PROBLEM_MIME: {"schema": _PROBLEM_SCHEMA}}}
    if status in _HEADER_DOCS:
        response["headers"] = _HEADER_DOCS[status]
    return response


# Statuses any route may answer: validation, limits, body size and the catch-all.
COMMON_RESPONSES: dict[str, Any] = {str(s): problem_response(s) for s in (413, 415, 422, 429, 500)}


def responses(success: dict[int, type[BaseModel] | dict[str, Any] | None], *errors: int) -> dict[str, Any]:
    """A route's responses: its success bodies plus problem+json for each error status."""
    declared: dict[str, Any] = dict(COMMON_RESPONSES)
    declared.update({str(code): body for code, body in success.items()})
    declared.update({str(code): problem_response(code) for code in errors})
    return declared


def binary(mime: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {mime: {"schema": {"type": "string", "format": "binary"}}}}
