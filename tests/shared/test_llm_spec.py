"""Reading a model's plan answer as an AppSpec, and the errors sent back when it is not one."""
from __future__ import annotations

import json

from shared.generator.llm_spec import constraint_errors, correction_message, read_spec, response_format
from shared.schemas.spec import AppSpec
from tests.llm_helpers import BOOKSHOP, spec_answer

SPEC = AppSpec.model_validate(BOOKSHOP)


def test_plain_fenced_and_wordy_json_answers_are_read():
    for answer in (json.dumps(BOOKSHOP), spec_answer(), f"Sure. {json.dumps(BOOKSHOP)} Hope this helps!"):
        spec, errors = read_spec(answer, None)
        assert errors == [] and spec == SPEC


def test_answers_that_are_not_a_json_object_say_so():
    assert read_spec("", None) == (None, ["the answer was empty; answer with one JSON object"])
    assert read_spec("no braces here", None)[1][0].startswith("the answer is not JSON")
    assert read_spec('{"app_name": "x",', None)[1][0].startswith("the answer is not valid JSON")
    assert read_spec("[1, 2]", None) == (None, ["the answer must be one JSON object, not list"])


def test_validation_errors_name_where_they_are():
    wrong = json.loads(json.dumps(BOOKSHOP))
    wrong["entities"][1]["fields"][0] = {"name": "Title", "type": "varchar"}
    spec, errors = read_spec(json.dumps(wrong), None)
    assert spec is None
    assert any(error.startswith("entities.1.fields.0.name: invalid field name 'Title'") for error in errors)
    assert any(error.startswith("entities.1.fields.0.type: unknown field type 'varchar'") for error in errors)


def test_a_constraint_spec_may_be_added_to_but_not_changed():
    extended = json.loads(json.dumps(BOOKSHOP))
    extended["entities"][0]["fields"].append({"name": "website", "type": "string", "required": False})
    extended["entities"].append({"name": "Shelf", "fields": [{"name": "label", "type": "string"}]})
    assert constraint_errors(AppSpec.model_validate(extended), SPEC) == []

    changed = json.loads(json.dumps(BOOKSHOP))
    changed["options"] = {"page_size": 5}
    changed["entities"][1]["fields"][2]["unique"] = False
    del changed["entities"][0]
    errors = constraint_errors(AppSpec.model_validate(changed), SPEC)
    assert errors[0].startswith("options must stay")
    assert "entity 'Author' of the given spec is missing" in errors
    assert any(error.startswith("field 'isbn' of entity 'Book' must stay") for error in errors)


def test_the_correction_lists_a_bounded_number_of_errors():
    message = correction_message([f"error {n}" for n in range(25)])
    assert message["role"] == "user" and "- error 19" in message["content"]
    assert "- error 20" not in message["content"] and "- and 5 more" in message["content"]


def test_response_formats_per_mode():
    schema_format = response_format("json_schema")
    assert schema_format["type"] == "json_schema" and schema_format["json_schema"]["strict"] is False
    assert schema_format["json_schema"]["schema"] == AppSpec.model_json_schema()
    assert response_format("json_object") == {"type": "json_object"}
    assert response_format("none") is None
