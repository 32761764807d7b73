"""Stage 1: the teacher writes n traces per prompt into a resumable, sharded dataset.

One record per sample, `messages` ready for TRL. The unit of work (and of loss on kill -9) is one batch of
prompts, written as one atomic shard; a rerun skips prompts already on disk."""

from __future__ import annotations

import logging
from pathlib import Path

from . import legacy
from .backends import backend_class
from .cards import write_generate_card
from .config import RecipeConfig, stage_hash
from .data import load_prompts, parse_shard, select_shard
from .engine import Engine, sample_into
from .models import resolve, set_threads
from .sampling import to_params
from .store import Store, writer_scope

log = logging.getLogger(__name__)

@writer_scope
def run_generate(cfg: RecipeConfig, overwrite: bool = False, backend=None) -> Path:
    """Generate into cfg's generate dir. `backend` reuses an open engine (tests share one vLLM start).
    With `teachers:` each teacher fills its own sample-index range of every prompt, records carry its name,
    and resume is per teacher."""
    specs = cfg.teacher_specs()
    g = cfg.generate
    out = cfg.stage_dir("generate")
    set_threads(cfg.num_threads)
    i, n = parse_shard(g.shard)
    items = select_shard(load_prompts(cfg.data), g.shard)
    keys = ("teacher", "data", "prompt", "generate", *(["teachers"] if cfg.teachers else []))
    drop = ("generate.output_dir", "generate.batch_size", "generate.shard", "generate.openai",
            "generate.max_in_flight", "generate.flush_seconds", "generate.ray")
    chash = stage_hash(cfg, *keys, drop=drop)
    for _, model, kind, _ in specs:
        if backend is None and backend_class(kind).local_weights:
            resolve(model.path, model.gguf_file)  # a wrong model path fails before anything is written
    store = Store(out)
    store.adopt(legacy.generate_identity(cfg, keys, drop), chash)
    teacher_meta = specs[0][1].model_dump() if not cfg.teachers else [t.model_dump() for t in cfg.teachers]
    resumed = store.prepare("generate", chash, {
        "teacher": teacher_meta, "backend": g.backend, "sampling": g.sampling.model_dump(),
        "logprobs": g.logprobs, "task": cfg.data.task, "data": cfg.data.label(), "num_shards": n}, overwrite,
        shard=g.shard)
    ids = store.column("prompt_id")
    names = store.column("teacher") if cfg.teachers and ids else ["teacher"] * len(ids)
    offset = 0
    for name, model, kind, sampling in specs:
        done = {pid for pid, t in zip(ids, names) if t == name or not cfg.teachers}
        if resumed and all(it["id"] in done for it in items):
            log.info("%s: %s: shard %d/%d already complete (%d prompts)", out, name, i, n, len(items))
        else:
            with store.clean_on_refusal(resumed):
                stats = _generate_one(cfg, store, items, done, name, model, kind, sampling, offset, backend, i, n)
            log.info("generate: %s wrote %d prompts, %d tokens (%.1f tok/s)%s", name, stats["new_prompts"],
                     stats["new_tokens"], stats["tokens_per_s"] or 0, " on Ray" if g.ray else "")
        offset += sampling.n
    m = store.update_manifest(parts={f"{i}/{n}": {"complete": True, "prompts": len(items)}})
    complete = all(m["parts"].get(f"{k}/{n}", {}).get("complete") for k in range(n))
    store.update_manifest(complete=complete, records=store.count())
    if complete:
        write_generate_card(out, cfg, store.count(), len(set(store.column("prompt_id"))))
    return out


def _generate_one(cfg, store, items, done, name, model, kind, sampling, offset, backend, i, n) -> dict:
    g = cfg.generate
    engine = Engine.of(g, cfg.num_threads, backend=kind, max_in_flight=g.max_in_flight, flush_seconds=g.flush_seconds)
    log.info("generate: %d prompts x %d samples with %s %s (%s) -> %s", len(items), sampling.n, name, model.path,
             kind, store.root)
    return sample_into(store, items, engine, model, cfg.prompt, to_params(sampling, g.logprobs), task=cfg.data.task,
                       label=model.path, tag=f"s{i}of{n}" + ("" if name == "teacher" else f"-{name}"),
                       desc="generate", seed=sampling.seed, done=done, teacher=name, sample_offset=offset,
                       backend=backend)
