"""Traces/s of `seqdistill filter` on synthetic traces: GSM8K-style integers and MATH-style LaTeX, with
correct, wrong and equivalent-but-differently-written answers. Also prints the verifier's fast-path share
and what the fast path saves (same items checked with math-verify only).

    python bench/filter_throughput.py [--traces 20000] [--workers 2]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fakes import rec, write_generate_output  # noqa: E402

from seqdistill.config import validate  # noqa: E402
from seqdistill.filter import run_filter  # noqa: E402
from seqdistill.verify import TASKS, extract_answer, gold_answer, slow_check  # noqa: E402

LATEX = [("\\frac{1}{2}", ["\\frac{1}{2}", "0.5", "\\frac{2}{4}", "\\frac{1}{3}"]),
         ("2\\sqrt{2}", ["2\\sqrt{2}", "\\sqrt{8}", "2\\sqrt{3}"]),
         ("\\left( 3, \\frac{\\pi}{2} \\right)", ["(3, \\frac{\\pi}{2})", "(3, \\pi)"]),
         ("[1,2)", ["[1,2)", "(1,2]"]), ("\\text{Evelyn}", ["\\text{Evelyn}", "\\text{Bob}"]),
         ("6 - 5i", ["6-5i", "6+5i"]), ("90^\\circ", ["90", "90^\\circ", "45"])]


def traces(n: int, rng: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        pid = f"p{i // 4}"
        if i % 2 == 0:  # GSM8K style
            gold = rng.randint(1, 5000)
            pred = gold if rng.random() < 0.7 else gold + rng.randint(1, 9)
            shown = f"{pred:,}" if rng.random() < 0.3 else str(pred)
            text = f"<think>\nadding up the parts gives {pred}\n</think>\nSo the answer is \\boxed{{{shown}}}."
            out.append(rec(pid, i % 4, text, gold=f"Work.\n#### {gold}", task="gsm8k", tokens=40))
        else:  # MATH style
            gold, preds = rng.choice(LATEX)
            text = f"<think>\nderivation\n</think>\nThus \\boxed{{{rng.choice(preds)}}}."
            out.append(rec(pid, i % 4, text, gold=gold, task="math", tokens=60))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--traces", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp())
    records = traces(args.traces, random.Random(0))
    write_generate_output(tmp / "generate", records)
    cfg = validate({"run_dir": str(tmp), "filter": {"num_workers": args.workers, "dedup": False}})
    t0 = time.perf_counter()
    out = run_filter(cfg)
    dt = time.perf_counter() - t0
    import json

    stats = json.loads((out / "stats.json").read_text())
    print(f"filter: {args.traces} traces in {dt:.2f} s -> {args.traces / dt:,.0f} traces/s (target >= 1,000)")
    print(f"verifier fast-path share: {stats['verify_fast_path_share']:.1%}")
    # what the fast path saves: time the same sample through math-verify only vs through the fast path
    sample = records[:400]
    t0 = time.perf_counter()
    for r in sample:
        t = TASKS[r["task"]]
        slow_check(extract_answer(r["completion"], t), gold_answer(r["gold"], t))
    slow = time.perf_counter() - t0
    from seqdistill.verify import _prepare

    t0 = time.perf_counter()
    for r in sample:  # the same split check_many makes, without the worker pool
        done, pending = _prepare(r["completion"], r["gold"], r["task"])
        if pending:
            slow_check(*pending)
    fast = time.perf_counter() - t0
    print(f"400 checks single-process: math-verify only {slow:.2f} s, with fast path {fast:.2f} s "
          f"-> fast path saves {1 - fast / slow:.0%}")


if __name__ == "__main__":
    main()
