"""The provider interface of the generation pipeline, and its deterministic embedded implementation."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from shared.generator.render import PlannedFile, plan_files, render
from shared.generator.validate import ValidationReport
from shared.schemas.spec import AppSpec, GenerationKind


@dataclass(frozen=True)
class Plan:
    """What to build: the validated spec, the kind of project, and the files it will consist of."""

    spec: AppSpec
    kind: GenerationKind
    files: tuple[PlannedFile, ...]

    @property
    def paths(self) -> tuple[str, ...]:
        """Return the planned file paths."""
        return tuple(planned.path for planned in self.files)


@runtime_checkable
class GenerationProvider(Protocol):
    """Something that can plan, write and fix a project; embedded templates or a language model."""

    name: str

    def plan(self, spec: AppSpec, kind: GenerationKind) -> Plan:
        """Decide which files the project consists of."""
        ...

    def generate(self, plan: Plan) -> dict[str, str]:
        """Write every planned file: {relative POSIX path: content}."""
        ...

    def repair(self, plan: Plan, files: Mapping[str, str], report: ValidationReport) -> dict[str, str]:
        """Return a corrected copy of `files` given the failed validation `report`."""
        ...


class EmbeddedProvider(GenerationProvider):
    """Renders built-in templates in-process: deterministic, no network, no language model."""

    name = "embedded"

    def plan(self, spec: AppSpec, kind: GenerationKind) -> Plan:
        """Plan the files `render` produces for this spec and kind."""
        kind = GenerationKind(kind)
        return Plan(spec=spec, kind=kind, files=tuple(plan_files(spec, kind)))

    def generate(self, plan: Plan) -> dict[str, str]:
        """Render the planned project."""
        return render(plan.spec, plan.kind)

    def repair(self, plan: Plan, files: Mapping[str, str], report: ValidationReport) -> dict[str, str]:
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


PROVIDERS: dict[str, type[GenerationProvider]] = {"embedded": EmbeddedProvider}


def get_provider(name: str) -> GenerationProvider:
    """The provider configured by GENERATION_PROVIDER."""
    try:
        return PROVIDERS[name]()
    except KeyError:
        raise ValueError(f"unknown generation provider {name!r}; known: {', '.join(sorted(PROVIDERS))}") from None
