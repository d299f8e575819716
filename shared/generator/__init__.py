"""Embedded code generator: turns an AppSpec into a runnable, tested standard-library project."""
from shared.generator.pipeline import (
    GenerationCanceled,
    GenerationError,
    GenerationFailed,
    GenerationResult,
    GenerationSummary,
    ProviderUnavailable,
    run_pipeline,
)
from shared.generator.provider import PROVIDERS, EmbeddedProvider, GenerationProvider, Plan, get_provider
from shared.generator.render import PlannedFile, plan_files, render
from shared.generator.validate import FileProblem, ValidationReport, validate_project

__all__ = [
    "EmbeddedProvider",
    "FileProblem",
    "GenerationCanceled",
    "GenerationError",
    "GenerationFailed",
    "GenerationProvider",
    "GenerationResult",
    "GenerationSummary",
    "Plan",
    "PROVIDERS",
    "ProviderUnavailable",
    "get_provider",
    "PlannedFile",
    "plan_files",
    "render",
    "run_pipeline",
    "validate_project",
    "ValidationReport",
]
