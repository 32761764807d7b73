"""Why a model misses GSM8K problems, from an eval's per-sample records (RUN_DIR/eval/LABEL/samples.parquet).

Each wrong sample gets the first class that fits, in this order:
  truncated      the answer ran into max_tokens (finish_reason length)
  looping        the text repeats itself (a 20-word window seen 3+ times) without hitting the cap
  no_answer      finished, but no final answer could be extracted
  arithmetic     a written calculation "a op b = c" in the text is wrong (c differs from a op b by > 1e-6)
  reasoning      the arithmetic shown is right and the answer is wrong: a misread question or a wrong method,
                 which text matching cannot tell apart (read examples with --show)
Usage: python bench/gsm8k_misses.py RUN_DIR/eval/student/samples.parquet [--show N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter

import pyarrow.parquet as pq

_NUM = r"(-?\d[\d,]*(?:\.\d+)?)"
_CALC = re.compile(_NUM + r"\s*([+\-*/×x÷])\s*" + _NUM + r"\s*=\s*\$?" + _NUM)


def _f(s: str) -> float:
    return float(s.replace(",", ""))


def wrong_calculation(text: str) -> str | None:
    """The first written 'a op b = c' whose result is wrong, or None."""
    for m in _CALC.finditer(text.replace("\\times", "×").replace("\\cdot", "×").replace("\\div", "÷")):
        a, op, b, c = m.groups()
        try:
            a, b, c = _f(a), _f(b), _f(c)
        except ValueError:
            continue
        if op in "÷/" and b == 0:
            continue
        want = {"+": a + b, "-": a - b, "*": a * b, "×": a * b, "x": a * b, "/": a / b if b else None,
                "÷": a / b if b else None}[op]
        if want is not None and abs(want - c) > 1e-6 * max(1.0, abs(want)) and abs(round(want, 2) - c) > 1e-6:
            return m.group(0)
    return None


def looping(text: str, window: int = 20, times: int = 3) -> bool:
    words = text.split()
    seen = Counter(" ".join(words[i:i + window]) for i in range(0, max(0, len(words) - window)))
    return bool(seen) and max(seen.values()) >= times


def classify(row: dict) -> str:
    text = row["completion"] or ""
    if row["finish_reason"] == "length":
        return "truncated"
    if looping(text):
        return "looping"
    if row["verify_reason"] == "no answer" or row["pred"] is None:
        return "no_answer"
    if wrong_calculation(text):
        return "arithmetic"
    return "reasoning"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("samples")
    ap.add_argument("--show", type=int, default=0, help="print N misses of the 'reasoning' class")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = pq.read_table(args.samples).to_pylist()
    wrong = [r for r in rows if r["verdict"] != "correct"]
    classes = Counter(classify(r) for r in wrong)
    out = {"samples": len(rows), "correct": len(rows) - len(wrong), "wrong": len(wrong),
           "classes": dict(classes.most_common()),
           "truncated_share_of_all": sum(r["finish_reason"] == "length" for r in rows) / max(len(rows), 1)}
    print(json.dumps(out, indent=2))
    shown = 0
    for r in wrong:
        if shown >= args.show:
            break
        if classify(r) == "reasoning":
            shown += 1
            print(f"\n--- {r['prompt_id']} gold {r['gold'].split('####')[-1].strip()} pred {r['pred']}\n"
                  f"Q: {r['question']}\nA: {r['completion'][-1200:]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
