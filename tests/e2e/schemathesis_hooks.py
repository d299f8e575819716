"""Schemathesis hooks for fuzzing the running API (tests/e2e/schemathesis.toml).

JSON Schema cannot relate one value to another, so the document cannot state the rules of an
application spec that span values: page_size at most max_page_size, field names unique within an
entity, entity names (in any case) and table names unique within a spec, and a table name derived
from an entity's name that is neither an SQL reserved word nor sqlite_... . The one it does state,
a max_length only on a string field, it states with if/then, which schemathesis's coverage phase
does not apply. A spec generated from the schema breaks them by chance and is rightly refused with a
422. This hook keeps the *positive* cases of the generation operations within those rules, so that
positive_data_acceptance judges what the schema does state; negative cases are sent as generated.
"""
from __future__ import annotations

from typing import Any

import schemathesis
from schemathesis.generation import GenerationMode

from shared.schemas.spec import SQL_RESERVED, SpecOptions, pluralize, snake_case

GENERATION_OPERATIONS = frozenset({"generateAgentic", "generateFullstack"})
_DEFAULT_PAGE_SIZE = SpecOptions.model_fields["page_size"].default
_DEFAULT_MAX_PAGE_SIZE = SpecOptions.model_fields["max_page_size"].default


@schemathesis.hook
def map_case(context, case):
    meta = case.meta
    if (case.operation.definition.raw.get("operationId") in GENERATION_OPERATIONS and meta is not None
            and meta.generation.mode is GenerationMode.POSITIVE and isinstance(case.body, dict)
            and isinstance(case.body.get("spec"), dict)):
        keep_within_cross_value_rules(case.body["spec"])
    return case


def keep_within_cross_value_rules(spec: dict[str, Any]) -> None:
    options = spec.get("options")
    if isinstance(options, dict):
        page_size = options.get("page_size", _DEFAULT_PAGE_SIZE)
        max_page_size = options.get("max_page_size", _DEFAULT_MAX_PAGE_SIZE)
        if page_size > max_page_size:
            options["page_size"], options["max_page_size"] = max_page_size, page_size
    names: set[str] = set()
    plurals: set[str] = set()
    for index, entity in enumerate(spec.get("entities") or []):
        explicit = entity.get("plural")
        if entity["name"].lower() in names or (explicit is None and not _derivable(entity["name"], plurals)):
            entity["name"] = _fresh(f"Entity{index}", lambda name: name.lower() not in names and (
                explicit is not None or _derivable(name, plurals)))
        names.add(entity["name"].lower())
        if explicit is not None and explicit in plurals:
            entity["plural"] = explicit = _fresh(f"{explicit[:55]}_", lambda plural: plural not in plurals)
        plurals.add(explicit if explicit is not None else pluralize(snake_case(entity["name"])))
        fields: set[str] = set()
        for field in entity.get("fields") or []:
            if field["name"] in fields:
                field["name"] = _fresh(f"{field['name'][:35]}_", lambda name: name not in fields)
            fields.add(field["name"])
            if field.get("type") != "string" and field.get("max_length") is not None:
                field["max_length"] = None


def _derivable(name: str, plurals: set[str]) -> bool:
    """Whether the table name derived from an entity's name is one the validator takes."""
    plural = pluralize(snake_case(name))
    return plural not in plurals and plural not in SQL_RESERVED and not plural.startswith("sqlite_")


def _fresh(prefix: str, free) -> str:
    number = 1
    while not free(f"{prefix}{number}"):
        number += 1
    return f"{prefix}{number}"
