"""Bodies of the OAuth login endpoints."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ProviderOut(BaseModel):
    name: str
    authorize_url: str


class ProviderList(BaseModel):
    items: list[ProviderOut]


class ProviderPath(BaseModel):
    provider: str = Field(pattern="^[a-z]{1,20}$", description="google or github, when configured")


class ExchangeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=1, max_length=200, description="The one-time code from the callback redirect")
