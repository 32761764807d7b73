"""`seqdistill run`: generate -> filter -> sft -> (kd) -> eval from one recipe, each stage in its own subdir of
run_dir. Finished stages are skipped (manifest + config hash), an interrupted one resumes, and the first
failure stops the run with a message naming the stage."""

from __future__ import annotations

import logging
import time

from .config import STAGES, RecipeConfig
from .errors import ConfigError, SeqdistillError, disk_error

log = logging.getLogger(__name__)


def _runner(stage: str):
    if stage == "generate":
        from .generate import run_generate as fn
    elif stage == "filter":
        from .filter import run_filter as fn
    elif stage == "sft":
        from .sft import run_sft as fn
    elif stage == "kd":
        from .kd import run_kd as fn
    else:
        from .evaluate import run_eval as fn
    return fn


def plan(cfg: RecipeConfig, stages: list[str] | None) -> list[str]:
    default = [s for s in STAGES if s != "kd" or cfg.kd is not None]
    if not stages:
        return default
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"--stages: unknown stage(s) {unknown}; choose from {', '.join(STAGES)}")
    if "kd" in stages and cfg.kd is None:
        raise ConfigError("--stages kd: the recipe has no kd: section")
    return [s for s in STAGES if s in stages]


def run_pipeline(cfg: RecipeConfig, stages: list[str] | None = None, overwrite: bool = False) -> dict:
    todo = plan(cfg, stages)
    log.info("run: %s -> %s", " -> ".join(todo), cfg.run_dir)
    times = {}
    for stage in todo:
        t0 = time.perf_counter()
        log.info("===== stage %s =====", stage)
        try:
            _runner(stage)(cfg, overwrite=overwrite)
        except SeqdistillError as exc:
            raise SeqdistillError(f"stage {stage} failed: {exc}\n(finished stages are kept; fix the cause and "
                                  "rerun: completed stages are skipped and this one resumes)") from None
        except Exception as exc:
            err = disk_error(exc)
            if err is not None:
                raise SeqdistillError(f"stage {stage} failed: {err}") from None
            log.exception("stage %s crashed", stage)
            raise SeqdistillError(f"stage {stage} crashed: {type(exc).__name__}: {exc}\n(finished stages are "
                                  "kept; rerun to resume)") from exc
        times[stage] = time.perf_counter() - t0
        log.info("stage %s done in %.0f s", stage, times[stage])
    return times
