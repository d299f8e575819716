"""The plan stage's exchange with a model: asking for an AppSpec as JSON, and checking the answer.

The answer is validated by our own AppSpec model whatever the server promised about structured
output (some servers ignore `response_format`); when the request carried a spec, the answer must
also keep all of it.
"""
from __future__ import annotations

import functools
import json
import re
from typing import Any

from pydantic import ValidationError

from shared.schemas.spec import FIELD_TYPES, MAX_ENTITIES, MAX_FIELDS, AppSpec

MAX_ERRORS_SENT = 20
STRUCTURED_MODES = ("json_schema", "json_object", "none")

_FENCED = re.compile(r"^\s*(?:`{3,}|~{3,})[\w-]*\s*\n(?P<body>.*?)\n\s*(?:`{3,}|~{3,})\s*$", re.DOTALL)

PLAN_SYSTEM = f"""You design small data-backed web APIs for a code generator. Turn the user's request into an
application spec: one JSON object, and nothing else (no prose, no code fences).

Rules:
- app_name: a lowercase Python package name (letters, digits and _, starting with a letter, at most 40
  characters) that is not a Python standard library module (not json, test, email, ...).
- entities: 1 to {MAX_ENTITIES} record types. name is PascalCase (Book, BookReview); plural (optional) is the
  snake_case URL segment and table name; description is optional.
- fields: 1 to {MAX_FIELDS} per entity. name is snake_case, never "id" (every entity gets an integer id) and
  never a Python or SQL reserved word (class, order, group, from, ...). type is one of
  {", ".join(FIELD_TYPES)}. required defaults to true, unique to false; max_length only on string fields.
- A reference to another entity is an integer field named after it, e.g. author_id.
- options (optional): page_size, max_page_size, port.

The JSON schema of the answer:
"""


@functools.cache
def spec_schema() -> str:
    """AppSpec's JSON schema, as sent to the model."""
    return json.dumps(AppSpec.model_json_schema(), separators=(",", ":"))


def response_format(mode: str) -> dict[str, Any] | None:
    """The `response_format` of a structured-output mode (None: ask in the prompt only)."""
    if mode == "json_schema":
        # Not strict: OpenAI's strict mode refuses optional properties and defaults, which AppSpec has.
        return {"type": "json_schema",
                "json_schema": {"name": "app_spec", "schema": json.loads(spec_schema()), "strict": False}}
    if mode == "json_object":
        return {"type": "json_object"}
    return None


def plan_messages(prompt: str, constraint: AppSpec | None) -> list[dict[str, str]]:
    """The first plan request."""
    user = f"Request:\n{prompt}"
    if constraint is not None:
        user += ("\n\nKeep everything in this spec: the same app_name and options, and every entity and field "
                 "with the same settings. Add only what the request needs beyond it:\n"
                 + json.dumps(constraint.model_dump(mode="json"), indent=1))
    return [{"role": "system", "content": PLAN_SYSTEM + spec_schema()}, {"role": "user", "content": user}]


def correction_message(errors: list[str]) -> dict[str, str]:
    """What goes back to the model after an invalid answer."""
    listed = "\n".join(f"- {error}" for error in errors[:MAX_ERRORS_SENT])
    more = f"\n- and {len(errors) - MAX_ERRORS_SENT} more" if len(errors) > MAX_ERRORS_SENT else ""
    return {"role": "user", "content": f"That answer is not a valid spec:\n{listed}{more}\n\n"
                                       "Answer again with the complete, corrected JSON object only."}


def read_spec(text: str, constraint: AppSpec | None) -> tuple[AppSpec | None, list[str]]:
    """The spec in a model's answer, or None and what is wrong with it."""
    data, error = _json_object(text)
    if error is not None:
        return None, [error]
    try:
        spec = AppSpec.model_validate(data)
    except ValidationError as invalid:
        return None, [_describe(detail) for detail in invalid.errors()]
    errors = constraint_errors(spec, constraint) if constraint is not None else []
    return (None, errors) if errors else (spec, [])


def constraint_errors(planned: AppSpec, constraint: AppSpec) -> list[str]:
    """How `planned` departs from the spec the request carried (it may only add to it)."""
    errors: list[str] = []
    if planned.app_name != constraint.app_name:
        errors.append(f"app_name must stay {constraint.app_name!r}")
    if planned.options != constraint.options:
        errors.append(f"options must stay {json.dumps(constraint.options.model_dump())}")
    entities = {entity.name: entity for entity in planned.entities}
    for wanted in constraint.entities:
        entity = entities.get(wanted.name)
        if entity is None:
            errors.append(f"entity {wanted.name!r} of the given spec is missing")
            continue
        if entity.plural != wanted.plural:
            errors.append(f"entity {wanted.name!r} must keep the plural {wanted.plural!r}")
        fields = {item.name: item for item in entity.fields}
        for wanted_field in wanted.fields:
            if fields.get(wanted_field.name) != wanted_field:
                settings = json.dumps(wanted_field.model_dump(mode="json"))
                errors.append(f"field {wanted_field.name!r} of entity {wanted.name!r} must stay {settings}")
    return errors


def _json_object(text: str) -> tuple[Any, str | None]:
    text = text.strip()
    fenced = _FENCED.match(text)
    if fenced:
        text = fenced.group("body").strip()
    if not text:
        return None, "the answer was empty; answer with one JSON object"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        # Prose around the object: decode from its first brace.
        start = text.find("{")
        if start < 0:
            return None, f"the answer is not JSON ({error.msg} at line {error.lineno} column {error.colno})"
        try:
            data, _ = json.JSONDecoder().raw_decode(text, start)
        except json.JSONDecodeError as inner:
            return None, f"the answer is not valid JSON ({inner.msg} at line {inner.lineno} column {inner.colno})"
    if not isinstance(data, dict):
        return None, "the answer must be one JSON object, not " + type(data).__name__
    return data, None


def _describe(detail: Any) -> str:
    where = ".".join(str(part) for part in detail.get("loc", ())) or "(the object)"
    message = str(detail.get("msg", "is invalid")).removeprefix("Value error, ")
    return f"{where}: {message}"
