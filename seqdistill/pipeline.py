"""`seqdistill run`: generate -> filter -> sft -> (kd) -> eval from one recipe, each stage in its own subdir of
run_dir. Finished stages are skipped (manifest + config hash), an interrupted one resumes, and the first
failure stops the run with a message naming the stage."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from .config import STAGES, RecipeConfig
from .errors import ConfigError, SeqdistillError, disk_error
from .store import atomic_write_text

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
        before = _manifest_state(cfg, stage)
        try:
            try:
                _runner(stage)(cfg, overwrite=overwrite)
            finally:
                _record_time(cfg, stage, time.perf_counter() - t0, before, overwrite)
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
    _write_report(cfg)
    return times


def _manifest_state(cfg: RecipeConfig, stage: str) -> str | None:
    """"complete" or "partial" for a started stage, None for one not started."""
    try:
        m = json.loads((cfg.stage_dir(stage) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return "complete" if m.get("complete") else "partial"


def _record_time(cfg: RecipeConfig, stage: str, seconds: float, before: str | None, overwrite: bool) -> None:
    """Stage wall times for the report, in RUN_DIR/run.json. A stage finished earlier is skipped (a changed config
    is refused unless --overwrite), so it keeps the time of the run that did it; a resumed stage adds this run's
    time to the earlier attempts'."""
    if _manifest_state(cfg, stage) is None:  # the stage wrote nothing (it failed first): nothing to record
        return
    path = Path(cfg.run_dir) / "run.json"
    try:
        data = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        data = {}
    # where each stage's output is (its output_dir may lie outside RUN_DIR): the report reads it from here
    data.setdefault("dirs", {})[stage] = str(cfg.stage_dir(stage))
    if before == "complete" and not overwrite:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(data, indent=2))
        return
    stages = data.setdefault("stages", {})
    earlier = stages.get(stage, 0.0) if before == "partial" else 0.0
    stages[stage] = seconds + earlier
    path.parent.mkdir(parents=True, exist_ok=True)  # every stage's output_dir may lie outside RUN_DIR
    atomic_write_text(path, json.dumps(data, indent=2))


def _write_report(cfg: RecipeConfig) -> None:
    from .report import write_report

    try:
        write_report(cfg.run_dir)
    except (SeqdistillError, OSError, ValueError, KeyError) as exc:  # the stages' results are on disk already
        log.warning("run: could not write report.html (%s: %s); the stage outputs are complete",
                    type(exc).__name__, exc)
