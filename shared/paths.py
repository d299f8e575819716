"""Validation of file paths inside a project."""
from __future__ import annotations

from shared.errors import Unprocessable

MAX_PATH_LENGTH = 1024


def file_path_pattern(*, max_depth: int, max_segment_length: int) -> str:
    """check_file_path's rules, but the overall length, as a JSON-Schema (ECMA-262) pattern."""
    # A segment: not '.' or '..', and no '/', backslash or control character.
    segment = rf"(?!\.\.?(?:/|$))[^/\\\x00-\x1f\x7f]{{1,{max_segment_length}}}"
    # No drive letter (a second character ':'); a first segment, so no leading '/'.
    return rf"^(?![\s\S]:){segment}(?:/{segment}){{0,{max_depth - 1}}}$"


def check_file_path(path: str, *, max_depth: int, max_segment_length: int) -> str:
    """Return `path` when it is a safe relative POSIX path, else raise a 422 saying why."""

    def reject(reason: str) -> Unprocessable:
        return Unprocessable(f"invalid file path: {reason}", field="path.file_path")

    if not path:
        raise reject("it is empty")
    if len(path) > MAX_PATH_LENGTH:
        raise reject(f"it is longer than {MAX_PATH_LENGTH} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise reject("it contains a NUL or control character")
    if "\\" in path:
        raise reject("it contains a backslash; use '/' between segments")
    if path.startswith("/"):
        raise reject("it must be relative, not start with '/'")
    if len(path) >= 2 and path[1] == ":":
        raise reject("it must be relative, not start with a drive letter")
    segments = path.split("/")
    if len(segments) > max_depth:
        raise reject(f"it is nested deeper than {max_depth} levels")
    for segment in segments:
        if segment == "":
            raise reject("it contains an empty segment ('//' or a trailing '/')")
        if segment == "..":
            raise reject("it contains a '..' segment")
        if segment == ".":
            raise reject("it contains a '.' segment")
        if len(segment) > max_segment_length:
            raise reject(f"a segment is longer than {max_segment_length} characters")
    return path
