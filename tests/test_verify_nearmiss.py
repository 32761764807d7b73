"""Issue 16: no "correct" for a wrong answer on the near-misses a model really writes, and a differential fuzz test
against math-verify. Each class below was judged correct before the fix (see the issue); the fuzz test makes
near-misses from gold answers by rule and asserts none of them is ever "correct"."""

import itertools
import random
from fractions import Fraction

import pytest

from seqdistill.answers import extract_answer
from seqdistill.verify import CORRECT, WRONG, check, check_many, for_math_verify, slow_check


def boxed(ans):
    return f"<think>\nworking...\n</think>\nSo the result is \\boxed{{{ans}}}."


NEAR_MISSES = [  # (prediction, gold, task): the values differ, so "correct" is a false positive
    # separators: a comma and a space separate list items, never thousands or decimals
    ("2, 250", "#### 2250", "gsm8k"), ("2, 25", "#### 2.25", "gsm8k"), ("12, 5", "#### 12.5", "gsm8k"),
    ("1, 000", "1000", "math"), ("3, 5", "35", "arithmetic"), ("4, 5", "4.5", "arithmetic"),
    # words after a number that change or qualify it
    ("5 thousand", "#### 5", "gsm8k"), ("3 dozen", "#### 3", "gsm8k"), ("2 and a half", "#### 2", "gsm8k"),
    ("5 or more", "#### 5", "gsm8k"), ("7 squared", "7", "math"), ("6 \\text{ thousand}", "6", "math"),
    ("6 \\text{ thousand}", "#### 6", "gsm8k"), ("4 million", "4", "aime"), ("3 hundred", "3", "arithmetic"),
    ("5 at least", "#### 5", "gsm8k"), ("about 5", "#### 5", "gsm8k"), ("12 times", "#### 12", "gsm8k"),
    # units that differ
    ("5 \\text{ km}", "5 \\text{ m}", "math"), ("5 \\text{ hours}", "5 \\text{ minutes}", "math"),
    ("3 \\text{ feet}", "3 \\text{ inches}", "math"), ("8 \\text{ cm}", "8 \\text{ mm}", "math"),
    # percent: 0.5% is 0.005
    ("0.5\\%", "0.5", "math"), ("0.5\\%", "#### 0.5", "gsm8k"), ("5\\%", "0.5", "math"), ("50\\%", "5", "math"),
    ("0.25\\%", "#### 0.25", "gsm8k"),
    # several choices for one question
    ("B \\text{ and } C", "(B)", "amc"), ("(B) or (C)", "B", "amc"), ("A B C D E", "(B)", "amc"),
    ("\\text{(B), (C)}", "B", "amc"), ("(B), (D)", "(B)", "math"),
    # \left / \right stripping must not cut \leftarrow / \rightarrow
    ("\\leftarrow", "\\rightarrow", "math"), ("\\Leftarrow", "\\Rightarrow", "math"),
    ("x \\rightarrow 1", "x \\leftarrow 1", "math"),
    # superscripts are exponents
    ("2³", "2", "math"), ("10²", "10", "math"),
]


@pytest.mark.parametrize("pred,gold,task", NEAR_MISSES)
def test_near_miss_is_never_correct(pred, gold, task):
    v = check(boxed(pred), gold, task, timeout=30)
    assert v.status != CORRECT, (pred, gold, v)


STILL_CORRECT = [  # the conventions that stay, each value-preserving or documented in answers.py
    ("2,250", "#### 2250", "gsm8k"), ("18 dollars", "#### 18", "gsm8k"), ("18 \\text{ dollars}", "#### 18", "gsm8k"),
    ("\\$18.00", "#### 18", "gsm8k"), ("18 apples", "#### 18", "gsm8k"), ("5 \\text{ km}", "5", "math"),
    ("5 \\text{ km}", "5 \\text{ kilometers}", "math"), ("3 hours", "#### 3", "gsm8k"),
    ("50\\%", "#### 50", "gsm8k"), ("50\\%", "0.5", "math"), ("5\\%", "0.05", "math"), ("0\\%", "0", "math"),
    ("2,74 $", "#### 2.74", "gsm8k"), ("90^\\circ", "90", "math"), ("2³", "8", "math"),
    ("\\text{(B)}", "(B)", "amc"), ("\\textbf{(B) } 12", "B", "amc"), ("\\leftarrow", "\\leftarrow", "math"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)", "math"),
]


@pytest.mark.parametrize("pred,gold,task", STILL_CORRECT)
def test_conventions_that_hold_stay_correct(pred, gold, task):
    assert check(boxed(pred), gold, task, timeout=30).status == CORRECT


