"""Helpers for tests where the scripted model peer answers: specs and file answers as a model writes them."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from shared.generator.render import render
from shared.schemas.spec import AppSpec, GenerationKind

BOOKSHOP_PROMPT = "a bookshop API with books and authors"
BOOKSHOP: dict[str, Any] = {
    "app_name": "bookshop",
    "description": "Books and their authors.",
    "entities": [
        {"name": "Author", "fields": [{"name": "name", "type": "string", "max_length": 120},
                                      {"name": "born_on", "type": "date", "required": False}]},
        {"name": "Book", "fields": [{"name": "title", "type": "string"}, {"name": "author_id", "type": "integer"},
                                    {"name": "isbn", "type": "string", "unique": True, "max_length": 17}]},
    ],
}


def spec_answer(spec: Mapping[str, Any] = BOOKSHOP) -> str:
    """A plan answer the way chatty models give it: prose, then the JSON in a fence."""
    return f"Here is the spec you asked for:\n\n```json\n{json.dumps(spec, indent=2)}\n```\n"


def implementation(spec: Mapping[str, Any] = BOOKSHOP, kind: str = "agentic") -> dict[str, str]:
    """A correct implementation: what the embedded renderer writes, without the tests, README and .gitignore."""
    valid = AppSpec.model_validate(spec)
    owned = (f"{valid.app_name}/", "static/")
    return {path: content for path, content in render(valid, GenerationKind(kind)).items() if path.startswith(owned)}


def files_answer(files: Mapping[str, str], *, fenced: bool = True) -> str:
    """A generate or repair answer in the marker convention, with prose around and fences inside."""
    blocks = ["I wrote the implementation below."]
    for path, content in files.items():
        body = f"```python\n{content}```" if fenced else content.rstrip("\n")
        blocks.append(f"=== FILE: {path} ===\n{body}\n=== END FILE ===")
    blocks.append("Every file uses only the standard library.")
    return "\n\n".join(blocks)


def broken(files: Mapping[str, str], path: str, old: str, new: str) -> dict[str, str]:
    """`files` with one replacement made in `path` (which must contain `old`)."""
    assert old in files[path], f"{old!r} not in {path}"
    return {**files, path: files[path].replace(old, new)}
