"""The provider interface of the generation pipeline, and its deterministic embedded implementation."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from shared.generator.context import RunContext
from shared.generator.errors import ProviderRejected
from shared.generator.render import PlannedFile, plan_files, render
from shared.generator.validate import ValidationReport
from shared.schemas.jobs import SPEC_REQUIRED
from shared.schemas.spec import AppSpec, GenerationKind

if TYPE_CHECKING:
    from shared.settings import Settings



@dataclass(frozen=True)
class GenerationRequest:
    """What the user asked for: a spec, a free-text prompt, or both (the spec then constrains the plan)."""

    kind: GenerationKind
    spec: AppSpec | None = None
    prompt: str | None = None

    @classmethod
    def of(cls, spec: AppSpec | Mapping[str, Any] | None, kind: GenerationKind | str,
           prompt: str | None = None) -> GenerationRequest:
        """Validate and normalize the parts of a request."""
        if spec is not None and not isinstance(spec, AppSpec):
            spec = AppSpec.model_validate(spec)
        prompt = prompt.strip() if prompt else None
        if spec is None and not prompt:
            raise ValueError("a generation request needs a spec or a prompt")
        return cls(kind=GenerationKind(kind), spec=spec, prompt=prompt or None)


@dataclass(frozen=True)
class Plan:
    """What to build: the validated spec, the kind of project, and the files it will consist of."""

    spec: AppSpec
    kind: GenerationKind
    files: tuple[PlannedFile, ...]
    prompt: str | None = None

    @property
    def paths(self) -> tuple[str, ...]:
        """Return the planned file paths."""
        return tuple(planned.path for planned in self.files)


@runtime_checkable
class GenerationProvider(Protocol):
    """Something that can plan, write and fix a project; embedded templates or a language model.

    Providers are built as `cls(settings)`; `run` carries progress, cancel checks and token usage.
    """

    name: str

    def plan(self, request: GenerationRequest, run: RunContext) -> Plan:
        """Decide what the project is (its spec) and which files it consists of."""
        ...

    def generate(self, plan: Plan, run: RunContext) -> dict[str, str]:
        """Write every planned file: {relative POSIX path: content}."""
        ...

    def repair(self, plan: Plan, files: Mapping[str, str], report: ValidationReport,
               run: RunContext) -> dict[str, str]:
        """Return a corrected copy of `files` given the failed validation `report`."""
        ...


class EmbeddedProvider(GenerationProvider):
    """Renders built-in templates in-process: deterministic, no network, no language model."""

    name = "embedded"

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    def plan(self, request: GenerationRequest, run: RunContext) -> Plan:
        """Plan the files `render` produces for the request's spec; a prompt alongside it is not read."""
        if request.spec is None:
            raise ProviderRejected(SPEC_REQUIRED, reason="spec_required")
        return Plan(spec=request.spec, kind=request.kind, files=tuple(plan_files(request.spec, request.kind)),
                    prompt=request.prompt)

    def generate(self, plan: Plan, run: RunContext) -> dict[str, str]:
        """Render the planned project."""
        return render(plan.spec, plan.kind)

    def repair(self, plan: Plan, files: Mapping[str, str], report: ValidationReport,
               run: RunContext) -> dict[str, str]:
        """Re-render the files the report implicates, restore missing ones and drop unplanned ones."""
        fresh = render(plan.spec, plan.kind)
        repaired = {path: files.get(path, content) for path, content in fresh.items()}
        changed = set(repaired) != set(files)
        for path in report.implicated_files:
            if path in fresh and repaired[path] != fresh[path]:
                repaired[path] = fresh[path]
                changed = True
        # A failure whose cause is not in the implicated files (e.g. a test assertion tripped by a
        # bug elsewhere) leaves nothing to patch locally, so everything is rendered again.
        return repaired if changed else fresh
