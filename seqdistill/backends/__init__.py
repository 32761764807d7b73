"""Teacher backends behind one small interface: a batch of chat prompts + sampling params in, n completions
per prompt out (text, token ids, finish_reason, counts, optional top-K logprobs). What a backend can do beyond
that it says with attributes (`can_score`: score given completions; `stream`: keep prompts in flight)."""

from __future__ import annotations

from .base import Backend, Completion, Params, PromptIn, prompt_seed, truncate_at_stop  # noqa: F401

# the one registry: a new backend is its own module plus one line here; what it can do are its class attributes
# (local_weights, can_continue, can_score, static_batches, reports_progress, context_key, max_logprobs_default)
_REGISTRY = {"hf": ("hf", "HFBackend"), "vllm": ("vllm", "VLLMBackend"), "openai": ("openai", "OpenAIBackend")}


def backend_class(kind: str):
    """The class of a backend name (importing its module; the engines themselves load lazily)."""
    import importlib

    if kind not in _REGISTRY:
        raise ValueError(f"unknown backend {kind!r}")
    module, cls = _REGISTRY[kind]
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)


def make_backend(kind: str, **kwargs) -> Backend:
    return backend_class(kind)(**kwargs)
