"""Student-aware selection (`filter.student_probe`): the student, or a cheaper proxy, answers every prompt k
times and the same verifier scores it. Its pass rate per prompt says what it already knows: a prompt it always
solves teaches it little. The samples are kept in FILTER_DIR/probe (resumable like generate)."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from .config import RecipeConfig
from .engine import Engine, sample_into
from .models import resolve
from .records import answer_text
from .sampling import to_params
from .store import Store, identity
from .verify import CORRECT, check_many

log = logging.getLogger(__name__)


def probe_pass_rates(cfg: RecipeConfig, records: list[dict], out: Path) -> dict[str, float]:
    """{prompt_id: the probe model's pass rate} for every prompt among `records`."""
    probe = cfg.filter.student_probe
    mcfg = probe.model or cfg.need("student")
    items = list({r["prompt_id"]: {"id": r["prompt_id"], "question": r["question"], "answer": r["gold"]}
                  for r in records}.values())
    task = records[0]["task"] if records else "math"
    path = resolve(mcfg.path, mcfg.gguf_file)
    # the band decides what is kept from the pass rates, not the samples: changing it reuses them
    chash = identity(probe.model_dump(mode="json", exclude_defaults=True, exclude={"pass_rate_min", "pass_rate_max"}),
                     mcfg, cfg.prompt)
    store = Store(out / "probe")
    # the filter dir is already this config's (run_filter prepared it); a changed probe is simply redone
    store.prepare("probe", chash, {"model": path}, overwrite=True)
    done = set(store.column("prompt_id"))
    if any(it["id"] not in done for it in items):
        log.info("probe: %s answers %d prompts x %d", path, len(items), probe.sampling.n)
        engine = Engine.of(probe, cfg.num_threads)
        sample_into(store, items, engine, mcfg, cfg.prompt, to_params(probe.sampling), task=task, label=path,
                    tag="probe", desc="probe", seed=probe.sampling.seed, done=done)
        store.update_manifest(complete=True)
    samples = list(store.records())
    verdicts = check_many([(answer_text(s), s["gold"], s["task"]) for s in samples],
                          workers=cfg.filter.num_workers, timeout=cfg.filter.timeout_s, sandbox=cfg.sandbox)
    correct: dict[str, list[bool]] = defaultdict(list)
    for s, v in zip(samples, verdicts):
        correct[s["prompt_id"]].append(v.status == CORRECT)
    return {pid: sum(c) / len(c) for pid, c in correct.items()}
