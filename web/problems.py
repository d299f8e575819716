"""The one error envelope: RFC 9457 problem details for every error the API returns."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, json, request
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from shared.errors import DomainError
from shared.integrations.stripe_gateway import StripeGatewayError, StripeTransient
from shared.problem_details import PROBLEM_MIME, TYPE_BASE, problem_body

logger = logging.getLogger(__name__)
__all__ = ["PROBLEM_MIME", "TYPE_BASE", "problem", "refuse_invalid_requests", "refuses_invalid_requests_itself",
           "register_error_handlers", "validation_problem"]


def problem(status: int, title: str, detail: str | None = None, *, slug: str | None = None,
            errors: list[dict[str, Any]] | None = None, headers: dict[str, str] | None = None,
            **extra: Any) -> Response:
    """A problem+json response."""
    body = problem_body(status, title, detail, slug=slug, errors=errors, **extra)
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIME)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# Endpoints that refuse a request failing its declared models with a problem of their own
# (given the failing fields and a summary of them) instead of the 422; see refuse_invalid_requests.
_OWN_REFUSALS: dict[str, Callable[[list[dict[str, Any]], str], Response]] = {}


def refuse_invalid_requests(endpoint: str, answer: Callable[[list[dict[str, Any]], str], Response]) -> None:
    """Answer requests to `endpoint` that fail validation with `answer(errors, detail)`, not a 422."""
    _OWN_REFUSALS[endpoint] = answer


def refuses_invalid_requests_itself(endpoint: str) -> bool:
    """Whether `endpoint` never answers 422 for a request that fails validation."""
    return endpoint in _OWN_REFUSALS


def validation_problem(error: ValidationError) -> Response:
    """Pydantic errors as a 422 listing each failing field (flask-openapi3's callback)."""
    errors = [{"loc": [str(part) for part in item["loc"]], "msg": _message(item), "type": item["type"]}
              for item in error.errors(include_url=False, include_input=False, include_context=False)]
    detail = "; ".join(f"{'.'.join(e['loc']) or 'body'}: {e['msg']}" for e in errors[:5])
    own = _OWN_REFUSALS.get(request.endpoint or "")
    if own is not None:
        return own(errors, detail)
    return problem(422, "Unprocessable content", detail, slug="validation-error", errors=errors)


# Pydantic's wording for these names the model class; the client only sees JSON.
_NOT_AN_OBJECT = frozenset({"model_type", "model_attributes_type", "dict_type"})


def _message(item: dict[str, Any]) -> str:
    if item["type"] in _NOT_AN_OBJECT:
        return "Input should be a JSON object"
    # Pydantic prefixes messages of custom validators with "Value error, ".
    return str(item["msg"]).removeprefix("Value error, ")


def _http_detail(error: HTTPException) -> str | None:
    """Werkzeug's stock sentences are replaced by ones that say what this request did wrong."""
    if error.description != type(error).description:
        return error.description
    if error.code == 404:
        return f"nothing is served at {request.path}"
    if error.code == 413:
        return f"the request body is larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes"
    return error.description


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        return problem(error.status, error.title, error.detail, slug=error.type_slug,
                       errors=error.errors, headers=error.headers, **error.extra)

    @app.errorhandler(StripeGatewayError)
    def _billing_provider(error: StripeGatewayError) -> Response:
        # The gateway already logged the cause without secrets; the client gets no internals.
        if isinstance(error, StripeTransient):
            return problem(503, "Billing provider unavailable", "the billing provider did not answer; try again shortly",
                           slug="billing-provider-unavailable", headers={"Retry-After": "5"})
        return problem(502, "Billing provider refused the request", "the billing provider refused the request",
                       slug="billing-provider-error")

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        # Sentence case, like the domain errors' titles ("Not found", not "Not Found").
        title = error.name[:1] + error.name[1:].lower()
        response = problem(error.code or 500, title, _http_detail(error), slug=error.name.lower().replace(" ", "-"))
        if error.code == 405 and error.valid_methods:
            response.headers["Allow"] = ", ".join(error.valid_methods)
        return response

    @app.errorhandler(ValidationError)
    def _validation(error: ValidationError) -> Response:
        return validation_problem(error)

    @app.errorhandler(OperationalError)
    def _database_unavailable(error: OperationalError) -> Response:
        # A restart, a failover or a lock held too long: nothing was stored, so the client may
        # send the same request again (with its Idempotency-Key, where it has one).
        logger.warning("database unavailable on %s %s: %s", request.method, request.path,
                       type(error.orig).__name__ if error.orig else type(error).__name__)
        return problem(503, "Service unavailable", "the database is unavailable for a moment; try again shortly",
                       slug="database-unavailable", headers={"Retry-After": "2"})

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error on %s %s", request.method, request.path)
        return problem(500, "Internal server error", "an unexpected error occurred; it has been logged",
                       slug="internal-error")
