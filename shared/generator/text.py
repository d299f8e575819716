"""Small text helpers shared by the renderers."""
from __future__ import annotations

import json
import re
from typing import Any

_TOKEN = re.compile(r"\{\{(\w+)\}\}")


def fill(template: str, **values: str) -> str:
    """Replace every `{{name}}` token in a template; a missing value is a KeyError."""
    return _TOKEN.sub(lambda match: values[match.group(1)], template)


def py_literal(value: Any) -> str:
    """Return Python source for a scalar or a list of scalars (strings double-quoted)."""
    if isinstance(value, list):
        return "[" + ", ".join(py_literal(item) for item in value) + "]"
    if isinstance(value, str):
        # JSON string escapes are a subset of Python's, and ensure_ascii=False keeps astral characters whole.
        return json.dumps(value, ensure_ascii=False)
    return repr(value)
