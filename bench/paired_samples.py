"""Paired comparisons between models from their committed eval samples, without sampling anything again.

An eval writes every model's scored samples (`<label>/samples.parquet`, committed as `<label>-samples.parquet`).
When a new arm is evaluated on a machine that lacks the other models' eval dirs, sampling the teacher again costs
most of an hour on 2 cores; these files already hold its verdicts on the same problems. This reads LABEL=FILE
pairs and prints each model's accuracy, every model against the first one named as the base (paired bootstrap CI,
gained / lost, McNemar p: metrics.paired_comparison) and, given --teacher and --before, the share of the teacher
gap each model closed (metrics.gap_closed). Verdicts are the ones stored at eval time.

  python bench/paired_samples.py sft=recipes/gsm8k/results/onpolicy/eval-500/sft-samples.parquet \\
      kd=RUN/eval-sharp/kd/samples.parquet --teacher recipes/.../teacher-samples.parquet \\
      --before recipes/.../student-samples.parquet [--json OUT]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def scores(path: Path) -> dict[str, float]:
    """prompt id -> share of its samples judged correct (one greedy sample: 0 or 1)."""
    import pyarrow.parquet as pq

    per: dict[str, list[bool]] = {}
    for r in pq.read_table(path, columns=["prompt_id", "verdict"]).to_pylist():
        per.setdefault(r["prompt_id"], []).append(r["verdict"] == "correct")
    return {k: sum(v) / len(v) for k, v in per.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="LABEL=SAMPLES.parquet; the first is the base of the comparisons")
    ap.add_argument("--teacher", type=Path, help="the teacher's samples (for the share of the gap closed)")
    ap.add_argument("--before", type=Path, help="the student-before's samples (for the share of the gap closed)")
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()

    from seqdistill.metrics import gap_closed, paired_comparison

    models = {}
    for spec in args.models:
        label, _, path = spec.partition("=")
        if not path:
            ap.error(f"{spec}: expected LABEL=FILE")
        models[label] = scores(Path(path))
    base_label, base = next(iter(models.items()))
    out = {"accuracy": {k: sum(v.values()) / len(v) for k, v in models.items()},
           "problems": {k: len(v) for k, v in models.items()}, "against_" + base_label: {}, "gap_closed": {}}
    teacher, before = (scores(p) if p else None for p in (args.teacher, args.before))
    for label, s in models.items():
        print(f"{label}: {out['accuracy'][label]:.1%} on {len(s)} problems")
        if label != base_label:
            c = out["against_" + base_label][label] = paired_comparison(base, s)
            print(f"  against {base_label}: {c['diff'] * 100:+.1f} pts [{c['ci95'][0] * 100:+.1f}, "
                  f"{c['ci95'][1] * 100:+.1f}], gained {c['gained']}, lost {c['lost']}, McNemar p {c['mcnemar_p']:.3g}")
        if teacher and before:
            g = out["gap_closed"][label] = gap_closed(before, s, teacher)
            if g["gap_closed"] is not None:
                print(f"  gap closed {g['gap_closed']:.1%} [{g['ci95'][0]:.1%}, {g['ci95'][1]:.1%}]")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