def test_no_box_is_silently_dropped_and_joiners_are_read():
    eight = "<think>x</think> " + ", ".join(f"\\boxed{{{i}}}" for i in range(1, 9))
    assert extract_answer(eight, "math") == "1, 2, 3, 4, 5, 6, 7, 8"
    assert check(eight, "\\{3, 4, 5, 6, 7, 8\\}", "math").status != CORRECT  # was: the last 6 only
    assert check(eight, "\\{1, 2, 3, 4, 5, 6, 7, 8\\}", "math").status == CORRECT
    quad = "<think>x</think> $\\boxed{3} \\quad \\text{and} \\quad \\boxed{4}$"
    assert extract_answer(quad, "math") == "3, 4"
    assert check(quad, "3, 4", "math").status == CORRECT and check(quad, "4", "math").status == WRONG
    parts = "<think>x</think> \\boxed{12} \\text{ for part (a) and } \\boxed{7} for part (b)."
    assert extract_answer(parts, "math") == "12, 7"
    # a box after a real sentence is a second attempt, not part of a list
    assert extract_answer("<think>x</think> \\boxed{5}. Wait, that is wrong: \\boxed{6}", "math") == "6"
    many = "<think>x</think> " + ", ".join(f"\\boxed{{{i}}}" for i in range(400))
    v = check(many, "399", "math")
    assert v.status != CORRECT and v.reason == "answer too long"


def test_closing_sentence_latex_is_read_as_math_verify_reads_it():
    text = "<think>x</think> Counting the cases, the probability is $\\frac{1}{2}$."
    assert check(text, "\\frac{1}{2}", "math").status == CORRECT
    assert check(text, "\\frac{1}{3}", "math").status == WRONG
    # a formula with words after it is not the answer
    assert extract_answer("<think>x</think> We set $x=2$ and then compute more.", "math") is None


def test_math_verify_gets_value_preserving_text():
    assert for_math_verify("2³") == "$2^{3}$" and for_math_verify("\\frac12") == "$\\frac12$"
    assert for_math_verify("$x$ and $y$") == "$x$ and $y$"  # already math mode: as it is
    assert for_math_verify("\\boxed{1} no \\boxed{2}") == "\\boxed{1} no \\boxed{2}"
    assert slow_check("8", "2³") == (CORRECT, "math-verify") and slow_check("2", "2³")[0] == WRONG


def test_check_reuses_one_worker_pool():
    from seqdistill import verify

    check(boxed("\\sqrt{8}"), "2\\sqrt{2}", "math")
    pools = dict(verify._POOLS)
    pids = [w["proc"].pid for p in pools.values() for w in p.procs]
    for _ in range(5):
        assert check(boxed("\\sqrt{8}"), "2\\sqrt{2}", "math").status == CORRECT
    assert [w["proc"].pid for p in verify._POOLS.values() for w in p.procs] == pids


# ------------------------------------------------------------------ differential fuzz
NUMERIC_GOLDS = ["18", "2250", "0.5", "12.5", "-7", "1000", "3", "0.05", "125", "4.75", "60", "99"]
TUPLE_GOLDS = ["(1, 2)", "(3, -4)", "(2, 5, 7)"]
LIST_GOLDS = ["1, 2, 3", "4, 9"]
UNIT_GOLDS = [("5", "cm"), ("12", "km"), ("3", "hours")]
MULTIPLIERS = ["thousand", "dozen", "hundred", "million", "and a half", "or more", "squared", "times"]


def _digit_swaps(s, rng):
    digits = [i for i, c in enumerate(s) if c.isdigit()]
    i = rng.choice(digits)
    return s[:i] + str((int(s[i]) + rng.randint(1, 9)) % 10) + s[i + 1:]


