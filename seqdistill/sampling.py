"""Sampling from a model into a store, shared by generate (the teacher), eval (every model), the student probe and
kd's on-policy rounds: sampling params, prompt rendering (with the context-limit refusal), the one prompt ->
record path, budget forcing, and the resumable loop that writes one atomic shard per batch. The Engine a stage
samples with and its entry point (here or on Ray) live above this module and `distributed`, in engine.py."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from .backends import Completion, Params, PromptIn, backend_class, make_backend
from .chat import build_messages, encode_prompt, load_template
from .config import OpenAIConfig, PromptConfig, SamplingConfig
from .errors import ConfigError, DataError
from .models import load_options, load_tokenizer, resolve
from .records import RECORD_SCHEMA, make_record
from .store import Store
from .think import thinking_closed

log = logging.getLogger(__name__)


def to_params(s: SamplingConfig, logprobs: int | None = None) -> Params:
    return Params(n=s.n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, max_tokens=s.max_tokens,
                  seed=s.seed, stop=list(s.stop), logprobs=logprobs, thinking_budget=s.thinking_budget,
                  budget_close=s.budget_close)


def sample(backend, prompts: list[PromptIn], p: Params) -> list[list[Completion]]:
    """backend.generate, with budget forcing (s1-style) when p.thinking_budget is set. The budget caps the
    thinking only: a sample that reaches it while still thinking (no `</think>` after the prefill) gets
    `budget_close` appended and continues, one request each, for what is left of max_tokens, and is marked
    `budget_forced`. A sample that closed its thinking before the budget and is still answering is continued as
    it is, never forced. Samples that ended on their own are untouched."""
    if not p.thinking_budget:
        return backend.generate(prompts, p)
    if not getattr(backend, "can_continue", False):
        raise ConfigError("sampling.thinking_budget: budget forcing continues a sample token by token, which the "
                          f"{backend.name} backend cannot; use hf or vllm")
    outs = backend.generate(prompts, replace(p, max_tokens=p.thinking_budget))
    close = backend.tok(p.budget_close, add_special_tokens=False)["input_ids"]
    room = p.max_tokens - p.thinking_budget - len(close)  # the whole sample stays within max_tokens
    if room < 1:
        raise ConfigError(f"sampling.thinking_budget: {p.thinking_budget} + budget_close ({len(close)} tokens) "
                          f"leaves no answer budget within max_tokens {p.max_tokens}")
    forced, answering = [], []
    for pr, row in zip(prompts, outs):
        base = pr.token_ids or backend.tok(pr.text, add_special_tokens=False)["input_ids"]
        for j, c in enumerate(row):
            if c.finish_reason != "length":
                continue
            if thinking_closed((pr.prefill or "") + c.text):
                answering.append((c, PromptIn(id=f"{pr.id}#answer{j}", messages=pr.messages,
                                              token_ids=list(base) + list(c.token_ids))))
            else:
                forced.append((c, PromptIn(id=f"{pr.id}#forced{j}", messages=pr.messages,
                                           token_ids=list(base) + list(c.token_ids) + close)))
    for todo, insert, budget in ((forced, p.budget_close, room), (answering, "", room + len(close))):
        if not todo:
            continue
        answers = backend.generate([pin for _, pin in todo], replace(p, n=1, max_tokens=budget))
        for (c, _), (a,) in zip(todo, answers):
            c.text = c.text + insert + a.text
            c.token_ids = list(c.token_ids) + (close if insert else []) + list(a.token_ids)
            c.completion_tokens = len(c.token_ids)
            c.finish_reason, c.budget_forced = a.finish_reason, bool(insert)
    return outs


def context_limit(tokenizer, engine_kwargs: dict | None = None, key: str | None = "max_model_len") -> int | None:
    """Tokens a prompt may take: the engine's own limit (`key` in its kwargs, the backend's context_key) when set,
    else the model's context length (max_position_embeddings of the folder the tokenizer came from); None when
    neither is known."""
    if key and (engine_kwargs or {}).get(key):
        return int(engine_kwargs[key])
    path = getattr(tokenizer, "name_or_path", None)
    if not path or not (Path(path) / "config.json").is_file():
        return None
    import json

    try:
        return int(json.loads((Path(path) / "config.json").read_text()).get("max_position_embeddings") or 0) or None
    except (OSError, ValueError):
        return None


def build_prompts(prompt: PromptConfig, items: list[dict], tokenizer, limit: int | None = None) -> list[PromptIn]:
    """Chat prompts for `items`. With a tokenizer, a prompt that leaves no room to generate within `limit` tokens
    (the model's context, see context_limit) is refused naming its id, before anything is generated: a 1 MB
    question would otherwise try to allocate its attention (hundreds of GB) or kill the engine."""
    template = load_template(prompt.template)
    out = []
    for it in items:
        msgs = build_messages(it["question"], prompt, template)
        pin = PromptIn(id=it["id"], messages=msgs, prefill=prompt.prefill)
        if tokenizer is not None:
            pin.text, pin.token_ids = encode_prompt(tokenizer, msgs, prompt.prefill)
            if limit and len(pin.token_ids) >= limit:
                raise DataError(f"prompt {it['id']!r}: {len(pin.token_ids)} tokens, the model's context is {limit} "
                                "(max_model_len / max_position_embeddings); shorten or drop this question")
        out.append(pin)
    return out


def engine_prompts(prompt: PromptConfig, items: list[dict], tok, backend: str, vllm_kwargs: dict | None
                   ) -> list[PromptIn]:
    """The prompts an engine samples: rendered with the model's template, each refused when it leaves no room to
    generate within the engine's context (build_prompts). Local loops and Ray replicas both call this."""
    key = backend_class(backend).context_key
    return build_prompts(prompt, items, tok, context_limit(tok, vllm_kwargs if key else None, key))


def to_records(batch, backend: str, task: str, model: str, teacher: str = "teacher", offset: int = 0) -> list[dict]:
    """Records of (item, prompt, completions) triples: one per sample, sample indices from `offset` (several
    teachers share one prompt's index range). Local loops and Ray replicas both call this."""
    return [make_record(it, pr, offset + j, c, task, model, backend, teacher)
            for it, pr, row in batch for j, c in enumerate(row)]


def generate_into(store: Store, items: list[dict], prompts: list[PromptIn], backend, params: Params, *,
                  batch_size: int, task: str, model: str, tag: str, desc: str = "generate",
                  done: set | None = None, max_in_flight: int | None = None, flush_seconds: float = 60.0,
                  teacher: str = "teacher", sample_offset: int = 0) -> dict:
    """Generate for every item not yet on disk (`done`: ids already read by the caller). Returns counts.

    Backends that can stream (vllm, openai) keep up to `max_in_flight` prompts going and each finished prompt
    joins the next shard, written every `batch_size` prompts or `flush_seconds`, whichever comes first. The hf
    backend runs batches of `batch_size` sorted by prompt length (its finished rows leave the batch). Either way a
    prompt is on disk with all its samples or not at all: resume is exactly-once."""
    done = set(store.column("prompt_id")) if done is None else done
    todo = [(it, pr) for it, pr in zip(items, prompts) if it["id"] not in done]
    if done:
        log.info("%s: resuming, %d prompts already on disk, %d to go", store.root, len(items) - len(todo), len(todo))
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="prompt", dynamic_ncols=True)
    t0, counts = time.perf_counter(), {"tokens": 0}

    def flush(batch: list[tuple[dict, PromptIn, list[Completion]]]) -> None:
        # several teachers share one prompt's sample indices: each gets its own range (sample_offset)
        records = to_records(batch, backend.name, task, model, teacher, sample_offset)
        store.write_shard(records, tag, RECORD_SCHEMA)
        counts["tokens"] += sum(r["completion_tokens"] for r in records)
        bar.update(len(batch))
        bar.set_postfix(tok_s=f"{counts['tokens'] / max(time.perf_counter() - t0, 1e-9):.1f}")

    if hasattr(backend, "stream") and not params.thinking_budget and todo:
        by_id = {pr.id: it for it, pr in todo}
        buffer, last = [], 0.0
        for got in backend.stream((pr for _, pr in todo), params, max_in_flight or batch_size):
            if got is not None:  # None: a heartbeat, nothing finished
                pr, row = got
                if not buffer:
                    last = time.perf_counter()  # the oldest unwritten prompt's age decides a time flush
                buffer.append((by_id[pr.id], pr, row))
            if len(buffer) >= batch_size or (buffer and time.perf_counter() - last >= flush_seconds):
                flush(buffer)
                buffer = []
        if buffer:
            flush(buffer)
    else:
        if getattr(backend, "reports_progress", False):  # movement inside a batch: tokens decoded so far
            shown = [0.0]

            def moving(n: int) -> None:
                now = time.perf_counter()
                if now - shown[0] < 2.0:  # every token would flood a log (or a pipe nobody reads yet)
                    return
                shown[0] = now
                bar.set_postfix(batch_tok=n, tok_s=f"{(counts['tokens'] + n) / max(now - t0, 1e-9):.1f}")
            backend.progress = moving
        if getattr(backend, "static_batches", False) and todo and todo[0][1].token_ids is not None:
            todo.sort(key=lambda x: len(x[1].token_ids))  # similar lengths per batch: little padding
            log.info("%s: %d prompts in batches of %d, sorted by prompt length", desc, len(todo), batch_size)
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            outs = sample(backend, [pr for _, pr in batch], params)
            flush([(it, pr, row) for (it, pr), row in zip(batch, outs)])
    bar.close()
    busy = time.perf_counter() - t0
    return {"new_prompts": len(todo), "new_tokens": counts["tokens"], "seconds": busy,
            "tokens_per_s": counts["tokens"] / busy if busy and todo else None}


def open_backend(kind: str, model_cfg, openai: OpenAIConfig, vllm_kwargs: dict, seed: int):
    """Resolve the model and build a backend + tokenizer (openai needs no local weights)."""
    if not backend_class(kind).local_weights:
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
