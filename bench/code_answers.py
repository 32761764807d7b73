"""What the models' programs look like and why they fail, from a code eval's scored samples (no model runs).

For each MODEL-samples.parquet (or MODEL/samples.parquet) in an eval dir: the sandbox's reasons, the share of
final programs that re-state asserts or print examples, the median answer length, and how many of the programs
that raised would pass if the prompt's own import lines (HumanEval's `from typing import List`) were put in
front of them: our verdict runs the answer as a self-contained program, as evalplus runs a `solution`, so a
program that drops an import the prompt showed fails; this says how many verdicts that convention decides.
The last count runs those programs again in the sandbox.

  python bench/code_answers.py recipes/code/results/eval-mbpp [--json OUT]
"""
from __future__ import annotations

import argparse
import json
import re
import statistics
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from seqdistill.answers import last_code_block
from seqdistill.verify import CORRECT, check_many


def samples(folder: Path) -> dict[str, list[dict]]:
    found = {p.name.removesuffix("-samples.parquet"): p for p in sorted(folder.glob("*-samples.parquet"))}
    found.update({p.parent.name: p for p in sorted(folder.glob("*/samples.parquet"))})
    return {m: pq.read_table(p).to_pylist() for m, p in found.items()}


def with_prompt_imports(rec: dict) -> str | None:
    """The answer's program (the verifier's own extraction) in a fresh block, after the prompt's import lines."""
    imports = [ln for ln in rec["question"].splitlines() if ln.startswith(("from ", "import "))]
    program = last_code_block(rec["completion"])
    if not imports or program is None:
        return None
    return "```python\n" + "\n".join(imports) + "\n" + program + "```"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("eval_dir", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out = {}
    for model, rows in samples(args.eval_dir).items():
        last = [last_code_block(r["completion"]) or "" for r in rows]
        raised = [r for r in rows if r["verify_reason"] == "exception"]
        redo = [(t, r["gold"], r["task"] if "task" in r else "code") for r in raised
                if (t := with_prompt_imports(r)) is not None]
        n = len(rows)
        out[model] = {
            "samples": n, "correct": sum(r["verdict"] == CORRECT for r in rows),
            "reasons": dict(Counter(r["verify_reason"] for r in rows).most_common()),
            "restates_asserts": round(sum(bool(re.search(r"^assert ", b, re.M)) for b in last) / n, 3),
            "prints_examples": round(sum("print(" in b for b in last) / n, 3),
            "median_tokens": statistics.median(r["completion_tokens"] for r in rows),
            "raised": len(raised),
            "raised_but_pass_with_prompt_imports": sum(v.status == CORRECT for v in check_many(redo)) if redo else 0,
        }
        print(model, json.dumps(out[model]))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
