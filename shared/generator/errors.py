"""The generation pipeline's failures: which are worth a retry, and which end the job at once.

Only `ProviderUnavailable` is transient. Every error carries `usage`, the tokens the run had spent
per stage when it stopped (empty for the embedded provider), so a failed or canceled job can still
be charged for what the model did.
"""
from __future__ import annotations

from shared.generator.validate import ValidationReport

UsageByStage = dict[str, dict[str, int]]


class GenerationError(Exception):
    """Base class of the pipeline's own failures."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.usage: UsageByStage = {}


class ProviderUnavailable(GenerationError):
    """The provider could not answer for now (timeout, rate limit, outage): worth retrying later.

    `retry_after` is the wait in seconds the provider asked for (already capped), or None.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ProviderRejected(GenerationError):
    """The provider refused the request for a reason a retry cannot fix (bad key, unknown model, ...).

    `reason` is a short code: authentication, permission, model_not_found, bad_request,
    context_length_exceeded, spec_required, unusable_answer.
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TokenBudgetExceeded(GenerationError):
    """The run used more tokens than one job may (LLM_MAX_JOB_TOKENS)."""

    def __init__(self, used: int, cap: int) -> None:
        super().__init__(f"the job used {used} tokens, more than the {cap} one job may use (LLM_MAX_JOB_TOKENS)")
        self.used = used
        self.cap = cap


class PlanInvalid(GenerationError):
    """The model's plan still did not validate after every allowed attempt; `errors` are the last ones."""

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.errors = errors


class GenerationCanceled(GenerationError):
    """Raised when `should_cancel` asks to stop; `stage` is the stage that was about to start or running."""

    def __init__(self, stage: str, *, during: bool = False) -> None:
        super().__init__(f"generation canceled {'during' if during else 'before'} the {stage} stage")
        self.stage = stage


class GenerationFailed(GenerationError):
    """Raised when the project still fails validation after every allowed repair."""

    def __init__(self, message: str, report: ValidationReport, repair_attempts: int) -> None:
        super().__init__(message)
        self.report = report
        self.repair_attempts = repair_attempts

