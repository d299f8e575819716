"""The staged generation run: plan, generate, validate, and repair while validation fails.

`on_progress(percent, stage)` is called as each stage starts (plan, generate, validate, then a repair
and a validate per repair round, and done at 100) and when the percent moves inside a stage;
`on_update(ProgressUpdate)` also hears what happens inside a stage (each file generated, each step of
a validation, tokens so far). `on_file(path, action)` hears each file of the run "started",
"generated" or "dropped" (context.FILE_*): what the generation did in memory, not what was stored.
`should_cancel()` is checked before each stage and polled during model calls.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.generator.context import CancelCheck, FileCallback, ProgressCallback, RunContext, UpdateCallback
from shared.generator.errors import GenerationError, GenerationFailed, UsageByStage
from shared.generator.provider import EmbeddedProvider, GenerationProvider, GenerationRequest
from shared.generator.validate import ValidationReport, default_sandbox, validate_project
from shared.sandbox import Sandbox
from shared.schemas.spec import AppSpec, GenerationKind

MAX_REPAIRS_LIMIT = 10

# Percent reported when each stage starts; repair rounds share the span between them.
_PLAN, _GENERATE, _VALIDATE, _REPAIR_START, _REPAIR_SPAN = 5, 20, 40, 55, 40


@dataclass(frozen=True)
class GenerationSummary:
    """Facts about a finished run, small enough to store next to the project."""

    kind: str
    app_name: str
    provider: str
    entity_count: int
    file_count: int
    validation_passed: bool
    validation_message: str
    tests_run: int
    repair_attempts: int
    # Tokens per stage that called a model, and their sum; empty and 0 for the embedded provider.
    usage: UsageByStage = field(default_factory=dict)
    total_tokens: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-compatible data."""
        return asdict(self)


@dataclass(frozen=True)
class GenerationResult:
    """The generated files and what happened while producing them."""

    files: dict[str, str]
    summary: GenerationSummary
    report: ValidationReport
    spec: AppSpec


def run_pipeline(
    spec: AppSpec | Mapping[str, Any] | None,
    kind: GenerationKind | str,
    *,
    prompt: str | None = None,
    provider: GenerationProvider | None = None,
    on_progress: ProgressCallback | None = None,
    on_update: UpdateCallback | None = None,
    should_cancel: CancelCheck | None = None,
    on_file: FileCallback | None = None,
    validate_timeout: float = 60.0,
    max_repairs: int = 2,
    sandbox: Sandbox | None = None,
) -> GenerationResult:
    """Plan, generate and validate a project, repairing it up to `max_repairs` times.

    Every GenerationError raised carries `usage`, the tokens spent per stage until then. Every
    validation runs in `sandbox` (default: the one the environment's settings describe); when it
    cannot run generated code, SandboxUnavailable is raised before anything is generated (no model
    tokens are spent).
    """
    if not 0 <= max_repairs <= MAX_REPAIRS_LIMIT:
        raise ValueError(f"max_repairs must be between 0 and {MAX_REPAIRS_LIMIT}")
    request = GenerationRequest.of(spec, kind, prompt)
    provider = provider if provider is not None else EmbeddedProvider()
    sandbox = sandbox if sandbox is not None else default_sandbox()
    sandbox.require()
    run = RunContext(on_progress, on_update, should_cancel, on_file)
    try:
        return _run(request, provider, run, validate_timeout, max_repairs, sandbox)
    except GenerationError as error:
        error.usage = run.usage()
        raise


def _validate(run: RunContext, files: Mapping[str, str], timeout: float, sandbox: Sandbox) -> ValidationReport:
    """One validation, each of its steps (compile check, test run, outcome) reported inside the stage."""
    return validate_project(files, timeout, sandbox,
                            on_step=lambda fraction, detail: run.report(fraction=fraction, detail=detail))


def _run(request: GenerationRequest, provider: GenerationProvider, run: RunContext, validate_timeout: float,
         max_repairs: int, sandbox: Sandbox) -> GenerationResult:
    run.enter("plan", _PLAN, _GENERATE)
    plan = provider.plan(request, run)
    run.enter("generate", _GENERATE, _VALIDATE)
    files = dict(provider.generate(plan, run))
    run.files_done(files, {})
    run.enter("validate", _VALIDATE, _REPAIR_START)
    report = _validate(run, files, validate_timeout, sandbox)

    step = _REPAIR_SPAN // max(max_repairs, 1)
    attempts = 0
    while not report.passed and attempts < max_repairs:
        start = _REPAIR_START + attempts * step
        attempts += 1
        run.enter("repair", start, start + step // 2)
        repaired = dict(provider.repair(plan, files, report, run))
        run.files_done(repaired, files)
        files = repaired
        run.enter("validate", start + step // 2, start + step)
        report = _validate(run, files, validate_timeout, sandbox)
    if not report.passed:
        raise GenerationFailed(
            f"the generated project failed validation after {attempts} repair attempt(s): {report.message}",
            report,
            attempts,
        )

    run.enter("done", 100, 100)
    summary = GenerationSummary(
        kind=plan.kind.value,
        app_name=plan.spec.app_name,
        provider=provider.name,
        entity_count=len(plan.spec.entities),
        file_count=len(files),
        validation_passed=report.passed,
        validation_message=report.message,
        tests_run=report.tests_run,
        repair_attempts=attempts,
        usage=run.usage(),
        total_tokens=run.tokens_used,
    )
    return GenerationResult(files=files, summary=summary, report=report, spec=plan.spec)
