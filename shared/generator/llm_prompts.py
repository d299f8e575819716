"""The requests that ask a model to write, and then to fix, a project's implementation."""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from shared.generator.llm_files import FILE_END, FILE_START, Refusal, format_files
from shared.generator.provider import Plan
from shared.generator.validate import ValidationReport

CODE_SYSTEM = """You write the implementation of a small Python project. Use only the Python 3 standard
library: no third-party packages. The project's tests are already written and fixed; your code must
make them pass when run as `python -m unittest discover -s tests -t .` from the project root.

Answer with files only, one after another, each in exactly this form:
{start}
<the complete content of the file>
{end}

Write files only under {owned}. The tests, README.md and .gitignore are provided: do not write them
(anything you write there is ignored)."""


def owned_prefixes(plan: Plan) -> tuple[str, ...]:
    """The directories the model writes: the application package, and static/ for a web page."""
    return (f"{plan.spec.app_name}/",) + (("static/",) if plan.kind.value == "fullstack" else ())


def _system(plan: Plan) -> dict[str, str]:
    owned = " and ".join(f"`{prefix}`" for prefix in owned_prefixes(plan))
    text = CODE_SYSTEM.format(start=FILE_START.format(path="<path>"), end=FILE_END, owned=owned)
    return {"role": "system", "content": text}


def _brief(plan: Plan, rendered: Mapping[str, str], to_write: Sequence[tuple[str, str]]) -> str:
    parts = [f"The application spec (JSON):\n{json.dumps(plan.spec.model_dump(mode='json'), indent=1)}"]
    if plan.prompt:
        parts.append(f"What the user asked for:\n{plan.prompt}")
    listed = "\n".join(f"- {path}: {purpose}" for path, purpose in to_write)
    parts.append(f"Files the project needs (you may add others under the same directories):\n{listed}")
    parts.append("The provided files, which describe the behaviour the tests check:\n" + format_files(rendered))
    return "\n\n".join(parts)


def generate_messages(plan: Plan, rendered: Mapping[str, str],
                      to_write: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """Ask for the whole implementation."""
    user = _brief(plan, rendered, to_write) + "\n\nWrite every file of the implementation now."
    return [_system(plan), {"role": "user", "content": user}]


def repair_messages(plan: Plan, rendered: Mapping[str, str], to_write: Sequence[tuple[str, str]],
                    current: Mapping[str, str], report: ValidationReport,
                    notes: Sequence[str | Refusal]) -> list[dict[str, str]]:
    """Send the failure and the current implementation back, asking for corrected files."""
    failure = [f"Validation failed: {report.message}"]
    failure += [f"- {problem.path}" + (f" line {problem.line}" if problem.line else "") + f": {problem.message}"
                for problem in report.file_errors]
    if report.output_tail:
        failure.append(f"The end of the test output:\n{report.output_tail}")
    if notes:
        failure.append("Problems with your previous answer:\n" + "\n".join(f"- {note}" for note in notes))
    user = "\n\n".join([
        _brief(plan, rendered, to_write),
        "Your current implementation:\n" + (format_files(current) if current else "(no files)"),
        "\n".join(failure),
        "Fix the implementation. Answer with the files you change, each one complete, in the same form.",
    ])
    return [_system(plan), {"role": "user", "content": user}]
