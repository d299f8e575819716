"""Code generator: turns a spec or a prompt into a runnable, tested standard-library project."""
from shared.generator.context import ProgressUpdate, RunContext, TokenUsage
from shared.generator.errors import (
    GenerationCanceled,
    GenerationError,
    GenerationFailed,
    PlanInvalid,
    ProviderRejected,
    ProviderUnavailable,
    TokenBudgetExceeded,
)
from shared.generator.llm_provider import LLMProvider
from shared.generator.pipeline import GenerationResult, GenerationSummary, run_pipeline
from shared.generator.provider import EmbeddedProvider, GenerationProvider, GenerationRequest, Plan
from shared.generator.registry import PROVIDERS, get_provider
from shared.generator.render import PlannedFile, plan_files, render
from shared.generator.validate import FileProblem, ValidationReport, validate_project

__all__ = [
    "EmbeddedProvider",
    "FileProblem",
    "GenerationCanceled",
    "GenerationError",
    "GenerationFailed",
    "GenerationProvider",
    "GenerationRequest",
    "GenerationResult",
    "GenerationSummary",
    "LLMProvider",
    "Plan",
    "PlanInvalid",
    "PlannedFile",
    "ProgressUpdate",
    "PROVIDERS",
    "ProviderRejected",
    "ProviderUnavailable",
    "RunContext",
    "TokenBudgetExceeded",
    "TokenUsage",
    "get_provider",
    "plan_files",
    "render",
    "run_pipeline",
    "validate_project",
    "ValidationReport",
]
