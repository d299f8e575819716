"""The providers GENERATION_PROVIDER can name, and building the configured one."""
from __future__ import annotations

from shared.generator.llm_provider import LLMProvider
from shared.generator.provider import EmbeddedProvider, GenerationProvider
from shared.settings import Settings

PROVIDERS: dict[str, type[GenerationProvider]] = {"embedded": EmbeddedProvider, "llm": LLMProvider}


def get_provider(name: str, settings: Settings | None = None) -> GenerationProvider:
    """The provider configured by GENERATION_PROVIDER; the llm provider needs `settings`."""
    try:
        factory = PROVIDERS[name]
    except KeyError:
        raise ValueError(f"unknown generation provider {name!r}; known: {', '.join(sorted(PROVIDERS))}") from None
    return factory(settings)

