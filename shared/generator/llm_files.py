"""Files out of a model's answer, and which of them the project accepts.

The model is asked to write each file between `=== FILE: <path> ===` and `=== END FILE ===` lines.
Answers that wrap the content in code fences, talk before and after the files, forget the last end
marker, or fall back to Markdown (a path, then a fenced block) are still understood.

Every path then passes the rules of a user's upload (shared.paths) and the project limits, and must
lie inside the directories the model owns: the application package (and static/ for a web page).
Everything else, above all the tests and README rendered from the spec, is refused, not written.
"""
from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from shared.errors import Unprocessable
from shared.projects import Limits, check_path

FILE_START = "=== FILE: {path} ==="
FILE_END = "=== END FILE ==="

_START = re.compile(r"^\s*={3,}\s*FILE:\s*(?P<path>.*?)\s*={3,}\s*$", re.IGNORECASE)
_END = re.compile(r"^\s*={3,}\s*END(?:\s+FILE)?\s*={3,}\s*$", re.IGNORECASE)
_FENCE = re.compile(r"^\s*(`{3,}|~{3,})(?P<info>.*)$")
_PATHLIKE = re.compile(r"(?P<path>[\w.\-]+(?:/[\w.\-]+)*\.[A-Za-z0-9]+)")
# A path as models label a fenced block: "### `app/models.py`", "**File: app/models.py**", "app/models.py:".
_LABEL = re.compile(r"^\W*(?:file(?:name)?\s*[:=]\s*)?[`*\"']*(?P<path>[\w./\-]+\.[A-Za-z0-9]+)[`*\"':]*\s*$",
                    re.IGNORECASE)


@dataclass
class ParsedFiles:
    """Files found in an answer, and notes for the model on what could not be used."""

    files: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Refusal:
    """A file the model wrote that the project did not take, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path!r} was refused: {self.reason}"


def format_files(files: Mapping[str, str]) -> str:
    """Files in the marker format the model is asked to answer in."""
    blocks = []
    for path in sorted(files):
        content = files[path]
        newline = "" if content.endswith("\n") else "\n"
        blocks.append(f"{FILE_START.format(path=path)}\n{content}{newline}{FILE_END}")
    return "\n\n".join(blocks)


def parse_files(text: str, *, truncated: bool = False) -> ParsedFiles:
    """The files in a model's answer; `truncated` means it stopped at its output limit."""
    lines = text.splitlines()
    if any(_START.match(line) for line in lines):
        return _parse_markers(lines, truncated)
    parsed = _parse_markdown(lines, truncated)
    if not parsed.files and not parsed.problems:
        parsed.problems.append(f"the answer contained no files; write each one between "
                               f"'{FILE_START.format(path='<path>')}' and '{FILE_END}' lines")
    return parsed


class FileStarts:
    """The files a streamed answer has begun, as its text grows: each path once, when its start line is complete.

    Only the marker format shows where a file starts while the model is still writing; files in
    the Markdown fallback are known when the answer is complete.
    """

    def __init__(self) -> None:
        self._scanned = 0
        self._seen: set[str] = set()

    def new(self, text: str) -> list[str]:
        """Paths whose start line appeared since the last call (the line after it has begun)."""
        end = text.rfind("\n", self._scanned) + 1
        if end <= self._scanned:
            return []
        lines, self._scanned = text[self._scanned:end].splitlines(), end
        found = []
        for line in lines:
            start = _START.match(line)
            path = _clean_path(start.group("path")) if start else ""
            if path and path not in self._seen:
                self._seen.add(path)
                found.append(path)
        return found


def _parse_markers(lines: list[str], truncated: bool) -> ParsedFiles:
    parsed = ParsedFiles()
    path: str | None = None
    body: list[str] = []
    for line in lines:
        start = _START.match(line)
        if start or (path is not None and _END.match(line)):
            if path is not None:
                _keep(parsed, path, body)
            path, body = (_clean_path(start.group("path")) if start else None), []
        elif path is not None:
            body.append(line)
    if path is not None:
        if truncated:
            parsed.problems.append(f"{path!r} was cut off at the output limit and was not used")
        else:
            _keep(parsed, path, body)
    return parsed


