"""The limits the document states (patterns, lengths, excluded words) are the ones the validators enforce.

Each rule enforced in code is also stated as JSON Schema beside it; these properties hold the two
together: whatever a generated value, the schema (as jsonschema-rs reads it, in JSON Schema's own
regex dialect) accepts it exactly when the model does.
"""
from __future__ import annotations

import json
import keyword
import sys
from functools import cache
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.errors import Unprocessable
from shared.paths import check_file_path
from shared.schemas.admin import CustomerQuery, ReplayBody
from shared.schemas.auth import LoginBody, RegisterBody
from shared.schemas.common import StoredText
from shared.schemas.jobs import EmbeddedGenerateBody, GenerateBody
from shared.schemas.projects import FilePath, ProjectCreate, ProjectUpdate
from shared.schemas.spec import SQL_RESERVED, AppSpec, EntitySpec, FieldSpec
from shared.settings import Settings

# Characters the rules are about, and some others, so that generated text often meets the edges.
EDGES = "aZ9_-., /\\:\t\n\r\x0b\x0c\x1c\x1f\x00\x7f\x85\x9f\xa0\u2000\u3000\ufeffé€𝄞"
edgy_text = st.text(alphabet=st.sampled_from(EDGES) | st.characters(codec="utf-8"), max_size=40)
SETTINGS = settings(max_examples=400, deadline=None)


def schema_of(model: type[BaseModel], field: str) -> dict[str, Any]:
    schema = model.model_json_schema()
    return {**schema["properties"][field], "$defs": schema.get("$defs", {})}


def schema_accepts(schema: dict[str, Any], value: Any) -> bool:
    return _validator(json.dumps(schema, sort_keys=True)).is_valid(value)


@cache
def _validator(schema: str) -> Any:
    # Built once per schema: compiling a long pattern costs far more than matching it.
    return jsonschema_rs.validator_for(json.loads(schema))


def model_accepts(model: type[BaseModel], **values: Any) -> bool:
    try:
        model.model_validate(values)
    except ValidationError:
        return False
    return True


@SETTINGS
@given(st.text(alphabet=st.sampled_from("aZ9 x\x00\né"), min_size=6, max_size=12) | edgy_text)
@example("Correct-Horse-9")
@example("correct-horse-9")
@example("9\nCORRECT\nhorse")
def test_the_password_pattern_is_the_password_rules(password):
    schema = schema_of(RegisterBody, "password")
    assert schema_accepts(schema, password) == model_accepts(RegisterBody, email="ada@example.org",
                                                             password=password)


@SETTINGS
@given(edgy_text)
@example("  bookshop\n")
@example("book\tshop")
@example("\x85")
@example(" \u3000 ")
def test_the_project_name_pattern_is_the_name_rules(name):
    for model in (ProjectCreate, ProjectUpdate):
        assert schema_accepts(schema_of(model, "name"), name) == model_accepts(model, name=name), model


@given(edgy_text)
def test_stored_text_states_that_it_refuses_nul(text):
    class Note(BaseModel):
        text: StoredText

    assert schema_accepts(schema_of(Note, "text"), text) == model_accepts(Note, text=text)


@pytest.mark.parametrize("domain", ["example.test", "Mail.LOCAL", "localhost", "a.b.onion", "x.invalid",
                                    "in-addr.arpa", "example.com", "example.org", "testing.dev"])
def test_the_email_schema_refuses_the_special_use_domains_email_validator_refuses(domain):
    for model in (RegisterBody, LoginBody):
        email = f"ada@{domain}"
        refused_by_schema = not schema_accepts(schema_of(model, "email"), email)
        refused_by_model = not model_accepts(model, email=email, password="Correct-Horse-9")
        assert refused_by_schema == refused_by_model, (model, email)


PATH_LIMITS = {"max_depth": Settings.model_fields["max_path_depth"].default,
               "max_segment_length": Settings.model_fields["max_path_segment_length"].default}


def path_accepted(path: str) -> bool:
    try:
        check_file_path(path, **PATH_LIMITS)
    except Unprocessable:
        return False
    return True


