"""Teacher backends behind one small interface: a batch of chat prompts + sampling params in, n completions
per prompt out (text, token ids, finish_reason, counts, optional top-K logprobs). What a backend can do beyond
that it says with attributes (`can_score`: score given completions; `stream`: keep prompts in flight)."""

from __future__ import annotations

from .base import Backend, Completion, Params, PromptIn, prompt_seed, truncate_at_stop  # noqa: F401


def make_backend(kind: str, **kwargs) -> Backend:
    if kind == "hf":
        from .hf import HFBackend

        return HFBackend(**kwargs)
    if kind == "vllm":
        from .vllm import VLLMBackend

        return VLLMBackend(**kwargs)
    if kind == "openai":
        from .openai import OpenAIBackend

        return OpenAIBackend(**kwargs)
    raise ValueError(f"unknown backend {kind!r}")
