"""How a stage samples: the Engine (backend and its settings) and its one entry point, sample_into, which opens a
backend here or dispatches to Ray replicas (distributed), and closes it. Above sampling and distributed, which it
both uses; neither imports it."""

from __future__ import annotations

from dataclasses import dataclass, field

from .backends import Params
from .config import OpenAIConfig, PromptConfig, RayConfig
from .sampling import engine_prompts, generate_into, open_backend
from .store import Store


@dataclass
class Engine:
    """How a stage samples: the backend and its settings. generate, eval and the student probe each build one from
    their recipe section; `sample_into` is the one place that opens it, runs it (here or on Ray) and closes it."""
    backend: str
    vllm: dict = field(default_factory=dict)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    ray: RayConfig | None = None
    batch_size: int = 8
    max_in_flight: int | None = None
    flush_seconds: float = 60.0
    threads: int | None = None

    @classmethod
    def of(cls, section, threads: int | None, **overrides) -> "Engine":
        """The engine a recipe section describes: an EngineConfig (generate, eval) or a LocalEngineConfig
        (filter.student_probe: no openai or ray keys)."""
        kw = dict(backend=section.backend, vllm=section.vllm, openai=getattr(section, "openai", None) or OpenAIConfig(),
                  ray=getattr(section, "ray", None), batch_size=section.batch_size, threads=threads)
        return cls(**{**kw, **overrides})


def sample_into(store: Store, items: list[dict], engine: Engine, model_cfg, prompt: PromptConfig, params: Params,
                *, task: str, label: str, tag: str, desc: str, seed: int = 0, done: set | None = None,
                teacher: str = "teacher", sample_offset: int = 0, backend=None, then=None) -> dict:
    """Sample `items` with `model_cfg` into `store` (only what is not on disk): on a Ray cluster when
    `engine.ray` is set, else through a backend opened here (or the caller's `backend`) and closed here.
    `then(backend, prompts)` runs while the backend is still open (eval times its speed there). `label` is the
    model name written into every record. Returns generate_into's counts."""
    common = dict(task=task, model=label, tag=tag, done=done, teacher=teacher, sample_offset=sample_offset)
    if engine.ray is not None and backend is None:
        from .distributed import ray_generate_into

        stats = ray_generate_into(store, items, engine, model_cfg, seed, prompt, params, desc=desc, **common)
        return stats
    owned = backend is None
    tok = None
    if owned:
        backend, tok, _ = open_backend(engine.backend, model_cfg, engine.openai, engine.vllm, seed)
    else:
        tok = backend.tok
    try:
        prompts = engine_prompts(prompt, items, tok, engine.backend, engine.vllm)
        stats = generate_into(store, items, prompts, backend, params, batch_size=engine.batch_size,
                              max_in_flight=engine.max_in_flight, flush_seconds=engine.flush_seconds, desc=desc,
                              **common)
        if then is not None:
            then(backend, prompts)
        return stats
    finally:
        if owned:
            backend.close()
