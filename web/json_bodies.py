"""Request bodies: a route that takes JSON says so clearly when it gets something else.

flask-openapi3 reads a body with `get_json(silent=True)`, so malformed JSON, a missing
Content-Type and text/plain all reached the model as "no body" and came back as a 422
naming the model class. These checks run first and answer what is actually wrong.

flask-openapi3 then validates the parsed body in Pydantic's lax mode, which converts "5" to 5,
0 to false and 1700000000 to a date. The body is first validated strictly, as JSON, so a value
of the wrong JSON type is refused as the document's schema says it is (where JSON Schema, unlike
strict Pydantic, counts 2.0 as an integer).
"""
from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, get_type_hints

from flask import Flask, request
from pydantic import BaseModel, ValidationError

from shared.errors import DomainError, Unprocessable

ACCEPTED = "application/json"
# No request body of this API nests deeper than a few levels; a deeper one is an attack on the
# parser (Python's own recursion limit sits near 1,000 levels) or on what consumes the value.
MAX_DEPTH = 32


class InvalidJSON(DomainError):
    status, title, type_slug = 400, "Bad request", "invalid-json"


class UnsupportedMediaType(DomainError):
    status, title, type_slug = 415, "Unsupported media type", "unsupported-media-type"


def takes_json_body(view: Callable[..., Any]) -> bool:
    """Whether a flask-openapi3 view declares a `body` model."""
    return "body" in inspect.signature(inspect.unwrap(view)).parameters


def json_body_endpoints(app: Flask) -> set[str]:
    return {endpoint for endpoint, view in app.view_functions.items() if takes_json_body(view)}


def check_json_body() -> None:
    """415 unless the body is declared JSON, 400 unless it parses, 422 unless it is an object."""
    if not request.is_json:
        sent = request.mimetype or "no Content-Type"
        raise UnsupportedMediaType(f"send the request body as JSON with Content-Type: {ACCEPTED} (got {sent})",
                                   headers={"Accept": ACCEPTED}, accepted=[ACCEPTED])
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidJSON("the request body is empty; send a JSON object")
    try:
        value = json.loads(raw)
    except UnicodeDecodeError:
        raise InvalidJSON("the request body is not valid UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise InvalidJSON(f"the request body is not valid JSON: {error.msg} at line {error.lineno}, column "
                          f"{error.colno} (character {error.pos})", line=error.lineno, column=error.colno,
                          position=error.pos) from None
    except ValueError:
        # The one other ValueError json.loads raises: an integer literal longer than Python
        # converts (sys.get_int_max_str_digits(), 4300 digits by default).
        raise InvalidJSON(f"the request body is not acceptable JSON: a number in it is too long (more than "
                          f"{sys.get_int_max_str_digits()} digits)",
                          max_digits=sys.get_int_max_str_digits()) from None
    except RecursionError:
        too_deep = True  # deeper than the parser can go, so certainly deeper than allowed
    else:
        too_deep = _depth(value) > MAX_DEPTH
    if too_deep:
        raise InvalidJSON(f"the request body nests arrays and objects more than {MAX_DEPTH} levels deep",
                          max_depth=MAX_DEPTH)
    if not isinstance(value, dict):
        raise Unprocessable(f"the request body must be a JSON object, not {_json_kind(value)}",
                            errors=[{"loc": [], "msg": "Input should be a JSON object", "type": "model_type"}])


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in a parsed JSON value (iteratively: the value may be deep)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level <= MAX_DEPTH:
                stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def check_json_types(model: type[BaseModel]) -> None:
    """Validate the body as `model` in strict mode: a ValidationError (a 422) for a value of the wrong
    JSON type, which lax validation would convert."""
    value = json.loads(request.get_data(cache=True), parse_float=_number)
    try:
        model.model_validate_json(json.dumps(value), strict=True)
    except ValidationError as error:
        # Pydantic's JSON reader refuses what Python's takes, such as a lone surrogate (\ud800), which
        # the lax validation that follows refuses with the field it is in.
        if any(item["type"] != "json_invalid" for item in error.errors()):
            raise


def _number(text: str) -> int | float:
    # JSON Schema's integers include 2.0 and 2e3; strict Pydantic takes only 2 and 2000.
    value = float(text)
    return int(value) if value.is_integer() else value


def require_json_bodies(app: Flask) -> None:
    """Check the body of every route that declares one, after its blueprint's authentication."""
    for endpoint in json_body_endpoints(app):
        app.view_functions[endpoint] = _checked(app.view_functions[endpoint])


def _checked(view: Callable[..., Any]) -> Callable[..., Any]:
    model: type[BaseModel] = get_type_hints(inspect.unwrap(view))["body"]

    @wraps(view)
    def checked(*args: Any, **kwargs: Any) -> Any:
        check_json_body()
        check_json_types(model)
        return view(*args, **kwargs)

    return checked
