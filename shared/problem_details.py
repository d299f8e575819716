"""The body of an RFC 9457 problem, shared by the Flask app and the stream process."""
from __future__ import annotations

from typing import Any

PROBLEM_MIME = "application/problem+json"
TYPE_BASE = "https://devora.dev/problems/"


def problem_body(status: int, title: str, detail: str | None = None, *, slug: str | None = None,
                 errors: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    """`type`, `title`, `status`, then `detail`, `errors` and any extra members when given."""
    body: dict[str, Any] = {"type": TYPE_BASE + (slug or title.lower().replace(" ", "-")),
                            "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    return body
