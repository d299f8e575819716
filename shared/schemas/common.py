"""Shapes shared by every endpoint: problem details and pagination."""
from __future__ import annotations

import copy
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI reference identifying the problem type")
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = Field(None, description="Failing fields, for validation problems")


class QueryModel(BaseModel):
    """Base for query-string models.

    flask-openapi3 asks a query model for its JSON schema on every request; building
    it costs more than the rest of a cached read, so it is built once per class.
    """

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return copy.deepcopy(_schema_of(cls, args, tuple(sorted(kwargs.items()))))


@cache
def _schema_of(model: type[QueryModel], args: tuple, kwargs: tuple) -> dict[str, Any]:
    return super(QueryModel, model).model_json_schema(*args, **dict(kwargs))


class PageQuery(QueryModel):

    page: int = Field(1, ge=1, le=100000)
    per_page: int = Field(20, ge=1, le=100)


class PageMeta(BaseModel):
    page: int
    per_page: int
    total: int
