"""OpenAPI response declarations: every status a route can answer, as named problem responses."""
from __future__ import annotations

from typing import Any, NamedTuple

from pydantic import BaseModel

from shared.schemas.common import Problem, ValidationProblem
from web.problems import PROBLEM_MIME, TYPE_BASE

BEARER = [{"bearer": []}]
SECURITY_SCHEMES = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                               "description": "An access token from /api/v2/auth/login, /register or /refresh"}}
SCHEMA_REF = "#/components/schemas/"
RESPONSE_REF = "#/components/responses/"
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before trying again",
                                "schema": {"type": "integer", "minimum": 0}}}


class ProblemResponse(NamedTuple):
    name: str
    description: str
    slug: str
    title: str
    detail: str
    headers: dict[str, Any] | None = None


# One named response per error status; routes refer to them instead of repeating them.
PROBLEM_RESPONSES: dict[int, ProblemResponse] = {
    400: ProblemResponse("BadRequest", "The request cannot be read, e.g. its body is not valid JSON",
                         "invalid-json", "Bad request",
                         "the request body is not valid JSON: Expecting ',' delimiter at line 1, column 14 "
                         "(character 13)"),
    401: ProblemResponse("Unauthorized", "Missing, invalid or expired credentials", "unauthorized", "Unauthorized",
                         "a valid bearer access token is required",
                         {"WWW-Authenticate": {"description": "The scheme to authenticate with",
                                               "schema": {"type": "string"}}}),
    402: ProblemResponse("PlanLimitReached", "The plan's quota is used up", "plan-limit", "Plan limit reached",
                         "the free plan allows 1 generation job(s) at a time; wait for one to finish or cancel one."),
    403: ProblemResponse("Forbidden", "Authenticated, but not allowed", "forbidden", "Forbidden",
                         "this operation is reserved for administrators"),
    404: ProblemResponse("NotFound", "No such object (another user's objects are not found either)",
                         "not-found", "Not found", "project not found"),
    409: ProblemResponse("Conflict", "The request conflicts with the current state", "conflict", "Conflict",
                         "you already have a project named 'bookshop'"),
    413: ProblemResponse("PayloadTooLarge", "The request body is larger than allowed", "request-entity-too-large",
                         "Request entity too large", "the request body is larger than 8388608 bytes"),
    415: ProblemResponse("UnsupportedMediaType", "The body is not sent as application/json",
                         "unsupported-media-type", "Unsupported media type",
                         "send the request body as JSON with Content-Type: application/json (got text/plain)"),
    422: ProblemResponse("ValidationFailed", "Some fields are invalid; `errors` lists each one",
                         "validation-error", "Unprocessable content",
                         "name: String should have at most 100 characters"),
    429: ProblemResponse("RateLimited", "Rate limit exceeded; wait Retry-After seconds", "rate-limited",
                         "Too many requests", "rate limit exceeded: 5 per 1 minute", _RETRY_AFTER),
    502: ProblemResponse("BadGateway", "The billing provider refused the request", "billing-provider-error",
                         "Billing provider refused the request", "the billing provider refused the request"),
    503: ProblemResponse("ServiceUnavailable", "A dependency is unavailable; try again after Retry-After",
                         "service-unavailable", "Service unavailable", "not ready: broker unreachable",
                         _RETRY_AFTER),
}


def problem_response(status: int) -> dict[str, Any]:
    """A reference to the named problem response for `status`."""
    return {"$ref": RESPONSE_REF + PROBLEM_RESPONSES[status].name}


def problem_components() -> tuple[dict[str, Any], dict[str, Any]]:
    """The Problem schemas and the named problem responses, for the document's components."""
    schemas: dict[str, Any] = {}
    for model in (Problem, ValidationProblem):
        schema = model.model_json_schema(ref_template=SCHEMA_REF + "{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    responses: dict[str, Any] = {}
    for status, declared in PROBLEM_RESPONSES.items():
        model = ValidationProblem if status == 422 else Problem
        example: dict[str, Any] = {"type": TYPE_BASE + declared.slug, "title": declared.title, "status": status,
                                   "detail": declared.detail}
        if status == 422:
            example["errors"] = [{"loc": ["name"], "msg": "String should have at most 100 characters",
                                  "type": "string_too_long"}]
        response: dict[str, Any] = {"description": declared.description,
                                    "content": {PROBLEM_MIME: {"schema": {"$ref": SCHEMA_REF + model.__name__},
                                                               "example": example}}}
        if declared.headers:
            response["headers"] = declared.headers
        responses[declared.name] = response
    return schemas, responses


# Statuses any route may answer; the document adds 400, 413 and 415 where a route takes a body, and
# drops 422 where there is nothing to validate and 429 where no limit applies. An unexpected error is
# a 500 problem too, but no route is documented to give one: a 500 is a bug, not part of the contract.
COMMON_RESPONSES: dict[str, Any] = {str(s): problem_response(s) for s in (422, 429)}


def responses(success: dict[int, type[BaseModel] | dict[str, Any] | None], *errors: int) -> dict[str, Any]:
    """A route's responses: its success bodies plus problem+json for each error status."""
    declared: dict[str, Any] = dict(COMMON_RESPONSES)
    declared.update({str(code): body for code, body in success.items()})
    declared.update({str(code): problem_response(code) for code in errors})
    return declared


def binary(mime: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {mime: {"schema": {"type": "string", "format": "binary"}}}}
