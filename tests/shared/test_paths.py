"""File path checks, including properties over generated paths."""
from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import Unprocessable
from shared.paths import check_file_path


def check(path: str) -> str:
    return check_file_path(path, max_depth=8, max_segment_length=32)


@pytest.mark.parametrize("path", ["README.md", "src/app/main.py", "a-b_c.d/e f.txt", "ünïcode/файл.py"])
def test_ordinary_relative_paths_are_accepted(path):
    assert check(path) == path


@given(st.text(min_size=1, max_size=80))
def test_an_accepted_path_never_escapes_the_project(path):
    try:
        accepted = check(path)
    except Unprocessable as error:
        assert error.detail.startswith("invalid file path: ")
        return
    normalized = posixpath.normpath(accepted)
    assert not normalized.startswith(("/", "..")) and normalized == accepted
    assert "\\" not in accepted and "\x00" not in accepted
