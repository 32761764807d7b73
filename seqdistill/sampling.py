"""Sampling from a model into a store, shared by generate (the teacher) and eval (every model): sampling params,
prompt rendering, backend opening, and the resumable batch loop that writes one atomic shard per batch."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tqdm import tqdm

from .backends import Params, PromptIn, make_backend
from .chat import build_messages, encode_prompt, load_template
from .config import OpenAIConfig, PromptConfig, SamplingConfig
from .models import load_options, load_tokenizer, resolve
from .records import RECORD_SCHEMA, make_record
from .store import Store

log = logging.getLogger(__name__)


def to_params(s: SamplingConfig, logprobs: int | None = None) -> Params:
    return Params(n=s.n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, max_tokens=s.max_tokens,
                  seed=s.seed, stop=list(s.stop), logprobs=logprobs)


def build_prompts(prompt: PromptConfig, items: list[dict], tokenizer) -> list[PromptIn]:
    template = load_template(prompt.template)
    out = []
    for it in items:
        msgs = build_messages(it["question"], prompt, template)
        pin = PromptIn(id=it["id"], messages=msgs, prefill=prompt.prefill)
        if tokenizer is not None:
            pin.text, pin.token_ids = encode_prompt(tokenizer, msgs, prompt.prefill)
        out.append(pin)
    return out


def generate_into(store: Store, items: list[dict], prompts: list[PromptIn], backend, params: Params, *,
                  batch_size: int, task: str, model: str, tag: str, desc: str = "generate",
                  done: set | None = None) -> dict:
    """Generate for every item not yet on disk (`done`: ids already read by the caller). Returns counts."""
    done = set(store.column("prompt_id")) if done is None else done
    todo = [(it, pr) for it, pr in zip(items, prompts) if it["id"] not in done]
    if done:
        log.info("%s: resuming, %d prompts already on disk, %d to go", store.root, len(items) - len(todo), len(todo))
    tokens, busy = 0, 0.0
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="prompt", dynamic_ncols=True)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        t0 = time.perf_counter()
        outs = backend.generate([pr for _, pr in batch], params)
        busy += time.perf_counter() - t0
        records = [make_record(it, pr, j, c, task, model, backend.name)
                   for (it, pr), row in zip(batch, outs) for j, c in enumerate(row)]
        store.write_shard(records, tag, RECORD_SCHEMA)
        tokens += sum(r["completion_tokens"] for r in records)
        bar.update(len(batch))
        bar.set_postfix(tok_s=f"{tokens / max(busy, 1e-9):.1f}")
    bar.close()
    return {"new_prompts": len(todo), "new_tokens": tokens, "seconds": busy,
            "tokens_per_s": tokens / busy if busy else None}


def open_backend(kind: str, model_cfg, openai: OpenAIConfig, vllm_kwargs: dict, seed: int):
    """Resolve the model and build a backend + tokenizer (openai needs no local weights)."""
    if kind == "openai":
        tok = None
        p = Path(model_cfg.path)
        if p.is_dir() and (p / "tokenizer_config.json").is_file():
            tok = load_tokenizer(str(p), model_cfg.chat_template)
        return make_backend("openai", model_path=model_cfg.path, openai=openai), tok, model_cfg.path
    path = resolve(model_cfg.path, model_cfg.gguf_file)
    opts = load_options(model_cfg)
    tok = load_tokenizer(path, model_cfg.chat_template, **opts)
    backend = make_backend(kind, model_path=path, tokenizer=tok, dtype=model_cfg.dtype,
                           vllm_kwargs=vllm_kwargs, seed=seed, load_options=opts)
    return backend, tok, path
