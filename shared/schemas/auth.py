"""Request and response bodies for accounts and tokens."""
from __future__ import annotations

import itertools
import re
import uuid
from datetime import datetime
from typing import Annotated

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from shared.schemas.common import JsonSchemaKeywords, StoredText, caseless

PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH = 8, 128
# Each rule is a character class the password must contain, and the reason given when it does not.
PASSWORD_CLASSES = (
    ("[A-Z]", "password must contain an uppercase letter"),
    ("[a-z]", "password must contain a lowercase letter"),
    ("[0-9]", "password must contain a digit"),
)
PASSWORD_RULES = tuple((re.compile(klass), rule) for klass, rule in PASSWORD_CLASSES)
# The same rules for the document: the classes in any order, and no NUL (see StoredText). Spelt out
# as every order rather than with lookaheads, which generators of test data handle poorly.
PASSWORD_PATTERN = r"^[^\x00]*(?:" + "|".join(r"[^\x00]*".join(order) for order in itertools.permutations(
    klass for klass, _ in PASSWORD_CLASSES)) + r")[^\x00]*$"


# email-validator refuses addresses at special-use domains (RFC 6761 and its successors) even
# though they are well formed, so the document names them.
SPECIAL_USE_DOMAIN_PATTERN = "[.@](?:" + "|".join(caseless(d) for d in SPECIAL_USE_DOMAIN_NAMES) + ")$"
Email = Annotated[EmailStr, JsonSchemaKeywords(
    **{"not": {"pattern": SPECIAL_USE_DOMAIN_PATTERN}},
    description="An email address; one at a special-use domain ("
                + ", ".join(f".{d}" for d in SPECIAL_USE_DOMAIN_NAMES) + ") is refused")]


EXAMPLE_EMAIL = "ada@example.com"
EXAMPLE_PASSWORD = "Correct-Horse-9"
EXAMPLE_REFRESH_TOKEN = "kB0yXr3dP7m1QvWn5tZ8sH2cJ6gL4aE9fU0iO3pR7wY"


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="forbid", openapi_extra={"example": {
        "email": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD, "full_name": "Ada Lovelace"}})

    email: Email
    password: StoredText = Field(min_length=PASSWORD_MIN_LENGTH, max_length=PASSWORD_MAX_LENGTH,
                                 json_schema_extra={"pattern": PASSWORD_PATTERN},
                                 description=f"{PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters with an "
                                             "uppercase letter (A-Z), a lowercase letter (a-z) and a digit (0-9)")
    full_name: StoredText | None = Field(None, max_length=200)

    @field_validator("password")
    @classmethod
    def _strong(cls, value: str) -> str:
        for pattern, rule in PASSWORD_RULES:
            if not pattern.search(value):
                raise ValueError(rule)
        return value


class LoginBody(BaseModel):
    model_config = ConfigDict(extra="forbid", openapi_extra={"example": {
        "email": EXAMPLE_EMAIL, "password": EXAMPLE_PASSWORD}})

    email: Email
    password: StoredText = Field(min_length=1, max_length=PASSWORD_MAX_LENGTH)


class RefreshBody(BaseModel):
    model_config = ConfigDict(extra="forbid", openapi_extra={"example": {"refresh_token": EXAMPLE_REFRESH_TOKEN}})

    refresh_token: str = Field(min_length=1, max_length=200)


class TokenResponse(BaseModel):
    # token_type always appears in the response, so the schema lists it as required.
    model_config = ConfigDict(json_schema_serialization_defaults_required=True, json_schema_extra={"example": {
        "access_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiI1YTZiN2M4ZCJ9.c2lnbmF0dXJl",
        "refresh_token": EXAMPLE_REFRESH_TOKEN, "token_type": "bearer", "expires_in": 900}})

    access_token: str
    refresh_token: str
    token_type: str = Field("bearer", pattern="^bearer$")
    expires_in: int = Field(description="Seconds until the access token expires")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"example": {
        "id": "5a6b7c8d-9e0f-4a1b-8c2d-3e4f5a6b7c8d", "email": EXAMPLE_EMAIL, "full_name": "Ada Lovelace",
        "role": "user", "created_at": "2026-12-01T09:30:00Z"}})

    id: uuid.UUID
    email: str
    full_name: str | None
    role: str
    created_at: datetime