@SETTINGS
@given(st.lists(edgy_text | st.sampled_from(["", ".", "..", "a" * 128, "a" * 129]), min_size=1, max_size=18)
       .map("/".join) | edgy_text)
@example("c:/boot.ini")
@example("a/./b")
def test_the_file_path_pattern_is_the_path_check(path):
    assert schema_accepts(schema_of(FilePath, "file_path"), path) == path_accepted(path)


@SETTINGS
@given(st.lists(st.sampled_from(["cus_1", "cus_Ab9", " ", "", "\u3000", "cus-1", "x" * 255, "x" * 256]),
                min_size=1, max_size=6).map(",".join))
@example(",".join(f"cus_{n}" for n in range(100)))
@example(",".join(f"cus_{n}" for n in range(101)))
def test_the_customer_ids_pattern_is_the_ids_check(ids):
    assert schema_accepts(schema_of(CustomerQuery, "ids"), ids) == model_accepts(CustomerQuery, ids=ids)


@pytest.mark.parametrize(("value", "accepted"), [
    ("2026-12-01T09:30:00Z", True), ("2026-12-01t09:30:00.123456789+05:30", True), ("2026-12-01T09:30:00z", True),
    ("0.5", False), ("1700000000", False), ("2026-12-01", False), ("2026-12-01 09:30:00Z", False),
    ("2026-12-01T09:30Z", False), ("2026-12-01T09:30:00", False), ("2026-02-30T00:00:00Z", False),
])
def test_date_times_are_rfc_3339_as_the_schema_says(value, accepted):
    assert model_accepts(ReplayBody, status="failed", dry_run=True, created_after=value) is accepted
    assert model_accepts(ReplayBody, status="failed", dry_run=True, created_after=1700000000) is False


def test_every_word_a_spec_name_may_not_be_is_refused_by_the_schema_too():
    spec_schema = AppSpec.model_json_schema()
    definitions = spec_schema["$defs"]

    def refused(definition: str, field: str, value: str) -> bool:
        return not schema_accepts({**definitions[definition]["properties"][field], "$defs": definitions}, value)

    for word in {*SQL_RESERVED, *keyword.kwlist, "id", "rowid", "oid"}:
        if word.islower():
            assert refused("FieldSpec", "name", word) and not model_accepts(FieldSpec, name=word, type="text")
    for word in {*SQL_RESERVED, "Select", "SELECT", "None", "ValueError"}:
        name = word[:1].upper() + word[1:]
        assert refused("EntitySpec", "name", name), name
        assert not model_accepts(EntitySpec, name=name, plural="things", fields=[{"name": "a", "type": "text"}])
    for word in ("re", "os", "json", "match", "tests", "static"):
        assert word in sys.stdlib_module_names or keyword.issoftkeyword(word) or word in ("tests", "static")
        assert not schema_accepts({**spec_schema["properties"]["app_name"]}, word)
    assert schema_accepts({**spec_schema["properties"]["app_name"]}, "bookshop")
    # max_length is for strings only, as the schema's anyOf says.
    field_schema = {"$ref": "#/$defs/FieldSpec", "$defs": definitions}
    for field, accepted in (({"name": "a", "type": "string", "max_length": 9}, True),
                            ({"name": "a", "type": "integer", "max_length": 9}, False),
                            ({"name": "a", "type": "integer", "max_length": None}, True)):
        assert schema_accepts(field_schema, field) is accepted is model_accepts(FieldSpec, **field)


def test_the_embedded_provider_document_requires_a_spec():
    assert EmbeddedGenerateBody.model_json_schema()["required"] == ["project_id", "spec"]
    schema = GenerateBody.model_json_schema()
    assert schema["required"] == ["project_id"]
    validate = jsonschema_rs.validator_for({**schema, "properties": {
        name: {} for name in schema["properties"]}}).is_valid
    project = "3f2b8c1e-6d4a-4f0e-9b7a-2c5d8e1f0a9b"
    assert not validate({"project_id": project}) and not validate({"project_id": project, "prompt": " \n"})
    assert validate({"project_id": project, "prompt": "a bookshop"}) and validate({"project_id": project, "spec": {}})
