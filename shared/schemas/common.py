"""Shapes shared by every endpoint: problem details and pagination."""
from __future__ import annotations

import copy
import re
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8.
    found = _UNSTORABLE.search(value)
    if found:
        raise ValueError("must not contain NUL characters" if found.group() == "\x00"
                         else "must be valid Unicode text (it contains a lone surrogate)")
    return value


StoredText = Annotated[str, AfterValidator(_storable)]


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every error response."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"example": {
        "type": "https://devora.dev/problems/not-found", "title": "Not found", "status": 404,
        "detail": "project not found"}})

    type: str = Field(description="A URI identifying the kind of problem; stable, safe to branch on")
    title: str = Field(description="A short summary of the kind of problem")
    status: int = Field(ge=400, le=599, description="The HTTP status code")
    detail: str | None = Field(None, description="What went wrong this time, for a person to read")
    instance: str | None = None


class FieldError(BaseModel):
    loc: list[str] = Field(description="Where the failing value is: body field names and list indexes, "
                                       "or the query or path parameter")
    msg: str
    type: str = Field(description="A machine-readable error kind, e.g. missing, string_too_long, value_error")


class ValidationProblem(Problem):
    """A 422 problem that lists every failing field."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"example": {
        "type": "https://devora.dev/problems/validation-error", "title": "Unprocessable content", "status": 422,
        "detail": "name: String should have at most 100 characters",
        "errors": [{"loc": ["name"], "msg": "String should have at most 100 characters",
                    "type": "string_too_long"}]}})

    errors: list[FieldError]


class ParameterModel(BaseModel):
    """Base for query-string and header models.

    flask-openapi3 asks these models for their JSON schema on every request; building
    it costs more than the rest of a cached read, so it is built once per class.
    """

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return copy.deepcopy(_schema_of(cls, args, tuple(sorted(kwargs.items()))))


@cache
def _schema_of(model: type[ParameterModel], args: tuple, kwargs: tuple) -> dict[str, Any]:
    return super(ParameterModel, model).model_json_schema(*args, **dict(kwargs))


class HeaderModel(ParameterModel):
    # flask-openapi3 passes every request header along; only the declared ones matter.
    model_config = ConfigDict(extra="ignore", populate_by_name=False)


class PageQuery(ParameterModel):
    model_config = ConfigDict(extra="forbid")

    page: int = Field(1, ge=1, le=100000)
    per_page: int = Field(20, ge=1, le=100)


class PageMeta(BaseModel):
    page: int
    per_page: int
    total: int
