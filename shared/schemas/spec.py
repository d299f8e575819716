"""The application spec users submit for code generation, validated on construction."""
from __future__ import annotations

import builtins
import keyword
import re
import sys
import unicodedata
from enum import StrEnum
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails

from shared.schemas.common import caseless


class GenerationKind(StrEnum):
    """What a generation run produces: an API project, or the API plus a static web page."""

    AGENTIC = "agentic"
    FULLSTACK = "fullstack"


FieldType = Literal["string", "text", "integer", "float", "boolean", "date", "datetime"]
FIELD_TYPES: tuple[str, ...] = get_args(FieldType)

MAX_ENTITIES = 20
MAX_FIELDS = 50
DEFAULT_STRING_MAX_LENGTH = 255

_APP_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_ENTITY_NAME = re.compile(r"[A-Z][A-Za-z0-9]{0,39}")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_PLURAL = re.compile(r"[a-z][a-z0-9_]{0,59}")


def _pattern(regex: re.Pattern[str]) -> dict[str, str]:
    """The JSON-schema form of a name rule the validators apply with fullmatch."""
    return {"pattern": f"^{regex.pattern}$"}


def _items(maximum: int) -> dict[str, int]:
    return {"minItems": 1, "maxItems": maximum}


# A spec the embedded generator turns into a working project (the API's example).
EXAMPLE_SPEC: dict[str, Any] = {
    "app_name": "bookshop",
    "description": "Books and their authors",
    "entities": [
        {"name": "Author", "fields": [{"name": "name", "type": "string", "max_length": 120},
                                      {"name": "born", "type": "date", "required": False}]},
        {"name": "Book", "fields": [{"name": "title", "type": "string"},
                                    {"name": "isbn", "type": "string", "unique": True, "max_length": 13},
                                    {"name": "price", "type": "float"},
                                    {"name": "in_print", "type": "boolean"}]},
    ],
}

# Reserved words of SQLite and standard SQL: as table or column names they would need quoting in
# every hand-written query against the generated schema, and break on other databases.
SQL_RESERVED: frozenset[str] = frozenset(
    """
    add all alter and any as asc autoincrement between by case cast check collate column commit
    constraint create cross current_date current_time current_timestamp database default
    deferrable delete desc distinct drop else end escape except exists foreign from full glob
    grant group having in index inner insert intersect into is isnull join left like limit
    natural not notnull null of offset on or order outer primary references regexp revoke right
    rollback select set table then to transaction trigger union unique update using values when
    where with
    """.split()
)
# Entity names are natural class names in code built on the project, so upper-case builtins
# (exceptions, True, None, ...) are refused rather than shadowed.
PYTHON_BUILTIN_CLASSES: frozenset[str] = frozenset(name for name in dir(builtins) if name[:1].isupper())
# Top-level names the generated project already uses for its own directories.
GENERATED_TOP_LEVEL = frozenset({"tests", "static"})
# SQLite keeps these as hidden column aliases of the primary key.
SQLITE_ROWID_ALIASES = frozenset({"rowid", "oid"})

# The name rules below for the document, as far as JSON Schema states them: the words each name
# may not be. Rules across values (duplicates, a plural derived from a name, page_size against
# max_page_size) are the validators' alone.
_SQL_WORD = "^(?:" + "|".join(caseless(word) for word in sorted(SQL_RESERVED)) + ")$"


def _named(regex: re.Pattern[str], refused: set[str], *others: dict[str, Any]) -> dict[str, Any]:
    words = {"enum": sorted(word for word in refused if regex.fullmatch(word))}
    return {**_pattern(regex), "not": {"anyOf": [words, *others]} if others else words}


_FIELD_NAME_RULES = _named(_FIELD_NAME, {"id", *keyword.kwlist, *SQL_RESERVED, *SQLITE_ROWID_ALIASES})
_ENTITY_NAME_RULES = _named(_ENTITY_NAME, {*keyword.kwlist, *PYTHON_BUILTIN_CLASSES}, {"pattern": _SQL_WORD})
_PLURAL_RULES = _named(_PLURAL, set(SQL_RESERVED), {"pattern": "^sqlite_"})
_APP_NAME_RULES = _named(_APP_NAME, {*keyword.kwlist, *keyword.softkwlist, *sys.stdlib_module_names,
                                     *GENERATED_TOP_LEVEL})
# _check_description: no control character but newline and tab (nor a lone surrogate, which no pattern states).
_DESCRIPTION_RULES = {"pattern": r"^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$"}


