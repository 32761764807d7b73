"""What every backend takes and returns: prompts, sampling params, completions, and the per-prompt seed. The
backends import this module, never the package, so the package can choose among them without a cycle."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..config import SamplingConfig

_DEFAULT = SamplingConfig()

@dataclass
class PromptIn:
    id: str
    messages: list[dict]
    text: str | None = None  # rendered with the chat template + prefill (hf / vllm)
    token_ids: list[int] | None = None
    prefill: str | None = None


@dataclass
class Params:
    """What a backend samples with. Built from a recipe's SamplingConfig (sampling.to_params); its defaults are
    that schema's, read from it, so they live in one place."""
    n: int = _DEFAULT.n
    temperature: float = _DEFAULT.temperature
    top_p: float = _DEFAULT.top_p
    top_k: int | None = _DEFAULT.top_k
    max_tokens: int = _DEFAULT.max_tokens
    seed: int = _DEFAULT.seed
    stop: list[str] = field(default_factory=lambda: list(_DEFAULT.stop))
    logprobs: int | None = None  # top-K capture (generate.logprobs)
    thinking_budget: int | None = _DEFAULT.thinking_budget  # budget forcing (sampling.sample); backends never see it
    budget_close: str = _DEFAULT.budget_close
    # speed timing only: decode exactly max_tokens per sequence, end-of-sequence and stop strings ignored, so
    # every model is timed on the same work (a batch's time is set by its longest answer otherwise)
    ignore_eos: bool = False


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" | "length"
    completion_tokens: int
    prompt_tokens: int
    token_ids: list[int] = field(default_factory=list)
    topk_ids: np.ndarray | None = None  # (completion_tokens, K) int32
    topk_logprobs: np.ndarray | None = None  # (completion_tokens, K) float16
    budget_forced: bool = False  # the thinking budget ran out and the answer was forced


class Backend(Protocol):
    name: str

    def generate(self, prompts: list[PromptIn], params: Params) -> list[list[Completion]]: ...

    def close(self) -> None: ...


def prompt_seed(base: int, prompt_id: str) -> int:
    """Per-prompt seed: a prompt's samples do not depend on which batch it landed in."""
    return int(hashlib.sha256(f"{base}:{prompt_id}".encode()).hexdigest()[:8], 16)


def truncate_at_stop(text: str, stop: list[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
