"""The staged generation run: plan, generate, validate, and repair while validation fails.

`on_progress(percent, stage)` is called as each stage starts: plan, generate, validate, then a repair
and a validate per repair round, and done at 100; `should_cancel()` is checked before each of them.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from shared.generator.provider import EmbeddedProvider, GenerationProvider
from shared.generator.validate import ValidationReport, default_sandbox, validate_project
from shared.sandbox import Sandbox
from shared.schemas.spec import AppSpec, GenerationKind

ProgressCallback = Callable[[int, str], None]
CancelCheck = Callable[[], bool]

MAX_REPAIRS_LIMIT = 10

# Percent reported when each stage starts; repair rounds share the span between them.
_PLAN, _GENERATE, _VALIDATE, _REPAIR_START, _REPAIR_SPAN = 5, 20, 40, 55, 40


class GenerationError(Exception):
    """Base class of the pipeline's own failures."""


class ProviderUnavailable(GenerationError):
    """The provider could not answer for now (timeout, rate limit, outage): worth retrying later."""


class GenerationCanceled(GenerationError):
    """Raised when `should_cancel` asks to stop; `stage` is the stage that was about to start."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"generation canceled before the {stage} stage")
        self.stage = stage


class GenerationFailed(GenerationError):
    """Raised when the project still fails validation after every allowed repair."""

    def __init__(self, message: str, report: ValidationReport, repair_attempts: int) -> None:
        super().__init__(message)
        self.report = report
        self.repair_attempts = repair_attempts


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

    def to_dict(self) -> dict[str, Any]:
        """Return the summary as JSON-compatible data."""
        return asdict(self)


@dataclass(frozen=True)
class GenerationResult:
    """The generated files and what happened while producing them."""

    files: dict[str, str]
    summary: GenerationSummary
    report: ValidationReport


class _Stages:
    def __init__(self, on_progress: ProgressCallback | None, should_cancel: CancelCheck | None) -> None:
        self._on_progress = on_progress
        self._should_cancel = should_cancel

    def enter(self, stage: str, percent: int) -> None:
        if self._should_cancel is not None and self._should_cancel():
            raise GenerationCanceled(stage)
        if self._on_progress is not None:
            self._on_progress(percent, stage)


def run_pipeline(
    spec: AppSpec | Mapping[str, Any],
    kind: GenerationKind | str,
    *,
    provider: GenerationProvider | None = None,
    on_progress: ProgressCallback | None = None,
    should_cancel: CancelCheck | None = None,
    validate_timeout: float = 60.0,
    max_repairs: int = 2,
    sandbox: Sandbox | None = None,
) -> GenerationResult:
    """Plan, generate and validate a project, repairing it up to `max_repairs` times.

    Every validation runs in `sandbox` (default: the one the environment's settings describe). When
    it cannot run generated code, SandboxUnavailable is raised before anything is generated.
    """
    if not 0 <= max_repairs <= MAX_REPAIRS_LIMIT:
        raise ValueError(f"max_repairs must be between 0 and {MAX_REPAIRS_LIMIT}")
    spec = spec if isinstance(spec, AppSpec) else AppSpec.model_validate(spec)
    kind = GenerationKind(kind)
    provider = provider if provider is not None else EmbeddedProvider()
    sandbox = sandbox if sandbox is not None else default_sandbox()
    sandbox.require()
    stages = _Stages(on_progress, should_cancel)

    stages.enter("plan", _PLAN)
    plan = provider.plan(spec, kind)
    stages.enter("generate", _GENERATE)
    files = dict(provider.generate(plan))
    stages.enter("validate", _VALIDATE)
    report = validate_project(files, validate_timeout, sandbox)

    step = _REPAIR_SPAN // max(max_repairs, 1)
    attempts = 0
    while not report.passed and attempts < max_repairs:
        start = _REPAIR_START + attempts * step
        attempts += 1
        stages.enter("repair", start)
        files = dict(provider.repair(plan, files, report))
        stages.enter("validate", start + step // 2)
        report = validate_project(files, validate_timeout, sandbox)
    if not report.passed:
        raise GenerationFailed(
            f"the generated project failed validation after {attempts} repair attempt(s): {report.message}",
            report,
            attempts,
        )

    stages.enter("done", 100)
    summary = GenerationSummary(
        kind=kind.value,
        app_name=spec.app_name,
        provider=provider.name,
        entity_count=len(spec.entities),
        file_count=len(files),
        validation_passed=report.passed,
        validation_message=report.message,
        tests_run=report.tests_run,
        repair_attempts=attempts,
    )
    return GenerationResult(files=files, summary=summary, report=report)