def snake_case(name: str) -> str:
    """Convert a PascalCase name to snake_case ("BookReview" -> "book_review", "HTTPLog" -> "http_log")."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


def pluralize(word: str) -> str:
    """Return a simple English plural of a snake_case word ("category" -> "categories")."""
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    return word + "s"


def _detail(loc: tuple[str | int, ...], message: str, value: Any) -> InitErrorDetails:
    return InitErrorDetails(type="value_error", loc=loc, input=value, ctx={"error": ValueError(message)})


def _raise_all(title: str, errors: list[InitErrorDetails]) -> None:
    # A ValidationError raised inside a validator keeps each error's own location (e.g. fields.2.name)
    # instead of pinning everything on the model, so clients can highlight the offending input.
    if errors:
        raise ValidationError.from_exception_data(title, errors)


def _check_description(value: str | None) -> str | None:
    if value is None:
        return None
    for char in value:
        category = unicodedata.category(char)
        if category == "Cs" or (category == "Cc" and char not in "\n\t"):
            raise ValueError("description must not contain control characters")
    return value.strip() or None


def _check_count(value: Any, singular: str, plural: str, maximum: int) -> Any:
    # Runs before item validation so an oversized list is rejected without validating every item.
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"at least one {singular} is required")
        if len(value) > maximum:
            raise ValueError(f"too many {plural}: {len(value)} (maximum {maximum})")
    return value


class FieldSpec(BaseModel):
    """One column of an entity; the generator adds the integer `id` itself."""

    # _check_max_length: a max_length only on a string field. (if/then, which generated client types
    # leave out, rather than an anyOf, which they would offer as an alternative to the properties.)
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "if": {"properties": {"type": {"not": {"const": "string"}}}},
        "then": {"properties": {"max_length": {"type": "null"}}}})

    name: str = Field(json_schema_extra=_FIELD_NAME_RULES,
                      description="snake_case; not id, a Python keyword or an SQL reserved word")
    type: FieldType
    required: bool = True
    unique: bool = False
    max_length: int | None = Field(None, ge=1, le=10000, description="Only for string fields; 255 if omitted")

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _FIELD_NAME.fullmatch(value):
            raise ValueError(
                f"invalid field name {value!r}: use snake_case (lowercase letters, digits and _, "
                "starting with a letter, at most 40 characters)"
            )
        if value == "id":
            raise ValueError("'id' is reserved: every entity gets an automatic integer 'id' primary key")
        if keyword.iskeyword(value):
            raise ValueError(f"{value!r} is a reserved word (Python keyword)")
        if value in SQL_RESERVED:
            raise ValueError(f"{value!r} is a reserved word (SQL)")
        if value in SQLITE_ROWID_ALIASES:
            raise ValueError(f"{value!r} is reserved by SQLite as an alias of the row id")
        return value

    @field_validator("type", mode="before")
    @classmethod
    def _check_type(cls, value: Any) -> Any:
        if not isinstance(value, str) or value not in FIELD_TYPES:
            raise ValueError(f"unknown field type {value!r}; allowed: {', '.join(sorted(FIELD_TYPES))}")
        return value

    @model_validator(mode="after")
    def _check_max_length(self) -> FieldSpec:
        if self.type != "string":
            if self.max_length is not None:
                message = f"max_length applies only to string fields, not to {self.type!r}"
                _raise_all("FieldSpec", [_detail(("max_length",), message, self.max_length)])
        elif self.max_length is None:
            self.max_length = DEFAULT_STRING_MAX_LENGTH
        return self


class EntitySpec(BaseModel):
    """A record type: it becomes a table and a `/api/<plural>` resource."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(json_schema_extra=_ENTITY_NAME_RULES,
                      description="PascalCase; not a Python keyword, built-in or SQL reserved word")
    plural: str | None = Field(None, json_schema_extra=_PLURAL_RULES,
                               description="URL segment and table name; derived from the name if omitted; not "
                                           "an SQL reserved word or starting with sqlite_")
    description: str | None = Field(None, max_length=500, json_schema_extra=_DESCRIPTION_RULES)
    fields: list[FieldSpec] = Field(json_schema_extra=_items(MAX_FIELDS))

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _ENTITY_NAME.fullmatch(value):
            raise ValueError(
                f"invalid entity name {value!r}: use PascalCase (start with an uppercase letter, "
                "then letters and digits only, at most 40 characters)"
            )
        if keyword.iskeyword(value):
            raise ValueError(f"{value!r} is a reserved word (Python keyword)")
        if value.lower() in SQL_RESERVED:
            raise ValueError(f"{value!r} is a reserved word (SQL)")
        if value in PYTHON_BUILTIN_CLASSES:
            raise ValueError(f"{value!r} clashes with a Python built-in name")
        return value

    @field_validator("plural")
    @classmethod
    def _check_plural(cls, value: str | None) -> str | None:
        if value is not None and not _PLURAL.fullmatch(value):
            raise ValueError(
                f"invalid plural {value!r}: use snake_case (lowercase letters, digits and _, "
                "starting with a letter, at most 60 characters)"
            )
        return value

    @field_validator("description")
    @classmethod
    def _check_description(cls, value: str | None) -> str | None:
        return _check_description(value)

    @field_validator("fields", mode="before")
    @classmethod
    def _check_field_count(cls, value: Any) -> Any:
        return _check_count(value, "field", "fields", MAX_FIELDS)

    @model_validator(mode="after")
    def _check_entity(self) -> EntitySpec:
        errors: list[InitErrorDetails] = []
        seen: dict[str, int] = {}
        for index, field in enumerate(self.fields):
            if field.name in seen:
                first = f"fields[{seen[field.name]}]"
                message = f"duplicate field name {field.name!r} in entity {self.name!r} (first at {first})"
                errors.append(_detail(("fields", index, "name"), message, field.name))
            else:
                seen[field.name] = index
        explicit = self.plural is not None
        plural = self.plural or pluralize(snake_case(self.name))
        loc = ("plural",) if explicit else ("name",)
        table = f"table name {plural!r}"
        if not explicit:
            table += f" (derived from {self.name!r}; set 'plural' to choose another)"
        if plural.startswith("sqlite_"):
            errors.append(_detail(loc, f"{table} uses the prefix 'sqlite_' reserved by SQLite", plural))
        elif plural in SQL_RESERVED:
            errors.append(_detail(loc, f"{table} is a reserved word (SQL)", plural))
        _raise_all("EntitySpec", errors)
        self.plural = plural
        return self