def _parse_markdown(lines: list[str], truncated: bool) -> ParsedFiles:
    parsed = ParsedFiles()
    index = 0
    while index < len(lines):
        fence = _FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        marker, info = fence.group(1), fence.group("info")
        end = next((i for i in range(index + 1, len(lines)) if lines[i].strip() == marker), None)
        body = lines[index + 1:end] if end is not None else lines[index + 1:]
        path = _path_in(info) or _label_before(lines, index)
        if path is None and body:
            first = re.match(r"^\s*(?:#|//|<!--)\s*(?:file:\s*)?(?P<path>[\w./\-]+\.[A-Za-z0-9]+)\s*(?:-->)?\s*$",
                             body[0], re.IGNORECASE)
            path = _clean_path(first.group("path")) if first else None
        if path is not None:
            if end is None and truncated:
                parsed.problems.append(f"{path!r} was cut off at the output limit and was not used")
            else:
                parsed.files[path] = _text(body)
        index = (end if end is not None else len(lines)) + 1
    return parsed


def _path_in(info: str) -> str | None:
    match = re.search(r"(?:title|file(?:name)?|path)\s*=\s*[\"']?([^\"'\s]+)", info, re.IGNORECASE)
    if match:
        return _clean_path(match.group(1))
    words = info.split()
    candidates = [word for word in words if "/" in word or _PATHLIKE.fullmatch(word)]
    return _clean_path(candidates[-1]) if candidates else None


def _label_before(lines: list[str], index: int) -> str | None:
    for back in range(index - 1, max(index - 3, -1), -1):
        line = lines[back].strip()
        if not line:
            continue
        label = _LABEL.match(line)
        return _clean_path(label.group("path")) if label else None
    return None


def _keep(parsed: ParsedFiles, path: str, body: list[str]) -> None:
    # Models often fence the content even between markers.
    while body and not body[0].strip():
        body = body[1:]
    while body and not body[-1].strip():
        body = body[:-1]
    if body and _FENCE.match(body[0]) and body[-1].strip() in ("```", "~~~", "````"):
        body = body[1:-1]
    parsed.files[path] = _text(body)


def _text(body: list[str]) -> str:
    return "\n".join(body) + "\n" if body else ""


def _clean_path(path: str) -> str:
    path = path.strip().strip("`*\"'").strip()
    return path[2:] if path.startswith("./") else path


def admit_files(files: Mapping[str, str], *, owned: Iterable[str], reserved: Collection[str],
                base: Mapping[str, str], limits: Limits) -> tuple[dict[str, str], list[Refusal]]:
    """Split the model's files into those the project takes and those it refuses.

    `owned` are the directory prefixes the model may write under ("bookshop/", "static/"); `reserved`
    are paths it must never write (the rendered tests and README); `base` is what the project holds
    besides the model's files, counted against the file-count and size limits.
    """
    owned = tuple(owned)
    accepted: dict[str, str] = {}
    refused: list[Refusal] = []
    count = len(base)
    total = sum(len(content.encode("utf-8")) for content in base.values())
    for path in sorted(files):
        content = files[path]
        reason = _path_refusal(path, owned, reserved, limits)
        size = len(content.encode("utf-8"))
        if reason is None and size > limits.max_file_bytes:
            reason = f"it is {size} bytes; the limit is {limits.max_file_bytes}"
        if reason is None and count + 1 > limits.max_files:
            reason = f"the project would hold more than {limits.max_files} files"
        if reason is None and total + size > limits.max_project_bytes:
            reason = f"the project would hold more than {limits.max_project_bytes} bytes"
        if reason is not None:
            refused.append(Refusal(path, reason))
            continue
        accepted[path] = content
        count += 1
        total += size
    return accepted, refused


def may_write(path: str, *, owned: Iterable[str], reserved: Collection[str], limits: Limits) -> bool:
    """Whether the project would take a file of the model's at `path` (its size aside)."""
    return _path_refusal(path, tuple(owned), reserved, limits) is None


def _path_refusal(path: str, owned: tuple[str, ...], reserved: Collection[str], limits: Limits) -> str | None:
    try:
        check_path(path, limits)
    except Unprocessable as error:
        return error.detail
    if path in reserved or path.split("/", 1)[0] == "tests":
        return "the tests and README come from the spec and cannot be written by the model"
    if not path.startswith(owned):
        return f"files may only be written under {' or '.join(owned)}"
    return None
