"""Stage 1: the teacher writes n traces per prompt into a resumable, sharded dataset.

One record per sample, `messages` ready for TRL. The unit of work (and of loss on kill -9) is one batch of
prompts, written as one atomic shard; a rerun skips prompts already on disk."""

from __future__ import annotations

import logging
from pathlib import Path

from .cards import write_generate_card
from .config import RecipeConfig, stage_hash
from .data import load_prompts, parse_shard, select_shard
from .models import resolve, set_threads
from .sampling import build_prompts, generate_into, open_backend, to_params
from .store import Store

log = logging.getLogger(__name__)

def run_generate(cfg: RecipeConfig, overwrite: bool = False, backend=None) -> Path:
    """Generate into cfg's generate dir. `backend` reuses an open engine (tests share one vLLM start)."""
    teacher = cfg.need("teacher")
    g = cfg.generate
    out = cfg.stage_dir("generate")
    set_threads(cfg.num_threads)
    i, n = parse_shard(g.shard)
    items = select_shard(load_prompts(cfg.data), g.shard)
    chash = stage_hash(cfg, "teacher", "data", "prompt", "generate",
                       drop=("generate.output_dir", "generate.batch_size", "generate.shard", "generate.openai",
                             "generate.max_in_flight", "generate.flush_seconds", "generate.ray"))
    if backend is None and g.backend != "openai":
        resolve(teacher.path, teacher.gguf_file)  # a wrong model path fails before anything is written
    store = Store(out)
    resumed = store.prepare("generate", chash, {
        "teacher": teacher.model_dump(), "backend": g.backend, "sampling": g.sampling.model_dump(),
        "logprobs": g.logprobs, "task": cfg.data.task, "data": cfg.data.label(), "num_shards": n}, overwrite)
    done = set(store.column("prompt_id"))
    if resumed and all(it["id"] in done for it in items):
        log.info("%s: shard %d/%d already complete (%d prompts)", out, i, n, len(items))
    elif g.ray is not None and backend is None:
        from .distributed import ray_generate_into

        stats = ray_generate_into(store, items, g.ray, g.backend, teacher, g.openai, g.vllm, g.sampling.seed,
                                  cfg.prompt, to_params(g.sampling, g.logprobs), task=cfg.data.task,
                                  model=teacher.path, tag=f"s{i}of{n}", done=done, threads=cfg.num_threads)
        log.info("generate: wrote %d prompts, %d tokens (%.1f tok/s) on Ray", stats["new_prompts"],
                 stats["new_tokens"], stats["tokens_per_s"] or 0)
    else:
        if backend is None:
            backend, tok, path = open_backend(g.backend, teacher, g.openai, g.vllm, g.sampling.seed)
            owned = True
        else:
            tok, path, owned = backend.tok, teacher.path, False
        log.info("generate: %d prompts x %d samples with %s (%s) -> %s", len(items), g.sampling.n, path,
                 g.backend, out)
        try:
            stats = generate_into(store, items, build_prompts(cfg.prompt, items, tok), backend,
                                  to_params(g.sampling, g.logprobs), batch_size=g.batch_size,
                                  task=cfg.data.task, model=teacher.path, tag=f"s{i}of{n}", done=done,
                                  max_in_flight=g.max_in_flight, flush_seconds=g.flush_seconds)
        finally:
            if owned:
                backend.close()
        log.info("generate: wrote %d prompts, %d tokens (%.1f tok/s)", stats["new_prompts"], stats["new_tokens"],
                 stats["tokens_per_s"] or 0)
    m = store.update_manifest(parts={f"{i}/{n}": {"complete": True, "prompts": len(items)}})
    complete = all(m["parts"].get(f"{k}/{n}", {}).get("complete") for k in range(n))
    store.update_manifest(complete=complete, records=store.count())
    if complete:
        write_generate_card(out, cfg, store.count(), len(set(store.column("prompt_id"))))
    return out
