"""Student-aware selection vs the same number of random kept traces, measured on the demo pair in one run
(issue 13, feature 3). The 1.5B teacher answers the demo's arithmetic prompts; filter keeps the verified
traces twice: once plain, once with `filter.student_probe` (the 0.5B student answers each prompt k times and
prompts it solves more often than `--band-max` are dropped). Then three LoRA students with the demo's SFT
settings, from the same start: on the probe-selected traces, on as many traces drawn at random from the plain
kept set (seeded), and on all kept traces; eval scores them and the untrained student on held-out problems.

    python bench/student_aware.py [--prompts 96] [--eval 96] [--k 4] [--band-max 0.5] [--run-dir runs/student-aware]

Arms of another --band-max are written beside the first (generate and the all-kept student are shared).

Every stage resumes, so a rerun after a crash continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from seqdistill.config import load_recipe, validate
from seqdistill.evaluate import run_eval
from seqdistill.filter import run_filter
from seqdistill.generate import run_generate
from seqdistill.records import FILTER_SCHEMA
from seqdistill.sft import run_sft
from seqdistill.store import Store

DEMO = Path(__file__).resolve().parent.parent / "recipes/demo/cpu.yaml"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=96, help="training prompts (demo train split)")
    ap.add_argument("--eval", type=int, default=96, help="held-out problems (demo test split)")
    ap.add_argument("--k", type=int, default=4, help="student samples per prompt for the probe")
    ap.add_argument("--band-max", type=float, default=0.5, help="drop prompts the student solves more often")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random subset")
    ap.add_argument("--run-dir", default="runs/student-aware")
    args = ap.parse_args()
    run = Path(args.run_dir)
    base = load_recipe(DEMO).model_dump(exclude_none=True)
    base.update(run_dir=str(run), kd=None)
    base["data"]["synthetic"]["n"] = args.prompts
    base["eval"]["data"]["synthetic"]["n"] = args.eval
    base["generate"]["logprobs"] = None  # no KD here
    cfg = validate(base)
    run_generate(cfg)

    plain = validate({**base, "filter": {**base["filter"], "output_dir": str(run / "filter-all")}})
    probe = {"sampling": {"n": args.k, "temperature": 0.6, "top_p": 0.95, "max_tokens": 128, "seed": 0},
             "pass_rate_min": 0.0, "pass_rate_max": args.band_max}
    band = f"band{args.band_max:g}"  # arms of another band live beside these; generate and "all" are shared
    aware = validate({**base, "filter": {**base["filter"], "output_dir": str(run / f"filter-aware-{band}"),
                                         "student_probe": probe}})
    all_dir, aware_dir = run_filter(plain), run_filter(aware)
    stats = json.loads((aware_dir / "stats.json").read_text())
    kept_all = list(Store(all_dir, "kept").records())
    m = Store(aware_dir, "kept").count()

    rand_dir = run / f"filter-random-{band}"
    if not (rand_dir / "kept" / "manifest.json").is_file():  # written once; a rerun reuses the same draw
        pick = random.Random(args.seed).sample(kept_all, m)
        store = Store(rand_dir, "kept")
        store.prepare("filter", f"random-{args.seed}-{m}", {})
        store.write_shard(pick, "part", FILTER_SCHEMA)
        store.update_manifest(complete=True)

    students = {}
    for name, data in (("aware", aware_dir / "kept"), ("random", rand_dir / "kept"), ("all", all_dir / "kept")):
        tag = name if name == "all" else f"{name}-{band}"
        sft = {**base["sft"], "dataset": str(data), "output_dir": str(run / f"sft-{tag}")}
        model = run_sft(validate({**base, "sft": sft}))
        link = run / "students" / tag  # eval labels a model folder by its name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(model.resolve())
        students[name] = str(link)
    ev = {**base["eval"], "models": ["student", *students.values()], "output_dir": str(run / f"eval-{band}")}
    report = json.loads((run_eval(validate({**base, "eval": ev})) / "eval.json").read_text())

    rates = stats.get("student_pass_rate", {})  # probed prompts only, each with its rate
    print(f"{args.prompts} prompts; teacher traces kept: {len(kept_all)}; student probe k={args.k}, band "
          f"[0, {args.band_max}]: kept {m} ({stats.get('prompts_removed', {})} prompts removed by rule)")
    solved = sum(1 for r in rates.values() if r > args.band_max)
    print(f"student pass rate over the {len(rates)} probed prompts: mean "
          f"{sum(rates.values()) / max(1, len(rates)):.2f}; above the band: {solved}")
    for name, label in (("student", "student"), *((k, Path(v).name) for k, v in students.items())):
        acc = report["models"][label]["accuracy"]
        n = {"student": 0, "aware": m, "random": m, "all": len(kept_all)}[name]
        print(f"{label:8s} ({n:3d} traces): accuracy {acc['mean']:.1%} [{acc['ci95'][0]:.1%}, {acc['ci95'][1]:.1%}] "
              f"on {args.eval} held-out problems")


if __name__ == "__main__":
    main()
