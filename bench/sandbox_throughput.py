"""Programs/s of the code sandbox on this machine: HumanEval's 164 canonical solutions with their tests, run by a
SandboxPool of N workers (every run a fresh process, dir and sandbox uid). Run with nothing else on the machine:
`python bench/sandbox_throughput.py [--workers 2]`. Also prints how many pass (all 164 should)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from seqdistill.sandbox import Limits, SandboxPool

DATA = Path(__file__).resolve().parent.parent / "recipes" / "code" / "data" / "humaneval.jsonl"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    rows = [json.loads(line) for line in DATA.open()]
    jobs = [(r["question"] + r["canonical_solution"], r["answer"]) for r in rows]
    t0 = time.perf_counter()
    runs = SandboxPool(args.workers, Limits(cpu_s=10, wall_s=20)).run_many(jobs)
    dt = time.perf_counter() - t0
    print(f"sandbox: {len(jobs)} programs in {dt:.2f} s -> {len(jobs) / dt:.1f} programs/s with {args.workers} "
          f"workers; {sum(r.passed for r in runs)} of {len(jobs)} canonical solutions pass; network isolated: "
          f"{all(r.network_isolated for r in runs)}")


if __name__ == "__main__":
    main()
