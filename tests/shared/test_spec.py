"""Validation rules of the generation spec (shared.schemas.spec)."""
from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from shared.schemas.spec import AppSpec, GenerationKind, pluralize, snake_case

SAMPLE: dict[str, Any] = {
    "app_name": "bookshop",
    "entities": [
        {
            "name": "Book",
            "fields": [{"name": "title", "type": "string"}, {"name": "year", "type": "integer"}],
        }
    ],
}


def spec_with(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(SAMPLE)
    data.update(changes)
    return data


def errors_of(data: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        AppSpec.model_validate(data)
    return [(tuple(error["loc"]), error["msg"]) for error in caught.value.errors()]


def single_error(data: dict[str, Any]) -> tuple[tuple[Any, ...], str]:
    errors = errors_of(data)
    assert len(errors) == 1, errors
    return errors[0]


def book_with_fields(*fields: dict[str, Any]) -> dict[str, Any]:
    return spec_with(entities=[{"name": "Book", "fields": list(fields)}])


def test_sample_spec_is_accepted_with_defaults() -> None:
    spec = AppSpec.model_validate(SAMPLE)
    book = spec.entities[0]
    assert spec.app_name == "bookshop"
    assert book.plural == "books"
    assert [(f.name, f.type, f.required, f.unique) for f in book.fields] == [
        ("title", "string", True, False),
        ("year", "integer", True, False),
    ]
    assert book.fields[0].max_length == 255
    assert book.fields[1].max_length is None
    assert spec.options.page_size == 50
    assert spec.entity("Book") is book


def test_full_spec_round_trips() -> None:
    data = {
        "app_name": "library_2",
        "description": "Books and people.",
        "options": {"page_size": 20, "max_page_size": 100, "port": 9000},
        "entities": [
            {
                "name": "Person",
                "plural": "people",
                "description": "Someone who borrows books.",
                "fields": [
                    {"name": "email", "type": "string", "unique": True, "max_length": 120},
                    {"name": "bio", "type": "text", "required": False},
                    {"name": "born_on", "type": "date"},
                    {"name": "joined_at", "type": "datetime"},
                    {"name": "score", "type": "float"},
                    {"name": "visits", "type": "integer"},
                    {"name": "active", "type": "boolean"},
                ],
            },
            {"name": "Category", "fields": [{"name": "label", "type": "string"}]},
        ],
    }
    spec = AppSpec.model_validate(data)
    assert [e.plural for e in spec.entities] == ["people", "categories"]
    assert AppSpec.model_validate(spec.model_dump()) == spec


def test_json_schema_can_be_published() -> None:
    schema = AppSpec.model_json_schema()
    assert schema["required"] == ["app_name", "entities"]
    field_schema = schema["$defs"]["FieldSpec"]["properties"]["type"]
    assert field_schema["enum"] == ["string", "text", "integer", "float", "boolean", "date", "datetime"]


def test_naming_helpers() -> None:
    assert snake_case("BookReview") == "book_review"
    assert snake_case("HTTPLog") == "http_log"
    assert [pluralize(w) for w in ("book", "category", "address", "day", "match")] == [
        "books",
        "categories",
        "addresses",
        "days",
        "matches",
    ]


def test_generation_kinds() -> None:
    assert [kind.value for kind in GenerationKind] == ["agentic", "fullstack"]
    assert GenerationKind("fullstack") == "fullstack"


@pytest.mark.parametrize(
    ("app_name", "fragment"),
    [
        ("Bookshop", "invalid app_name 'Bookshop'"),
        ("book-shop", "invalid app_name 'book-shop'"),
        ("1shop", "invalid app_name '1shop'"),
        ("a" * 41, "at most 40 characters"),
        ("class", "'class' is a reserved word (Python keyword)"),
        ("json", "'json' clashes with the Python standard library"),
        ("tests", "clashes with the generated project's tests/ directory"),
    ],
)
def test_bad_app_name(app_name: str, fragment: str) -> None:
    loc, msg = single_error(spec_with(app_name=app_name))
    assert loc == ("app_name",)
    assert fragment in msg


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("book", "invalid entity name 'book': use PascalCase"),
        ("Book_Review", "invalid entity name 'Book_Review'"),
        ("Order", "'Order' is a reserved word (SQL)"),
        ("Group", "'Group' is a reserved word (SQL)"),
        ("Select", "'Select' is a reserved word (SQL)"),
        ("None", "'None' is a reserved word (Python keyword)"),
        ("Exception", "'Exception' clashes with a Python built-in name"),
    ],
)
def test_bad_entity_name(name: str, fragment: str) -> None:
    loc, msg = single_error(spec_with(entities=[{"name": name, "fields": [{"name": "x", "type": "string"}]}]))
    assert loc == ("entities", 0, "name")
    assert fragment in msg


def test_derived_plural_that_is_reserved_points_at_the_name() -> None:
    loc, msg = single_error(spec_with(entities=[{"name": "Value", "fields": [{"name": "x", "type": "string"}]}]))
    assert loc == ("entities", 0, "name")
    assert "table name 'values' (derived from 'Value'" in msg and "reserved word (SQL)" in msg


