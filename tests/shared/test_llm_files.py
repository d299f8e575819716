"""Reading files out of a model's answer, and the rules deciding which of them a project takes."""
from __future__ import annotations

from shared.generator.llm_files import admit_files, format_files, parse_files
from shared.projects import Limits

LIMITS = Limits(max_file_bytes=1000, max_project_bytes=5000, max_files=6, max_depth=4, max_segment_length=40)
OWNED = ("shop/",)
RENDERED = {"tests/__init__.py": "", "tests/test_api.py": "import unittest\n", "README.md": "# shop\n"}


def test_marked_files_with_prose_and_fences_around_them():
    answer = (
        "Sure! Here are the files.\n\n"
        "=== FILE: shop/app.py ===\n```python\nprint('app')\n```\n=== END FILE ===\n\n"
        "Some words in between.\n"
        "=== FILE: `./shop/models.py` ===\nX = 1\n\nY = 2\n=== END FILE ===\n"
        "Let me know if you need anything else."
    )
    parsed = parse_files(answer)
    assert parsed.files == {"shop/app.py": "print('app')\n", "shop/models.py": "X = 1\n\nY = 2\n"}
    assert parsed.problems == []


def test_a_missing_end_marker_ends_the_file_at_the_next_one_or_at_the_end():
    answer = "=== FILE: shop/a.py ===\na = 1\n=== FILE: shop/b.py ===\nb = 2\n"
    assert parse_files(answer).files == {"shop/a.py": "a = 1\n", "shop/b.py": "b = 2\n"}


def test_a_file_cut_off_at_the_output_limit_is_not_used():
    answer = "=== FILE: shop/a.py ===\na = 1\n=== END FILE ===\n=== FILE: shop/b.py ===\ndef half("
    parsed = parse_files(answer, truncated=True)
    assert parsed.files == {"shop/a.py": "a = 1\n"}
    assert parsed.problems == ["'shop/b.py' was cut off at the output limit and was not used"]


def test_the_last_copy_of_a_repeated_file_wins():
    answer = "=== FILE: shop/a.py ===\na = 1\n=== END FILE ===\n=== FILE: shop/a.py ===\na = 2\n=== END FILE ==="
    assert parse_files(answer).files == {"shop/a.py": "a = 2\n"}


def test_markdown_answers_are_understood_too():
    answer = (
        "### `shop/app.py`\n\n```python\nprint('app')\n```\n\n"
        "**File: shop/store.py**\n```\nSTORE = {}\n```\n\n"
        "```python shop/models.py\nX = 1\n```\n\n"
        "```python\n# shop/validation.py\nV = 1\n```\n\n"
        "```bash\npython -m unittest\n```\n"
    )
    parsed = parse_files(answer)
    assert parsed.files == {
        "shop/app.py": "print('app')\n", "shop/store.py": "STORE = {}\n", "shop/models.py": "X = 1\n",
        "shop/validation.py": "# shop/validation.py\nV = 1\n",
    }


def test_an_answer_without_files_says_how_to_write_them():
    parsed = parse_files("I am not sure what you want.")
    assert parsed.files == {} and "=== FILE: <path> ===" in parsed.problems[0]


def test_formatted_files_parse_back_to_themselves():
    files = {"shop/a.py": "a = 1\n", "shop/b.py": "b = '```'\n", "shop/empty.py": ""}
    assert parse_files(format_files(files)).files == files


def test_files_inside_the_package_are_admitted():
    accepted, refused = admit_files({"shop/app.py": "x = 1\n", "shop/sub/util.py": "y = 2\n"}, owned=OWNED,
                                    reserved=RENDERED, base=RENDERED, limits=LIMITS)
    assert accepted == {"shop/app.py": "x = 1\n", "shop/sub/util.py": "y = 2\n"} and refused == []


def test_unsafe_reserved_and_foreign_paths_are_refused():
    files = {name: "x = 1\n" for name in (
        "../evil.py", "/etc/passwd", "shop/../../evil.py", "shop\\evil.py", "C:/evil.py", "shop//a.py",
        "shop/a/b/c/d.py", "shop/" + "s" * 41 + ".py", "tests/test_api.py", "tests/conftest.py", "README.md",
        "unittest.py", "other/app.py", "shop/ok.py")}
    accepted, refused = admit_files(files, owned=OWNED, reserved=RENDERED, base=RENDERED, limits=LIMITS)
    assert accepted == {"shop/ok.py": "x = 1\n"}
    reasons = {refusal.path: refusal.reason for refusal in refused}
    assert reasons["../evil.py"] == "invalid file path: it contains a '..' segment"
    assert reasons["/etc/passwd"] == "invalid file path: it must be relative, not start with '/'"
    assert reasons["shop/../../evil.py"] == "invalid file path: it contains a '..' segment"
    assert "backslash" in reasons["shop\\evil.py"] and "drive letter" in reasons["C:/evil.py"]
    assert "empty segment" in reasons["shop//a.py"] and "deeper than 4" in reasons["shop/a/b/c/d.py"]
    assert "longer than 40" in reasons["shop/" + "s" * 41 + ".py"]
    for path in ("tests/test_api.py", "tests/conftest.py", "README.md"):
        assert reasons[path] == "the tests and README come from the spec and cannot be written by the model"
    assert reasons["unittest.py"] == reasons["other/app.py"] == "files may only be written under shop/"


def test_size_and_count_limits_count_the_rendered_files_too():
    files = {f"shop/m{i}.py": "x" * 900 for i in range(5)}
    files["shop/big.py"] = "x" * 1001
    accepted, refused = admit_files(files, owned=OWNED, reserved=RENDERED, base=RENDERED, limits=LIMITS)
    # Three rendered files plus three accepted make the six the limits allow.
    assert sorted(accepted) == ["shop/m0.py", "shop/m1.py", "shop/m2.py"]
    reasons = {refusal.path: refusal.reason for refusal in refused}
    assert reasons["shop/big.py"] == "it is 1001 bytes; the limit is 1000"
    assert reasons["shop/m3.py"] == "the project would hold more than 6 files"
    bytes_limited = Limits(max_file_bytes=1000, max_project_bytes=2000, max_files=100, max_depth=4,
                           max_segment_length=40)
    accepted, refused = admit_files(files, owned=OWNED, reserved=RENDERED, base=RENDERED, limits=bytes_limited)
    assert sorted(accepted) == ["shop/m0.py", "shop/m1.py"]
    assert {refusal.reason for refusal in refused} >= {"the project would hold more than 2000 bytes"}
