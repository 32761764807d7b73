"""The answer-equivalence corpus (tests/data/verifier_cases.jsonl) scored by seqdistill's verifier and by
math-verify called alone (lighteval-style: parse the gold, parse the whole model output, verify), per category.
Used by tests/test_verifier_corpus.py and bench/verifier_agreement.py."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from seqdistill.verify import CORRECT, check_many, get_task, gold_answer

CASES_FILE = Path(__file__).with_name("data") / "verifier_cases.jsonl"


def load_cases() -> list[dict]:
    return [json.loads(line) for line in CASES_FILE.read_text().splitlines() if line.strip()]


def math_verify_alone(cases: list[dict]) -> list[str]:
    from math_verify import parse, verify

    out = []
    for c in cases:
        gold = gold_answer(c["gold"], get_task(c["task"]))
        try:
            g = parse(f"${gold}$")
            p = parse(c["output"])
            out.append(CORRECT if g and p and verify(g, p) else "wrong")
        except Exception:
            out.append("wrong")
    return out


def score(cases: list[dict], workers: int = 2) -> dict:
    # a generous timeout: this scores answers, not speed (math-verify alone runs without one), and a loaded
    # CI machine once pushed a legitimate sympy comparison past 5 s (tests/test_verify.py covers timeouts)
    ours = [v.status for v in check_many([(c["output"], c["gold"], c["task"]) for c in cases],
                                         workers=workers, timeout=30.0)]
    alone = math_verify_alone(cases)
    per = defaultdict(lambda: {"n": 0, "ours": 0, "math_verify": 0, "ours_false_correct": 0,
                               "mv_false_correct": 0})
    for c, o, a in zip(cases, ours, alone):
        want = c["expected"]
        for cat in (c["category"], "ALL"):
            row = per[cat]
            row["n"] += 1
            row["ours"] += (o == CORRECT) == (want == CORRECT)
            row["math_verify"] += (a == CORRECT) == (want == CORRECT)
            row["ours_false_correct"] += o == CORRECT and want != CORRECT
            row["mv_false_correct"] += a == CORRECT and want != CORRECT
    disagreements = [(c, o) for c, o in zip(cases, ours) if (o == CORRECT) != (c["expected"] == CORRECT)]
    return {"per_category": dict(per), "disagreements": disagreements}


def table(result: dict) -> str:
    lines = [f"{'category':<16} {'n':>4} {'seqdistill':>11} {'math-verify':>12} {'false correct (ours/mv)':>24}"]
    for cat, r in sorted(result["per_category"].items(), key=lambda kv: (kv[0] == "ALL", kv[0])):
        lines.append(f"{cat:<16} {r['n']:>4} {r['ours'] / r['n']:>10.1%} {r['math_verify'] / r['n']:>11.1%} "
                     f"{r['ours_false_correct']:>12}/{r['mv_false_correct']}")
    return "\n".join(lines)
