"""What a provider sees of the run it works for: the stage, progress reports, cancel requests, tokens."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shared.generator.errors import GenerationCanceled, UsageByStage


@dataclass(frozen=True)
class TokenUsage:
    """Tokens one model call (or several, added up) consumed."""

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)

    def to_dict(self) -> dict[str, int]:
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(frozen=True)
class ProgressUpdate:
    """One progress report: `detail` says what is happening inside the stage, `tokens` the run's total so far."""

    percent: int
    stage: str
    detail: str | None = None
    tokens: int = 0


ProgressCallback = Callable[[int, str], None]
UpdateCallback = Callable[[ProgressUpdate], None]
CancelCheck = Callable[[], bool]
FileCallback = Callable[[str, str], None]

# What happened to a file of the run, as `on_file(path, action)` hears it. They describe the
# generation in memory, never storage: a run's files reach its project only when its job succeeds.
FILE_STARTED = "started"  # the provider began the file (a model's answer reached its start line)
FILE_GENERATED = "generated"  # the file is complete in the run's output
FILE_DROPPED = "dropped"  # a file started or generated earlier is not in the run's output (refused, or removed)


class RunContext:
    """Created by the pipeline for one run and handed to every provider call.

    Providers report progress inside a stage with `report` (they bound the rate themselves), poll
    `cancel_requested` while they wait on something slow, and `add_usage` for every model call.
    """

    def __init__(self, on_progress: ProgressCallback | None = None, on_update: UpdateCallback | None = None,
                 should_cancel: CancelCheck | None = None, on_file: FileCallback | None = None) -> None:
        self._on_progress = on_progress
        self._on_update = on_update
        self._should_cancel = should_cancel
        self._on_file = on_file
        self.stage = ""
        self._start = self._end = self._percent = 0
        self._last_progress: tuple[int, str] | None = None
        self._usage: dict[str, TokenUsage] = {}
        # Files the current provider call has started and not yet accounted for.
        self._started: set[str] = set()

    def enter(self, stage: str, start: int, end: int) -> None:
        """Begin a stage spanning [start, end) percent; a pending cancel stops the run before it."""
        if self.cancel_requested():
            raise GenerationCanceled(stage)
        self.stage, self._start, self._end = stage, start, max(start, end)
        self._emit(start, None, 0)

    def report(self, *, fraction: float | None = None, detail: str | None = None, pending_tokens: int = 0) -> None:
        """Report progress inside the current stage.

        `fraction` (0..1) moves the percent within the stage's span; `pending_tokens` are those of a
        model call still running, not yet charged with `add_usage`.
        """
        percent = self._percent
        if fraction is not None and self._end > self._start:
            fraction = min(max(fraction, 0.0), 1.0)
            percent = max(percent, min(self._end - 1, self._start + int(fraction * (self._end - self._start))))
        self._emit(percent, detail, pending_tokens)

    def file_started(self, path: str) -> None:
        """A provider began writing `path` (told once per provider call; the pipeline tells the rest)."""
        if path not in self._started:
            self._started.add(path)
            self._file(path, FILE_STARTED)

    def files_done(self, files: Mapping[str, str], before: Mapping[str, str]) -> None:
        """Account for a provider call's output: one step per file generated, then the files dropped.

        A file is generated when its content changed from `before` or the provider started it
        again; one it never said it started is started and generated at once. Files of `before`
        missing from `files`, and files started but not in the output (a model's file the project
        refused), are dropped. Each generated file moves the percent through the stage.
        """
        started, self._started = self._started, set()
        generated = sorted(path for path, content in files.items() if path in started or before.get(path) != content)
        for index, path in enumerate(generated, 1):
            if path not in started:
                self._file(path, FILE_STARTED)
            self._file(path, FILE_GENERATED)
            self.report(fraction=index / len(generated), detail=f"generated {path}")
        for path in sorted((set(before) | started) - set(files)):
            self._file(path, FILE_DROPPED)

    def cancel_requested(self) -> bool:
        return self._should_cancel is not None and bool(self._should_cancel())

    def add_usage(self, usage: TokenUsage) -> None:
        """Charge a model call's tokens to the current stage."""
        self._usage[self.stage] = self._usage.get(self.stage, TokenUsage()) + usage

    @property
    def tokens_used(self) -> int:
        return sum(usage.total for usage in self._usage.values())

    def usage(self) -> UsageByStage:
        """Tokens per stage that used any: {"plan": {"prompt_tokens": .., "completion_tokens": ..}, ...}."""
        return {stage: usage.to_dict() for stage, usage in self._usage.items()}

    def _file(self, path: str, action: str) -> None:
        if self._on_file is not None:
            self._on_file(path, action)

    def _emit(self, percent: int, detail: str | None, pending_tokens: int) -> None:
        self._percent = percent
        # The plain callback only hears of changes: an update that only changes the detail would
        # otherwise rewrite the same percent and stage.
        if self._on_progress is not None and self._last_progress != (percent, self.stage):
            self._last_progress = (percent, self.stage)
            self._on_progress(percent, self.stage)
        if self._on_update is not None:
            self._on_update(ProgressUpdate(percent, self.stage, detail, self.tokens_used + pending_tokens))
