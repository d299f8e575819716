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
    model_config = ConfigDict(extra="forbid", openapi_extra={"example": {
        "code": "Yc2sL0q8VnR4tW7xB1mD5fH9jK3pZ6aE0gI2oU4yT8s"}})

    code: str = Field(min_length=1, max_length=200, description="The one-time code from the callback redirect")
