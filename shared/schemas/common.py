"""Shapes shared by every endpoint: problem details and pagination."""
from __future__ import annotations

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


class PageQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    page: int = Field(1, ge=1, le=100000)
    per_page: int = Field(20, ge=1, le=100)


class PageMeta(BaseModel):
    page: int
    per_page: int
    total: int