def test_bad_explicit_plural() -> None:
    loc, msg = single_error(
        spec_with(entities=[{"name": "Book", "plural": "Books!", "fields": [{"name": "x", "type": "string"}]}])
    )
    assert loc == ("entities", 0, "plural")
    assert "invalid plural 'Books!'" in msg


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("id", "'id' is reserved: every entity gets an automatic integer 'id' primary key"),
        ("class", "'class' is a reserved word (Python keyword)"),
        ("select", "'select' is a reserved word (SQL)"),
        ("order", "'order' is a reserved word (SQL)"),
        ("from", "'from' is a reserved word"),
        ("rowid", "'rowid' is reserved by SQLite"),
        ("Title", "invalid field name 'Title': use snake_case"),
        ("first name", "invalid field name 'first name'"),
    ],
)
def test_bad_field_name(name: str, fragment: str) -> None:
    data = book_with_fields({"name": "title", "type": "string"}, {"name": name, "type": "string"})
    loc, msg = single_error(data)
    assert loc == ("entities", 0, "fields", 1, "name")
    assert fragment in msg


def test_unknown_field_type_lists_allowed_types() -> None:
    loc, msg = single_error(book_with_fields({"name": "price", "type": "money"}))
    assert loc == ("entities", 0, "fields", 0, "type")
    assert "unknown field type 'money'; allowed: boolean, date, datetime, float, integer, string, text" in msg


def test_max_length_only_for_strings() -> None:
    loc, msg = single_error(book_with_fields({"name": "year", "type": "integer", "max_length": 4}))
    assert loc == ("entities", 0, "fields", 0, "max_length")
    assert "max_length applies only to string fields" in msg


def test_duplicate_entity_names_are_case_insensitive() -> None:
    entity = {"name": "Book", "fields": [{"name": "title", "type": "string"}]}
    loc, msg = single_error(spec_with(entities=[entity, dict(entity, name="BOOK")]))
    assert loc == ("entities", 1, "name")
    assert "duplicate entity name 'BOOK' (first at entities[0])" in msg


def test_duplicate_plural() -> None:
    first = {"name": "Person", "plural": "people", "fields": [{"name": "x", "type": "string"}]}
    second = {"name": "Human", "plural": "people", "fields": [{"name": "x", "type": "string"}]}
    loc, msg = single_error(spec_with(entities=[first, second]))
    assert loc == ("entities", 1, "plural")
    assert "already uses the plural 'people'" in msg


def test_duplicate_field_names() -> None:
    data = book_with_fields(
        {"name": "title", "type": "string"}, {"name": "year", "type": "integer"}, {"name": "title", "type": "text"}
    )
    loc, msg = single_error(data)
    assert loc == ("entities", 0, "fields", 2, "name")
    assert "duplicate field name 'title' in entity 'Book' (first at fields[0])" in msg


def test_empty_and_oversized_lists() -> None:
    assert single_error(spec_with(entities=[])) == (("entities",), "Value error, at least one entity is required")
    loc, msg = single_error(book_with_fields())
    assert (loc, msg) == (("entities", 0, "fields"), "Value error, at least one field is required")
    many = [{"name": f"Thing{i}", "fields": [{"name": "x", "type": "string"}]} for i in range(21)]
    loc, msg = single_error(spec_with(entities=many))
    assert loc == ("entities",) and "too many entities: 21 (maximum 20)" in msg
    fields = [{"name": f"f{i}", "type": "string"} for i in range(51)]
    loc, msg = single_error(book_with_fields(*fields))
    assert loc == ("entities", 0, "fields") and "too many fields: 51 (maximum 50)" in msg


def test_unknown_keys_are_forbidden() -> None:
    loc, _ = single_error(book_with_fields({"name": "title", "type": "string", "default": "x"}))
    assert loc == ("entities", 0, "fields", 0, "default")
    loc, _ = single_error(spec_with(version=2))
    assert loc == ("version",)


def test_options_are_checked() -> None:
    loc, msg = single_error(spec_with(options={"page_size": 300, "max_page_size": 100}))
    assert loc == ("options", "page_size")
    assert "page_size (300) must not exceed max_page_size (100)" in msg


def test_descriptions_reject_control_characters() -> None:
    loc, msg = single_error(spec_with(description="bad\x07bell"))
    assert loc == ("description",)
    assert "control characters" in msg


def test_several_problems_are_reported_together() -> None:
    data = spec_with(
        app_name="Bad Name",
        entities=[{"name": "Book", "fields": [{"name": "class", "type": "money"}, {"name": "id", "type": "string"}]}],
    )
    locs = {loc for loc, _ in errors_of(data)}
    assert locs == {
        ("app_name",),
        ("entities", 0, "fields", 0, "name"),
        ("entities", 0, "fields", 0, "type"),
        ("entities", 0, "fields", 1, "name"),
    }
