"""Writes verifier_cases.jsonl: (gold, model output, task, expected) answer-equivalence cases of our own making.

Expected verdicts are fixed by construction (an equivalent rewriting of the gold is correct, a perturbed
answer is wrong), never by running a verifier. Perturbed cases carry "perturbed": true; none of them may ever
be judged correct. Regenerate with `python tests/data/make_verifier_cases.py` (deterministic)."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

rng = random.Random(7)
CASES: list[dict] = []


def wrap(ans: str, style: int) -> str:
    think = "<think>\nLet me work through this step by step.\n</think>\n"
    return [f"{think}So the answer is $\\boxed{{{ans}}}$.",
            f"Therefore, the final answer is: $\\boxed{{{ans}}}$. I hope it is correct.",
            f"{think}\\[\n\\boxed{{{ans}}}\n\\]",
            f"We compute the total.\n\nThe final answer is $\\boxed{{{ans}}}$"][style % 4]


def add(cat: str, gold: str, pred: str, task: str, expected: str, output: str | None = None, style=None):
    out = output if output is not None else wrap(pred, rng.randrange(4) if style is None else style)
    CASES.append({"category": cat, "gold": gold, "output": out, "task": task, "expected": expected,
                  "perturbed": expected == "wrong"})


# integers in GSM8K style: units, $, x =, {,}, thousands
for _ in range(30):
    n = rng.choice([rng.randint(2, 99), rng.randint(100, 999), rng.randint(1000, 99999)])
    gold = f"Some work.\n#### {n}"
    forms = [str(n), f"{n:,}", f"{n}.00", f"\\${n}", f"{n} \\text{{ dollars}}", f"x = {n}",
             f"{n:,}".replace(",", "{,}"), f"{n} dollars", f"\\$ {n:,}.00"]
    for f in rng.sample(forms, 3):
        add("gsm8k-int", gold, f, "gsm8k", "correct")
    wrong = [str(n + 1), str(n * 10), f"-{n}", str(n)[::-1] if str(n)[::-1] != str(n) else str(n + 2),
             f"{str(n)[:-1]},{str(n)[-1]}" if n >= 10 else str(n + 3)]
    for f in rng.sample(wrong, 2):
        add("gsm8k-int", gold, f, "gsm8k", "wrong")
    # hash and answer-is forms
    add("gsm8k-forms", gold, "", "gsm8k", "correct", output=f"Adding up.\n#### {n:,}")
    add("gsm8k-forms", gold, "", "gsm8k", "correct", output=f"So we get {n}.\nThe answer is {n}.")
    add("gsm8k-forms", gold, "", "gsm8k", "wrong", output=f"So we get {n}.\nThe answer is {n + 5}.")

# percent (GSM8K convention: 50% == 50)
for _ in range(8):
    n = rng.randint(2, 95)
    add("percent", f"#### {n}", f"{n}\\%", "gsm8k", "correct")
    add("percent", f"#### {n}", f"{n}%", "gsm8k", "correct")
    add("percent", f"#### {n}", f"{n + 10}\\%", "gsm8k", "wrong")

# decimal commas (single-number tasks only) and comma groups
for _ in range(8):
    a, b = rng.randint(1, 99), rng.randint(11, 99)
    while b % 10 == 0 or str(b)[::-1] == str(b):
        b += 1
    add("decimal-comma", f"#### {a}.{b}", f"{a},{b} \\$", "gsm8k", "correct")
    add("decimal-comma", f"#### {a}.{b}", f"{a},{str(b)[::-1]}", "gsm8k", "wrong")
    add("decimal-comma", f"#### {a}{b}", f"{a},{b}", "gsm8k", "wrong")

# decimals: leading dots, moved points, MATH-500 style small numbers
for gold, right, wrong in [(".4", ["0.4", ".40", "\\frac{2}{5}"], ["4", "0.04", ".5"]),
                           (".1", ["0.1", "\\frac{1}{10}"], ["1", "0.01"]),
                           (".0000672", ["0.0000672", "6.72 \\times 10^{-5}"], ["672", "0.000672", ".000672"]),
                           (".35625", ["0.35625", "\\frac{57}{160}"], ["35625", "0.3562", ".3625"]),
                           ("0.5", [".5", "\\frac12", "\\frac{1}{2}"], ["5", "0.05", "\\frac{1}{3}"]),
                           ("2.5", ["2.50", "\\frac{5}{2}", "2\\frac{1}{2}"], ["25", "2.05", "0.25"]),
                           ("-0.75", ["-\\frac{3}{4}", "-.75"], ["0.75", "-7.5", "-\\frac{4}{3}"])]:
    for r in right:
        add("decimal", gold, r, "math", "correct")
    for w in wrong:
        add("decimal", gold, w, "math", "wrong")

# scientific notation
for _ in range(8):
    m, e = rng.randint(101, 999) / 100, rng.randint(-12, 12)
    add("scientific", f"{m}e{e}", f"{m} \\times 10^{{{e}}}", "math", "correct")
    add("scientific", f"{m} \\times 10^{{{e}}}", f"{m}e{e}", "math", "correct")
    add("scientific", f"{m}e{e}", f"{m} \\times 10^{{{e + 1}}}", "math", "wrong")
add("scientific", "1.24e-8", "1.24 \\times 10^{-8}", "math", "correct")

# fractions
for _ in range(15):
    a, b = rng.randint(1, 30), rng.randint(2, 31)
    f = Fraction(a, b)
    if f.denominator == 1:
        continue
    gold = f"\\frac{{{f.numerator}}}{{{f.denominator}}}"
    k = rng.randint(2, 4)
    add("fraction", gold, f"\\dfrac{{{f.numerator * k}}}{{{f.denominator * k}}}", "math", "correct")
    add("fraction", gold, f"{f.numerator}/{f.denominator}", "math", "correct")
    add("fraction", gold, f"\\frac{{{f.denominator}}}{{{f.numerator}}}", "math", "wrong")
    add("fraction", gold, f"\\frac{{{f.numerator + 1}}}{{{f.denominator}}}", "math", "wrong")

# lists and sets (MATH-500 golds like "3, 5, 7" and "-2,1")
for gold, right, wrong in [("3, 5, 7", ["3, 5, 7", "3,5,7", "7, 5, 3"], ["357", "3, 5", "3, 5, 8", "35,7"]),
                           ("-2,1", ["-2, 1", "1, -2"], ["-21", "-2", "2, 1", "-2.1"]),
                           ("1,2", ["1, 2", "2,1"], ["12", "1.2", "1"]),
                           ("0, 1", ["0,1", "1, 0"], ["01", "10", "0"]),
                           ("-3, 2", ["2, -3"], ["-32", "3, 2", "-3, -2"])]:
    for r in right:
        add("list", gold, r, "math", "correct")
    for w in wrong:
        add("list", gold, w, "math", "wrong")

# several boxes forming one answer (math-verify's convention)
think = "<think>\nsolve\n</think>\n"
for gold, boxes, exp in [("1, 2, 3", ["1", "2", "3"], "correct"), ("\\{1,2,3\\}", ["1", "2", "3"], "correct"),
                         ("(2, 2), (6, 2)", ["(2, 2)", "(6, 2)"], "correct"),
                         ("(2, 2), (6, 2)", ["(2, 2)", "(6, 3)"], "wrong"),
                         ("-2, 1", ["-2", "1"], "correct"), ("3, 5, 7", ["3", "5"], "wrong"),
                         ("4, 9", ["4", "9"], "correct"), ("4, 9", ["4", "8"], "wrong")]:
    add("multi-box", gold, "", "math", exp, output=think + "The solutions are " +
        ", ".join(f"$\\boxed{{{b}}}$" for b in boxes) + ".")
    add("multi-box", gold, "", "math", exp, output=think + " and ".join(f"\\boxed{{{b}}}" for b in boxes))

# tuples and intervals
for gold, right, wrong in [("(2, 3)", ["(2,3)", "\\left(2, 3\\right)"], ["(3, 2)", "(2, 4)"]),
                           ("\\left( 3, \\frac{\\pi}{2} \\right)", ["(3, \\frac{\\pi}{2})", "(3, \\pi/2)"],
                            ["(3, \\pi)", "(\\frac{\\pi}{2}, 3)"]),
                           ("[1, 2)", ["[1,2)"], ["(1, 2]", "[1, 2]", "(1, 2)"]),
                           ("(-\\infty, 3]", ["(-\\infty,3]"], ["(-\\infty, 3)", "[3, \\infty)"]),
                           ("(1, -2, 4)", ["(1,-2,4)"], ["(1, 2, 4)", "(4, -2, 1)"])]:
    for r in right:
        add("tuple-interval", gold, r, "math", "correct")
    for w in wrong:
        add("tuple-interval", gold, w, "math", "wrong")

# radicals, pi, complex numbers, expressions
for gold, right, wrong in [("2\\sqrt{2}", ["\\sqrt{8}", "2 \\sqrt 2"], ["2\\sqrt{3}", "\\sqrt{2}", "4"]),
                           ("\\frac{\\sqrt{3}}{2}", ["\\frac{1}{2}\\sqrt{3}", "\\sqrt{3}/2"],
                            ["\\frac{\\sqrt{2}}{2}", "\\sqrt{3}"]),
                           ("3\\pi", ["3 \\pi", "\\pi \\cdot 3"], ["3", "\\pi", "6\\pi"]),
                           ("6 - 5i", ["6-5i", "-5i + 6"], ["6+5i", "5-6i"]),
                           ("x^2+2x+1", ["(x+1)^2", "x^2 + 2x + 1"], ["x^2+1", "(x-1)^2"]),
                           ("y = 2x + 3", ["y=2x+3"], ["y = 3x + 2", "y = 2x - 3"]),
                           ("\\frac{9}{4}\\pi", ["\\frac{9\\pi}{4}", "2.25\\pi"], ["\\frac{4\\pi}{9}", "9\\pi"]),
                           ("4\\sqrt{3}+2", ["2+4\\sqrt{3}"], ["4\\sqrt{2}+2", "4\\sqrt{3}-2"]),
                           ("\\frac{1}{6}", ["\\frac{2}{12}", "1/6"], ["\\frac{1}{5}", "6"])]:
    for r in right:
        add("expression", gold, r, "math", "correct")
    for w in wrong:
        add("expression", gold, w, "math", "wrong")

# text answers, degrees and units in MATH
for gold, right, wrong in [("\\text{Evelyn}", ["\\text{Evelyn}", "\\text{ Evelyn }"],
                            ["\\text{Evelin}", "\\text{Bob}"]),
                           ("90^\\circ", ["90", "90^{\\circ}", "90°"], ["45", "45^\\circ", "9"]),
                           ("5", ["5\\text{ cm}", "5 \\text{ units}"], ["6 \\text{ cm}", "50"]),
                           ("30", ["30^\\circ", "30 \\text{ degrees}"], ["60^\\circ", "3"]),
                           ("18", ["18.0", "x = 18"], ["81", "1.8"])]:
    for r in right:
        add("text-units", gold, r, "math", "correct")
    for w in wrong:
        add("text-units", gold, w, "math", "wrong")

# multiple choice (AMC-style letters)
for gold, right, wrong in [("\\text{(B)}", ["(B)", "B", "\\textbf{(B)}", "\\text{(B) }"], ["(C)", "\\text{(A)}"]),
                           ("(D)", ["D", "\\text{(D)}", "\\textbf{(D) } 12"], ["(E)", "A"]),
                           ("E", ["(E)", "\\mathrm{(E)}"], ["(B)", "D"])]:
    for r in right:
        add("choice", gold, r, "amc", "correct")
    for w in wrong:
        add("choice", gold, w, "amc", "wrong")

# AIME integers
for _ in range(12):
    n = rng.randint(1, 999)
    add("aime", str(n), f"{n:03d}", "aime", "correct")
    add("aime", f"{n:03d}", str(n), "aime", "correct")
    w = int(str(n)[::-1]) if int(str(n)[::-1]) != n else n + 1
    add("aime", str(n), str(w), "aime", "wrong")
    add("aime", str(n), str((n * 10) % 1000 or 7), "aime", "wrong")

# extraction: where the answer must come from
for _ in range(6):
    n = rng.randint(10, 500)
    add("extraction", str(n), "", "arithmetic", "wrong", output=f"<think>\nclearly \\boxed{{{n}}}\n</think>\nUnsure.")
    add("extraction", str(n), "", "arithmetic", "wrong", output=f"<think>\nfirst {n - 1} + 1 = {n}")
    add("extraction", str(n), "", "arithmetic", "wrong", output=f"<think>x</think> \\boxed{{{n}")
    add("extraction", str(n), "", "arithmetic", "correct",
        output=f"<think>\nmaybe \\boxed{{{n + 3}}}\n</think>\nThe answer is \\boxed{{{n}}}.")
    add("extraction", str(n), "", "arithmetic", "correct", output=f"So it is {n}.\nThe final answer is {n}")
    add("extraction", str(n), "", "arithmetic", "wrong", output=f"\\boxed{{{n}}} was my guess but \\boxed{{{n + 1}}}")

if __name__ == "__main__":
    path = Path(__file__).with_name("verifier_cases.jsonl")
    with path.open("w") as fh:
        for c in CASES:
            fh.write(json.dumps(c) + "\n")
    from collections import Counter

    print(f"wrote {len(CASES)} cases to {path}: {dict(Counter(c['category'] for c in CASES))}")
    print(dict(Counter(c["expected"] for c in CASES)))