def near_misses(seed=0):
    """(pred, gold, task, how): every pred's value differs from its gold's."""
    rng = random.Random(seed)
    out = []
    for g in NUMERIC_GOLDS:
        v = Fraction(g)
        for task, gold in (("math", g), ("gsm8k", f"#### {g}"), ("arithmetic", g)):
            swapped = _digit_swaps(g, rng)
            if Fraction(swapped) != v:
                out.append((swapped, gold, task, "digit swap"))
            if v != 0:
                out.append((str(-v) if v.denominator == 1 else g.lstrip("-") if g.startswith("-") else "-" + g,
                            gold, task, "sign flip"))
            k = rng.choice([1, 2, 3])
            out.append((str(v * 10 ** k) if (v * 10 ** k).denominator == 1 else f"{float(v * 10 ** k):g}",
                        gold, task, "scale x10^k"))
            out.append((f"{float(v / 10 ** k):.{k + 4}f}".rstrip("0"), gold, task, "scale /10^k"))
            for word in MULTIPLIERS:
                out.append((f"{g} {word}", gold, task, "multiplier word"))
                out.append((f"{g} \\text{{ {word}}}", gold, task, "multiplier word"))
            if v != 0 and abs(v) < 1:
                out.append((f"{g}\\%", gold, task, "percent of a fraction"))
            out.append((f"{float(v / 100):g}" if abs(v) >= 1 else f"{float(v * 100):g}", gold, task,
                        "percent/decimal swap"))
            if len(g.lstrip("-").replace(".", "")) >= 2 and "." not in g:
                out.append((g[:1] + ", " + g[1:], gold, task, "comma-space split"))
    for g in TUPLE_GOLDS:
        items = g.strip("()").split(", ")
        out.append(("(" + ", ".join(reversed(items)) + ")", g, "math", "reordered tuple"))
        out.append(("(" + ", ".join(items[:-1]) + ")" if len(items) > 2 else items[0], g, "math", "dropped element"))
        out.append(("(" + ", ".join(items + ["0"]) + ")", g, "math", "added element"))
    for g in LIST_GOLDS:
        items = g.split(", ")
        out.append((", ".join(items[:-1]), g, "math", "dropped element"))
        out.append((", ".join(items + ["11"]), g, "math", "added element"))
    for num, unit in UNIT_GOLDS:
        gold = f"{num} \\text{{ {unit}}}"
        other = {"cm": "m", "km": "miles", "hours": "minutes"}[unit]
        out.append((f"{num} \\text{{ {other}}}", gold, "math", "changed unit"))
        out.append((f"{num} \\text{{ thousand {unit}}}", gold, "math", "multiplier before unit"))
    return out


def test_fuzz_near_misses_are_never_correct():
    cases = near_misses()
    assert len(cases) > 300 and len({c[3] for c in cases}) >= 10
    verdicts = check_many([(boxed(p), g, t) for p, g, t, _ in cases], workers=2, timeout=30)
    bad = [(c, v.reason, v.detail) for c, v in zip(cases, verdicts) if v.status == CORRECT]
    assert not bad, bad[:10]


REWRITES = [  # correct answers written another way: (pred, gold, task)
    ("\\frac{1}{2}", "0.5", "math"), ("1/2", "0.5", "math"), ("0.50", "0.5", "math"), ("\\frac{36}{2}", "18", "math"),
    ("18.0", "#### 18", "gsm8k"), ("x = 18", "18", "math"), ("(1,2)", "(1, 2)", "math"), ("2\\sqrt{2}", "\\sqrt{8}",
                                                                                           "math"),
    ("\\dfrac{3}{4}", "\\frac34", "math"), ("-7", "-7", "math"), ("1000", "1,000", "math"), ("1{,}000", "1000", "math"),
    ("\\{2, 1\\}", "\\{1, 2\\}", "math"), ("\\pi", "\\pi", "math"), ("2^{10}", "1024", "math"),
    ("3.0", "3", "arithmetic"), ("0.125", "\\frac{1}{8}", "math"), ("1.2 \\times 10^{3}", "1200", "math"),
]


def test_agrees_with_math_verify_where_it_is_sure():
    """Where math-verify parses both sides and says correct, so do we; where it says wrong, we never say correct
    (conventions that deliberately differ are listed in answers.py and tested above, not here)."""
    cases = [(p, g, t) for p, g, t, _ in near_misses()] + REWRITES
    ours = check_many([(boxed(p), g, t) for p, g, t in cases], workers=2, timeout=30)
    from seqdistill.answers import TASKS, gold_answer

    disagree = []
    for (p, g, t), v in itertools.islice(zip(cases, ours), None):
        mv = slow_check(p, gold_answer(g, TASKS[t]))
        if mv[0] == WRONG and v.status == CORRECT:
            disagree.append((p, g, t, "we say correct, math-verify wrong"))
        if mv[0] == CORRECT and (p, g, t) in REWRITES and v.status != CORRECT:
            disagree.append((p, g, t, "math-verify says correct, we do not"))
    assert not disagree, disagree


def test_witness_scorer_agrees_on_plain_gsm8k_answers():
    """The outside witness (lighteval's GSM8K scoring through math-verify) and our verifier agree on the usual
    shapes of a GSM8K answer, and both refuse an answer left inside an unclosed <think>."""
    from seqdistill.verify import witness_many

    items = [("She sells 48 + 24 = 72 clips. \\boxed{72}", "work\n#### 72", "gsm8k"),
             ("The answer is \\boxed{71}.", "work\n#### 72", "gsm8k"),
             ("So the total is $1,250.", "work\n#### 1250", "gsm8k"),
             ("<think>maybe \\boxed{72}", "work\n#### 72", "gsm8k")]
    ours = [v.status for v in check_many(items, lenient=True)]
    assert witness_many(items) == ours == [CORRECT, WRONG, CORRECT, WRONG]
