"""Request and response bodies for accounts and tokens."""
from __future__ import annotations

import re
import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from shared.schemas.common import StoredText

PASSWORD_RULES = (
    (re.compile(r"[A-Z]"), "password must contain an uppercase letter"),
    (re.compile(r"[a-z]"), "password must contain a lowercase letter"),
    (re.compile(r"[0-9]"), "password must contain a digit"),
)


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: StoredText = Field(min_length=8, max_length=128,
                          description="At least 8 characters with an uppercase letter, a lowercase letter and a digit")
    full_name: StoredText | None = Field(None, max_length=200)

    @field_validator("password")
    @classmethod
    def _strong(cls, value: str) -> str:
        for pattern, rule in PASSWORD_RULES:
            if not pattern.search(value):
                raise ValueError(rule)
        return value


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: StoredText = Field(min_length=1, max_length=128)


class RefreshBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=200)


class TokenResponse(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = Field("bearer", pattern="^bearer$")
    expires_in: int = Field(description="Seconds until the access token expires")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str
    full_name: str | None
    role: str
    created_at: datetime
