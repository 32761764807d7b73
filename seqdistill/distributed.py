"""Generation on a Ray cluster (`generate.ray`, `eval.ray`): N engine replicas as Ray actors, each holding its own
backend (a vLLM engine with its own tensor/pipeline parallel size, or transformers); chunks of prompts go to
whichever replica is free. Only this driver writes, through the same store, so every prompt lands on disk
exactly once: a chunk is written when its replica returns it, and a replica that dies has its chunk sent to
another one (and is replaced). A crash of the driver itself resumes from disk like any generate run.

Ray is optional (`pip install -e ".[ray]"`). `--shard i/N` stays for schedulers that start N independent jobs
(Slurm arrays); Ray is for one job that owns a cluster and should survive the loss of a node."""

from __future__ import annotations

import logging
import time
from collections import Counter, deque

from tqdm import tqdm

from .backends import Params
from .config import ModelConfig, OpenAIConfig, PromptConfig
from .errors import ConfigError, SeqdistillError
from .records import RECORD_SCHEMA
from .store import Store

log = logging.getLogger(__name__)
REPLICAS: list = []  # the live actor handles of the current run (tests kill one to check recovery)


class Replica:
    """One engine. Runs in its own Ray worker process; returns finished records, never writes."""

    def __init__(self, kind: str, model: dict, openai: dict, vllm: dict, seed: int, prompt: dict, threads):
        from .models import set_threads
        from .sampling import open_backend

        set_threads(threads)
        self.prompt, self.kind, self.vllm = PromptConfig(**prompt), kind, vllm
        self.backend, self.tok, self.path = open_backend(kind, ModelConfig(**model), OpenAIConfig(**openai),
                                                         vllm, seed)

    def node_id(self) -> str:
        """The Ray node this replica runs on (logs, and the node-loss test)."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def run(self, items: list[dict], params: Params, task: str, model: str, teacher: str = "teacher",
            offset: int = 0) -> tuple[list[dict], float]:
        from .sampling import engine_prompts, sample, to_records

        t0 = time.perf_counter()
        # the same prompt -> record path as the local loop: an over-long prompt is refused here too
        prompts = engine_prompts(self.prompt, items, self.tok, self.kind, self.vllm)
        outs = sample(self.backend, prompts, params)
        records = to_records(zip(items, prompts, outs), self.backend.name, task, model, teacher, offset)
        return records, time.perf_counter() - t0


def ray_generate_into(store: Store, items: list[dict], engine, model_cfg: ModelConfig, seed: int,
                      prompt: PromptConfig, params: Params, *, task: str, model: str, tag: str,
                      desc: str = "generate", done: set | None = None, teacher: str = "teacher",
                      sample_offset: int = 0) -> dict:
    """engine.sample_into on a Ray cluster: `engine` (engine.Engine) names the backend, its settings and
    engine.ray the cluster."""
    ray_cfg, kind, openai, vllm, threads = engine.ray, engine.backend, engine.openai, engine.vllm, engine.threads
    try:
        import ray
    except ImportError:
        raise ConfigError("generate.ray: ray is not installed; pip install -e '.[ray]'") from None
    done = set(store.column("prompt_id")) if done is None else done
    todo = [it for it in items if it["id"] not in done]
    if not todo:
        return {"new_prompts": 0, "new_tokens": 0, "seconds": 0.0, "tokens_per_s": None}
    if not ray.is_initialized():
        ray.init(address=ray_cfg.address, num_cpus=ray_cfg.local_num_cpus if ray_cfg.address is None else None,
                 ignore_reinit_error=True, log_to_driver=False, include_dashboard=False)
    actor = ray.remote(Replica).options(num_cpus=ray_cfg.num_cpus_per_replica,
                                        num_gpus=ray_cfg.num_gpus_per_replica)
    args = (kind, model_cfg.model_dump(), openai.model_dump(), vllm, seed, prompt.model_dump(), threads)
    REPLICAS[:] = [actor.remote(*args) for _ in range(ray_cfg.replicas)]
    chunks = deque(enumerate(todo[i:i + ray_cfg.chunk_size] for i in range(0, len(todo), ray_cfg.chunk_size)))
    log.info("%s: %d prompts in %d chunks over %d Ray replicas (%s)", desc, len(todo), len(chunks),
             ray_cfg.replicas, ray_cfg.address or "local Ray instance")
    idle, inflight, failures = list(range(len(REPLICAS))), {}, Counter()
    per_replica = {i: {"prompts": 0, "tokens": 0, "seconds": 0.0} for i in idle}
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc=desc, unit="prompt", dynamic_ncols=True)
    t0, tokens = time.perf_counter(), 0
    try:
        while chunks or inflight:
            while idle and chunks:
                r = idle.pop()
                ci, chunk = chunks.popleft()
                inflight[REPLICAS[r].run.remote(chunk, params, task, model, teacher, sample_offset)] = (r, ci, chunk)
            ready, _ = ray.wait(list(inflight), num_returns=1)
            r, ci, chunk = inflight.pop(ready[0])
            try:
                records, seconds = ray.get(ready[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                failures[ci] += 1
                if failures[ci] > ray_cfg.max_retries:
                    raise SeqdistillError(f"{desc}: chunk {ci} failed on {failures[ci]} replicas; last: "
                                          f"{type(exc).__name__}") from None
                log.warning("%s: replica %d died (%s); chunk %d (%d prompts) goes to another replica, and a new "
                            "replica replaces it", desc, r, type(exc).__name__, ci, len(chunk))
                chunks.appendleft((ci, chunk))
                REPLICAS[r] = actor.remote(*args)
                idle.append(r)
                continue
            store.write_shard(records, tag, RECORD_SCHEMA)  # the driver alone writes: exactly once
            n_tok = sum(rec["completion_tokens"] for rec in records)
            tokens += n_tok
            stats = per_replica[r]
            stats["prompts"] += len(chunk)
            stats["tokens"] += n_tok
            stats["seconds"] += seconds
            idle.append(r)
            bar.update(len(chunk))
            bar.set_postfix(tok_s=f"{tokens / max(time.perf_counter() - t0, 1e-9):.1f}")
    finally:
        bar.close()
        for handle in REPLICAS:
            ray.kill(handle)
        REPLICAS.clear()
    for r, s in per_replica.items():
        log.info("%s: replica %d: %d prompts, %d tokens, %.1f tok/s", desc, r, s["prompts"], s["tokens"],
                 s["tokens"] / s["seconds"] if s["seconds"] else 0.0)
    busy = time.perf_counter() - t0
    return {"new_prompts": len(todo), "new_tokens": tokens, "seconds": busy, "tokens_per_s": tokens / busy,
            "replicas": per_replica, "redispatched_chunks": sum(failures.values())}
