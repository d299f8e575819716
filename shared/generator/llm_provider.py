"""The language-model provider: a model plans the spec and writes the implementation; tests are ours.

- plan: a prompt (with the request's spec as constraints, if any) becomes an AppSpec through
  structured output; an invalid answer goes back with its errors, LLM_MAX_PLAN_ATTEMPTS times at
  most. A spec without a prompt is the plan as it is.
- generate: the tests, README and .gitignore are rendered from the spec as the embedded provider
  renders them; the model writes the rest, seeing the spec and the tests it must pass.
- repair: the failure and the current implementation go back; the model answers with changed files.

The model writes only inside the application package (and static/ for a web page): the rendered
files are re-rendered on every round and any answer aimed at them, at tests/, or outside those
directories is refused. Tests written by us are therefore the ones the project must pass, and a
model cannot shadow a standard module at the project root to fake a pass.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence

from shared.generator.context import RunContext, TokenUsage
from shared.generator.errors import (
    GenerationCanceled,
    GenerationError,
    PlanInvalid,
    ProviderRejected,
    ProviderUnavailable,
    TokenBudgetExceeded,
)
from shared.generator.llm_files import FileStarts, Refusal, admit_files, may_write, parse_files
from shared.generator.llm_prompts import generate_messages, owned_prefixes, repair_messages
from shared.generator.llm_spec import (
    STRUCTURED_MODES,
    correction_message,
    plan_messages,
    read_spec,
    response_format,
)
from shared.generator.provider import GenerationRequest, Plan
from shared.generator.render import plan_files, render
from shared.generator.validate import ValidationReport
from shared.integrations.llm_client import (
    Completion,
    LLMBudgetExceeded,
    LLMCanceled,
    LLMClient,
    LLMError,
    LLMRejected,
    LLMUnavailable,
)
from shared.projects import Limits
from shared.schemas.spec import AppSpec
from shared.settings import Settings

logger = logging.getLogger(__name__)

_FILE_MARK = re.compile(r"^\s*={3,}\s*FILE:\s*(.+?)\s*={3,}\s*$", re.MULTILINE | re.IGNORECASE)
# Progress inside a call can only be estimated: the share of the output limit written so far,
# never shown as complete before the call ends.
_MAX_CALL_FRACTION = 0.95


class LLMProvider:
    """Plans, writes and repairs through an OpenAI-compatible model (GENERATION_PROVIDER=llm).

    One instance serves one run at a time: it keeps the notes of its last answer (refused files,
    cut-off files) for the next repair request.
    """

    name = "llm"

    def __init__(self, settings: Settings | None = None, *, client: LLMClient | None = None) -> None:
        if settings is None:
            raise ValueError("the llm provider is built from settings (LLM_BASE_URL, LLM_MODEL, ...)")
        self.settings = settings
        self.client = client if client is not None else LLMClient(settings)
        self.limits = Limits.from_settings(settings)
        mode = settings.llm_structured_output
        self._modes = list(STRUCTURED_MODES) if mode == "auto" else [mode]
        self._notes: list[str | Refusal] = []

    def plan(self, request: GenerationRequest, run: RunContext) -> Plan:
        """The request's spec, or the one the model plans from its prompt."""
        if request.prompt is not None:
            spec = self._plan_spec(request.prompt, request.spec, run)
        elif request.spec is not None:
            spec = request.spec
        else:
            raise ValueError("a generation request needs a spec or a prompt")
        return Plan(spec=spec, kind=request.kind, files=tuple(plan_files(spec, request.kind)), prompt=request.prompt)

    def generate(self, plan: Plan, run: RunContext) -> dict[str, str]:
        """The rendered tests and README, plus the implementation the model writes."""
        rendered = self._rendered(plan)
        completion = self._call(run, generate_messages(plan, rendered, self._to_write(plan)), _writing,
                                on_text=self._file_starts(plan, rendered, run))
        implementation = self._admit(plan, {}, completion, rendered)
        return {**rendered, **implementation}

    def repair(self, plan: Plan, files: Mapping[str, str], report: ValidationReport,
               run: RunContext) -> dict[str, str]:
        """The model's corrections applied to the current implementation; the rendered files stay ours."""
        rendered = self._rendered(plan)
        current = {path: content for path, content in files.items() if path not in rendered}
        messages = repair_messages(plan, rendered, self._to_write(plan), current, report, self._notes)
        completion = self._call(run, messages, _writing, on_text=self._file_starts(plan, rendered, run))
        implementation = self._admit(plan, current, completion, rendered)
        return {**rendered, **implementation}

    def _plan_spec(self, prompt: str, constraint: AppSpec | None, run: RunContext) -> AppSpec:
        messages = plan_messages(prompt, constraint)
        attempts = self.settings.llm_max_plan_attempts
        errors: list[str] = []
        for attempt in range(1, attempts + 1):
            completion = self._structured_call(run, messages)
            spec, errors = read_spec(completion.text, constraint)
            if spec is not None:
                return spec
            if completion.finish_reason == "length":
                errors.insert(0, "the answer was cut off at the output limit; answer with a smaller spec")
            logger.info("plan attempt %d/%d was invalid: %s", attempt, attempts, "; ".join(errors[:3]))
            messages = [*messages, {"role": "assistant", "content": completion.text}, correction_message(errors)]
            run.report(detail=f"the plan was invalid; asking again ({attempt} of {attempts})")
        summary = "; ".join(errors[:5]) + (f" (and {len(errors) - 5} more)" if len(errors) > 5 else "")
        raise PlanInvalid(f"the model did not produce a valid spec in {attempts} attempt(s): {summary}", errors)

    def _structured_call(self, run: RunContext, messages: Sequence[Mapping[str, str]]) -> Completion:
        while True:
            mode = self._modes[0]
            try:
                return self._call(run, messages, lambda text: "planning the spec", response_format(mode))
            except ProviderRejected as error:
                # In auto mode a server that refuses a response_format gets the next, plainer one.
                if error.reason != "response_format_unsupported" or len(self._modes) == 1:
                    raise
                logger.info("the model server refused response_format %s; trying %s", mode, self._modes[1])
                self._modes.pop(0)

    def _call(self, run: RunContext, messages: Sequence[Mapping[str, str]], describe: Callable[[str], str | None],
              response_format: Mapping[str, object] | None = None,
              on_text: Callable[[str], None] | None = None) -> Completion:
        """One model call; `on_text(text so far)` also hears each paced progress report (and the full answer)."""
        cap = self.settings.llm_max_job_tokens
        if run.tokens_used >= cap:
            raise TokenBudgetExceeded(run.tokens_used, cap)
        limit = self.settings.llm_max_output_tokens

        def progress(call_tokens: int, text: str) -> None:
            if on_text is not None:
                on_text(text)
            written = len(text) / 4 / limit
            run.report(fraction=min(_MAX_CALL_FRACTION, written), detail=describe(text), pending_tokens=call_tokens)

        try:
            completion = self.client.complete(messages, response_format=response_format,
                                              token_budget=cap - run.tokens_used, on_progress=progress,
                                              should_cancel=run.cancel_requested)
        except LLMError as error:
            run.add_usage(TokenUsage(error.prompt_tokens, error.completion_tokens))
            raise self._translate(error, run) from None
        run.add_usage(TokenUsage(completion.prompt_tokens, completion.completion_tokens))
        self._warn_if_cut(messages, completion)
        return completion

    def _translate(self, error: LLMError, run: RunContext) -> GenerationError:
        if isinstance(error, LLMUnavailable):
            return ProviderUnavailable(str(error), retry_after=error.retry_after)
        if isinstance(error, LLMRejected):
            return ProviderRejected(str(error), reason=error.reason)
        if isinstance(error, LLMCanceled):
            return GenerationCanceled(run.stage, during=True)
        if isinstance(error, LLMBudgetExceeded):
            return TokenBudgetExceeded(run.tokens_used, self.settings.llm_max_job_tokens)
        return ProviderUnavailable(str(error))

    def _file_starts(self, plan: Plan, rendered: Mapping[str, str], run: RunContext) -> Callable[[str], None]:
        """Tells the run of each file the model begins, while it writes, if the project may take that file."""
        starts, owned = FileStarts(), owned_prefixes(plan)

        def seen(text: str) -> None:
            for path in starts.new(text):
                if may_write(path, owned=owned, reserved=rendered, limits=self.limits):
                    run.file_started(path)

        return seen

    def _rendered(self, plan: Plan) -> dict[str, str]:
        owned = owned_prefixes(plan)
        return {path: content for path, content in render(plan.spec, plan.kind).items() if not path.startswith(owned)}

    def _to_write(self, plan: Plan) -> list[tuple[str, str]]:
        owned = owned_prefixes(plan)
        return [(planned.path, planned.purpose) for planned in plan.files if planned.path.startswith(owned)]

    def _admit(self, plan: Plan, current: Mapping[str, str], completion: Completion,
               rendered: Mapping[str, str]) -> dict[str, str]:
        parsed = parse_files(completion.text, truncated=completion.finish_reason == "length")
        accepted, refused = admit_files({**current, **parsed.files}, owned=owned_prefixes(plan), reserved=rendered,
                                        base=rendered, limits=self.limits)
        for refusal in refused:
            logger.warning("a file the model wrote was refused: %s", refusal)
        self._notes = [*parsed.problems, *refused]
        return accepted

    def _warn_if_cut(self, messages: Sequence[Mapping[str, str]], completion: Completion) -> None:
        sent = sum(len(message["content"]) for message in messages) // 4
        if completion.usage_reported and sent > 1000 and completion.prompt_tokens < sent // 2:
            # Ollama cuts prompts longer than its num_ctx without an error; the tests then look unseen.
            logger.warning("the model server counted %d prompt tokens for about %d sent; it may have cut the "
                           "prompt to its context size (Ollama: raise num_ctx / OLLAMA_CONTEXT_LENGTH)",
                           completion.prompt_tokens, sent)


def _writing(text: str) -> str | None:
    marks = _FILE_MARK.findall(text)
    return f"writing {marks[-1].strip('`*')}" if marks else "writing the implementation"
