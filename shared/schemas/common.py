"""Shapes shared by every endpoint: problem details, pagination, and the text and time rules the
document states as JSON Schema beside the validators that enforce them."""
from __future__ import annotations

import copy
import re
from datetime import datetime
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

# Patterns in the document are ECMA-262 regular expressions (JSON Schema's dialect); the ones
# below read the same in Python's `re`, which the tests use to hold them to the validators.
# The characters Python's str.strip() removes (those for which str.isspace() is true), as the
# body of a character class.
WHITESPACE_CLASS = r"\x09-\x0d\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# C0 controls and DEL.
CONTROL_CLASS = r"\x00-\x1f\x7f"
NO_NUL_PATTERN = r"^[^\x00]*$"


def caseless(word: str) -> str:
    """`word` as a pattern matching it in any case: JSON Schema's patterns take no flags."""
    return "".join(f"[{ch.upper()}{ch.lower()}]" if ch.isalpha() else re.escape(ch) for ch in word)


class JsonSchemaKeywords:
    """Annotation metadata adding keywords to a type's JSON schema: the rule a validator of the
    same type enforces in code, stated where the document can show it."""

    def __init__(self, **keywords: Any) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(copy.deepcopy(self.keywords))
        return schema


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8.
    found = _UNSTORABLE.search(value)
    if found:
        raise ValueError("must not contain NUL characters" if found.group() == "\x00"
                         else "must be valid Unicode text (it contains a lone surrogate)")
    return value


# The pattern states the NUL; a lone surrogate (only a \ud800-style escape carries one) is refused too,
# which no pattern can state.
StoredText = Annotated[str, AfterValidator(_storable), JsonSchemaKeywords(pattern=NO_NUL_PATTERN)]

# RFC 3339's date-time, as JSON Schema's `format: date-time` means it: Pydantic alone would also take
# a number of seconds ("0.5"), a date without a time, a space for the T or a time without seconds.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")


def _rfc3339(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        try:
            # Parsed here, so that strict validation (of JSON bodies) sees a datetime, not a str.
            return datetime.fromisoformat(value.upper())
        except ValueError:
            pass  # a day or an hour out of range
    raise ValueError("must be an RFC 3339 date-time with a time zone, such as 2026-12-01T09:30:00Z")


DateTime = Annotated[AwareDatetime, BeforeValidator(_rfc3339)]


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