class SpecOptions(BaseModel):
    """Small knobs of the generated project."""

    model_config = ConfigDict(extra="forbid")

    page_size: int = Field(50, ge=1, le=1000, description="Items returned by list endpoints without ?limit=")
    max_page_size: int = Field(200, ge=1, le=1000, description="Largest accepted ?limit=")
    port: int = Field(8000, ge=1, le=65535, description="Default port of the generated server")

    @model_validator(mode="after")
    def _check_page_sizes(self) -> SpecOptions:
        if self.page_size > self.max_page_size:
            message = f"page_size ({self.page_size}) must not exceed max_page_size ({self.max_page_size})"
            _raise_all("SpecOptions", [_detail(("page_size",), message, self.page_size)])
        return self


class AppSpec(BaseModel):
    """A whole application: its package name and entities."""

    model_config = ConfigDict(extra="forbid")

    app_name: str = Field(json_schema_extra=_APP_NAME_RULES,
                          description="The generated package's name; not a Python keyword or standard module")
    description: str | None = Field(None, max_length=2000, json_schema_extra=_DESCRIPTION_RULES)
    entities: list[EntitySpec] = Field(json_schema_extra=_items(MAX_ENTITIES))
    options: SpecOptions = Field(default_factory=SpecOptions)

    @field_validator("app_name")
    @classmethod
    def _check_app_name(cls, value: str) -> str:
        if not _APP_NAME.fullmatch(value):
            raise ValueError(
                f"invalid app_name {value!r}: use a lowercase identifier (letters, digits and _, "
                "starting with a letter, at most 40 characters)"
            )
        if keyword.iskeyword(value) or keyword.issoftkeyword(value):
            raise ValueError(f"{value!r} is a reserved word (Python keyword)")
        if value in sys.stdlib_module_names:
            raise ValueError(f"{value!r} clashes with the Python standard library module of the same name")
        if value in GENERATED_TOP_LEVEL:
            raise ValueError(f"{value!r} clashes with the generated project's {value}/ directory")
        return value

    @field_validator("description")
    @classmethod
    def _check_description(cls, value: str | None) -> str | None:
        return _check_description(value)

    @field_validator("entities", mode="before")
    @classmethod
    def _check_entity_count(cls, value: Any) -> Any:
        return _check_count(value, "entity", "entities", MAX_ENTITIES)

    @model_validator(mode="after")
    def _check_unique_entities(self) -> AppSpec:
        errors: list[InitErrorDetails] = []
        names: dict[str, int] = {}
        plurals: dict[str, int] = {}
        for index, entity in enumerate(self.entities):
            key = entity.name.lower()
            if key in names:
                message = f"duplicate entity name {entity.name!r} (first at entities[{names[key]}])"
                errors.append(_detail(("entities", index, "name"), message, entity.name))
                continue
            names[key] = index
            plural = entity.plural or ""
            if plural in plurals:
                message = f"entities[{plurals[plural]}] already uses the plural {plural!r}; set a different 'plural'"
                errors.append(_detail(("entities", index, "plural"), message, plural))
            else:
                plurals[plural] = index
        _raise_all("AppSpec", errors)
        return self

    def entity(self, name: str) -> EntitySpec:
        """Return the entity called `name` (KeyError if absent)."""
        for entity in self.entities:
            if entity.name == name:
                return entity
        raise KeyError(name)
