"""Stage 1: the teacher writes n traces per prompt into a resumable, sharded dataset.

One record per sample, `messages` ready for TRL. The unit of work (and of loss on kill -9) is one batch of
prompts, written as one atomic shard; a rerun skips prompts already on disk."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pyarrow as pa
from tqdm import tqdm

from .backends import Completion, Params, PromptIn, make_backend
from .chat import build_messages, encode_prompt, load_template, split_reasoning
from .config import RecipeConfig, SamplingConfig, stage_hash
from .data import load_prompts, parse_shard, select_shard
from .models import load_options, load_tokenizer, resolve, set_threads
from .store import Store

log = logging.getLogger(__name__)

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
RECORD_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("sample_index", pa.int32()), ("question", pa.string()),
    ("gold", pa.string()), ("task", pa.string()), ("messages", pa.list_(MESSAGE)),
    ("completion", pa.string()), ("reasoning", pa.string()), ("answer", pa.string()),
    ("think_closed", pa.bool_()), ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()),
    ("prompt_ids", pa.list_(pa.int32())), ("completion_ids", pa.list_(pa.int32())),
    # top-K teacher logprobs, row-major (completion_tokens, K): int32 ids and float16 logprobs as raw bytes
    ("logprobs_k", pa.int32()), ("teacher_topk_ids", pa.binary()), ("teacher_topk_logprobs", pa.binary()),
    ("model", pa.string()), ("backend", pa.string()), ("created", pa.float64()),
])


def to_params(s: SamplingConfig, logprobs: int | None = None) -> Params:
    return Params(n=s.n, temperature=s.temperature, top_p=s.top_p, top_k=s.top_k, max_tokens=s.max_tokens,
                  seed=s.seed, stop=list(s.stop), logprobs=logprobs)


def build_prompts(cfg: RecipeConfig, items: list[dict], tokenizer) -> list[PromptIn]:
    template = load_template(cfg.prompt.template)
    out = []
    for it in items:
        msgs = build_messages(it["question"], cfg.prompt, template)
        pin = PromptIn(id=it["id"], messages=msgs, prefill=cfg.prompt.prefill)
        if tokenizer is not None:
            pin.text, pin.token_ids = encode_prompt(tokenizer, msgs, cfg.prompt.prefill)
        out.append(pin)
    return out


def make_record(item: dict, pin: PromptIn, j: int, c: Completion, task: str, model: str, backend: str) -> dict:
    full = (pin.prefill or "") + c.text  # the assistant turn as the student should learn it
    reasoning, answer, closed = split_reasoning(full)
    rec = {
        "prompt_id": item["id"], "sample_index": j, "question": item["question"], "gold": item["answer"],
        "task": task, "messages": pin.messages + [{"role": "assistant", "content": full}],
        "completion": c.text, "reasoning": reasoning, "answer": answer, "think_closed": closed,
        "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens, "prompt_ids": pin.token_ids,
        "completion_ids": c.token_ids or None, "logprobs_k": None, "teacher_topk_ids": None,
        "teacher_topk_logprobs": None, "model": model, "backend": backend, "created": time.time(),
    }
    if c.topk_ids is not None:
        rec["logprobs_k"] = int(c.topk_ids.shape[1])
        rec["teacher_topk_ids"] = c.topk_ids.astype("<i4").tobytes()
        rec["teacher_topk_logprobs"] = c.topk_logprobs.astype("<f2").tobytes()
    return rec


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


def open_backend(kind: str, model_cfg, cfg: RecipeConfig, vllm_kwargs: dict, seed: int):
    """Resolve the model and build a backend + tokenizer (openai needs no local weights)."""
    if kind == "openai":
        tok = None
        p = Path(model_cfg.path)
        if p.is_dir() and (p / "tokenizer_config.json").is_file():
            tok = load_tokenizer(str(p), model_cfg.chat_template)
        return make_backend("openai", model_path=model_cfg.path, openai=cfg.generate.openai), tok, model_cfg.path
    path = resolve(model_cfg.path, model_cfg.gguf_file)
    opts = load_options(model_cfg)
    tok = load_tokenizer(path, model_cfg.chat_template, **opts)
    backend = make_backend(kind, model_path=path, tokenizer=tok, dtype=model_cfg.dtype,
                           vllm_kwargs=vllm_kwargs, seed=seed, load_options=opts)
    return backend, tok, path


def run_generate(cfg: RecipeConfig, overwrite: bool = False, backend=None) -> Path:
    """Generate into cfg's generate dir. `backend` reuses an open engine (tests share one vLLM start)."""
    teacher = cfg.need("teacher")
    g = cfg.generate
    out = cfg.stage_dir("generate")
    set_threads(cfg.num_threads)
    i, n = parse_shard(g.shard)
    items = select_shard(load_prompts(cfg.data), g.shard)
    chash = stage_hash(cfg, "teacher", "data", "prompt", "generate",
                       drop=("generate.output_dir", "generate.batch_size", "generate.shard", "generate.openai"))
    if backend is None and g.backend != "openai":
        resolve(teacher.path, teacher.gguf_file)  # a wrong model path fails before anything is written
    store = Store(out)
    resumed = store.prepare("generate", chash, {
        "teacher": teacher.model_dump(), "backend": g.backend, "sampling": g.sampling.model_dump(),
        "logprobs": g.logprobs, "task": cfg.data.task, "data": cfg.data.label(), "num_shards": n}, overwrite)
    done = set(store.column("prompt_id"))
    if resumed and all(it["id"] in done for it in items):
        log.info("%s: shard %d/%d already complete (%d prompts)", out, i, n, len(items))
    else:
        if backend is None:
            backend, tok, path = open_backend(g.backend, teacher, cfg, g.vllm, g.sampling.seed)
            owned = True
        else:
            tok, path, owned = backend.tok, teacher.path, False
        log.info("generate: %d prompts x %d samples with %s (%s) -> %s", len(items), g.sampling.n, path,
                 g.backend, out)
        try:
            stats = generate_into(store, items, build_prompts(cfg, items, tok), backend,
                                  to_params(g.sampling, g.logprobs), batch_size=g.batch_size,
                                  task=cfg.data.task, model=teacher.path, tag=f"s{i}of{n}", done=done)
        finally:
            if owned:
                backend.close()
        log.info("generate: wrote %d prompts, %d tokens (%.1f tok/s)", stats["new_prompts"], stats["new_tokens"],
                 stats["tokens_per_s"] or 0)
    m = store.update_manifest(parts={f"{i}/{n}": {"complete": True, "prompts": len(items)}})
    complete = all(m["parts"].get(f"{k}/{n}", {}).get("complete") for k in range(n))
    store.update_manifest(complete=complete, records=store.count())
    return out
