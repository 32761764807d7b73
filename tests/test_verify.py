import time

import pytest

from seqdistill.verify import CORRECT, UNVERIFIABLE, WRONG, as_number, check, check_many, extract_answer


def boxed(ans):
    return f"<think>\nworking...\n</think>\nSo the result is \\boxed{{{ans}}}."


CASES = [
    # (completion, gold, task, expected status)
    (boxed("\\frac12"), "0.5", "math", CORRECT),
    (boxed("0.5"), "\\frac{1}{2}", "math", CORRECT),
    (boxed("\\frac{1}{3}"), "0.33", "math", WRONG),
    (boxed("x=3"), "3", "math", CORRECT),
    (boxed("\\{2, 1\\}"), "\\{1,2\\}", "math", CORRECT),
    (boxed("[1, 2)"), "[1,2)", "math", CORRECT),
    (boxed("(1, 2]"), "[1,2)", "math", WRONG),
    (boxed("\\text{Evelyn}"), "\\text{Evelyn}", "math", CORRECT),
    (boxed("\\text{Evelin}"), "\\text{Evelyn}", "math", WRONG),
    (boxed("90"), "90^\\circ", "math", CORRECT),
    (boxed("\\sqrt{8}"), "2\\sqrt{2}", "math", CORRECT),
    (boxed("2\\sqrt{3}"), "2\\sqrt{2}", "math", WRONG),
    (boxed("\\left( 3, \\frac{\\pi}{2} \\right)"), "\\left( 3, \\frac{\\pi}{2} \\right)", "math", CORRECT),
    (boxed("6-5i"), "6 - 5i", "math", CORRECT),
    (boxed("1,000"), "1000", "gsm8k", CORRECT),
    ("Adding up gives 2125.\n#### 2,125", "She pays 2125.\n#### 2,125", "gsm8k", CORRECT),
    ("so we get 17.\nThe answer is 17.", "Work.\n#### 17", "gsm8k", CORRECT),
    ("so we get 17.\nThe answer is 18", "Work.\n#### 17", "gsm8k", WRONG),
    (boxed("$18.00"), "#### 18", "gsm8k", CORRECT),
    (boxed("50\\%"), "#### 50", "gsm8k", CORRECT),
    (boxed("025"), "25", "aime", CORRECT),
    (boxed("25"), "025", "aime", CORRECT),
    (boxed("250"), "025", "aime", WRONG),
    (boxed("42"), "42", "arithmetic", CORRECT),
    (boxed("43"), "42", "arithmetic", WRONG),
    (boxed("forty-two"), "42", "arithmetic", CORRECT),  # number words are read (a whole answer of them)
    # truncated trace ending in a number: no closed think, no answer
    ("<think>\nfirst 3 + 4 = 7, then 7 * 6 = 42", "42", "arithmetic", WRONG),
    # the right answer inside <think> but not after it does not count
    ("<think>\nmaybe \\boxed{42}\n</think>\nThe result is unclear.", "42", "arithmetic", WRONG),
    # a truncated box is no answer
    ("<think>x</think> \\boxed{4", "42", "arithmetic", WRONG),
    (boxed("\\frac{\\sqrt{3}}{2}"), "\\frac{\\sqrt{3}}{2}", "amc", CORRECT),
    (boxed("7"), "", "math", UNVERIFIABLE),
]


@pytest.mark.parametrize("text,gold,task,want", CASES)
def test_check_table(text, gold, task, want):
    assert check(text, gold, task).status == want


def test_check_many_matches_check_and_uses_fast_path():
    stats = {}
    verdicts = check_many([(t, g, k) for t, g, k, _ in CASES], workers=2, timeout=5, stats=stats)
    assert [v.status for v in verdicts] == [w for *_, w in CASES]
    assert stats["fast_path"] > 10 and stats["slow_path"] > 5


def test_extract_answer_forms():
    assert extract_answer("a \\boxed{1} then \\boxed{\\frac{a}{b}}", "math") == "\\frac{a}{b}"
    assert extract_answer("text\n#### 1,234", "gsm8k") == "1,234"
    assert extract_answer("The final answer is: $\\boxed{7}$", "aime") == "7"
    assert extract_answer("The answer is 7.", "aime") == "7"
    assert extract_answer("<think>unclosed 7", "aime") is None
    assert as_number("1,000") == 1000 and as_number("$5") == 5 and as_number("12.0") == 12
    assert as_number("\\frac12") is None


def test_pathological_input_finishes_within_timeout():
    evil = boxed("9^{9^{9^{9^{9^{9^{9}}}}}}")
    t0 = time.monotonic()
    v = check_many([(evil, "3", "math"), (boxed("\\frac12"), "0.5", "math")], workers=1, timeout=1.0)
    elapsed = time.monotonic() - t0
    assert v[0].status == UNVERIFIABLE and v[0].reason == "timeout"
    assert v[1].status == CORRECT  # the pool recovered for the next item
    assert elapsed < 15


def _stuck_in_c(pred, gold, real=__import__("seqdistill.verify", fromlist=["slow_check"]).slow_check):
    import signal as s

    if pred == "\\hang":  # like a C-level computation: the timer signal never gets through
        s.pthread_sigmask(s.SIG_BLOCK, [s.SIGALRM])
        time.sleep(60)
    return real(pred, gold)


def test_worker_that_ignores_the_timer_is_killed_and_replaced(monkeypatch):
    import seqdistill.verify as v

    monkeypatch.setattr(v, "slow_check", _stuck_in_c)
    items = [(boxed("\\hang"), "3", "math"), (boxed("\\frac12"), "0.5", "math"), (boxed("\\sqrt{8}"),
                                                                                  "2\\sqrt{2}", "math")]
    t0 = time.monotonic()
    got = v.check_many(items, workers=1, timeout=0.5)
    assert [(x.status, x.reason) for x in got] == [(UNVERIFIABLE, "timeout"), (CORRECT, "math-verify"),
                                                   (CORRECT, "math-verify")]
    assert time.monotonic() - t0 < 10


# ------------------------------------------------------------------ issue 7: soundness and conventions
FALSE_CORRECT_BEFORE = [  # each was "correct" on the old number fast path
    ("357", "3, 5, 7", "math"), ("-21", "-2,1", "math"), ("12", "1,2", "math"), ("672", ".0000672", "math"),
    ("4", ".4", "math"), ("5", ".5", "math"), ("12", "#### 1,2", "gsm8k"), ("4", "#### .4", "gsm8k"),
    ("12", "1,2", "arithmetic"), ("5", ".5", "arithmetic"), ("35625", ".35625", "math"),
]


@pytest.mark.parametrize("pred,gold,task", FALSE_CORRECT_BEFORE)
def test_fast_path_never_says_correct_by_accident(pred, gold, task):
    assert check(boxed(pred), gold, task).status != CORRECT


FALSE_WRONG_BEFORE = [  # each was "wrong" before; the field's checkers agree they are correct
    (".4", "0.4", "math"), (".1", "0.1", "math"), ("18 \\text{ dollars}", "#### 18", "gsm8k"),
    ("x = 18", "#### 18", "gsm8k"), ("31{,}800", "#### 31800", "gsm8k"),
    ("1.24 \\times 10^{-8}", "1.24e-8", "math"), ("2,74 $", "#### 2.74", "gsm8k"),
    ("\\text{(B)}", "(B)", "amc"), ("\\frac{36}{2}", "#### 18", "gsm8k"),
]


@pytest.mark.parametrize("pred,gold,task", FALSE_WRONG_BEFORE)
def test_equivalent_forms_are_correct(pred, gold, task):
    assert check(boxed(pred), gold, task).status == CORRECT


def test_several_boxes_form_one_answer():
    three = "<think>x</think> The roots are $\\boxed{1}$, $\\boxed{2}$, $\\boxed{3}$."
    assert check(three, "\\{1,2,3\\}", "math").status == CORRECT
    pairs = "<think>x</think> \\boxed{(2, 2)} and \\boxed{(6, 2)}"
    assert check(pairs, "(2, 2), (6, 2)", "math").status == CORRECT
    assert check(pairs, "(2, 2), (6, 3)", "math").status == WRONG
    # boxes separated by other words are not one answer: the last one counts
    assert check("\\boxed{41} was a guess, but really \\boxed{42}", "42", "arithmetic").status == CORRECT
    assert extract_answer("\\boxed{5} so \\boxed{5}", "arithmetic") == "5"


def test_verdict_explains_the_decision():
    v = check(boxed("x = 18"), "#### 18", "gsm8k")
    assert (v.reason, v.detail) == ("fast-path", "number 18 == 18")
    assert check(boxed("\\sqrt{8}"), "2\\sqrt{2}", "math").reason == "math-verify"


B = lambda a: "<think>x</think> \\boxed{" + a + "}"  # noqa: E731
PATHOLOGICAL = {
    "huge exponent": B("1e999999999"), "huge power": B("10^{10^{10^{10}}}"),
    "tower": B("9^{9^{9^{9^{9^{9^{9}}}}}}"), "factorial": B("(10^{100})!"), "factorial2": B("100000000!"),
    "sci huge": B("1 \\times 10^{99999999}"),
    "deep braces": "<think>x</think> \\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "deep frac": B("\\frac{" * 5000 + "1" + "}{2}" * 5000), "deep parens": B("(" * 5000 + "1" + ")" * 5000),
    "megabyte box": B("1" * 1_000_000), "megabyte text": "the answer is " + "9" * 1_000_000,
    "megabyte unclosed": "<think>" + "\\boxed{" * 200_000, "many boxes": "\\boxed{1}, " * 100_000,
    "unbalanced": "<think>x</think> \\boxed{{{{1}", "unbalanced close": "<think>x</think> \\boxed{1}}}}}}",
    "surrogates": B("\ud800\udfff\ud800"), "empty": "", "empty box": B(""), "long digits": B("1" * 5000),
}


# math in the fast tier; the other tasks' extraction paths in the full run (each waits out its timeouts: ~5 s)
@pytest.mark.parametrize("task", ["math", pytest.param("gsm8k", marks=pytest.mark.slow),
                                  pytest.param("aime", marks=pytest.mark.slow)])
def test_pathological_inputs_return_within_the_timeout(task):
    timeout = 1.0
    t0 = time.monotonic()
    got = check_many([(t, "3", task) for t in PATHOLOGICAL.values()], workers=2, timeout=timeout)
    # every item at most the hard kill (2 * timeout + 1) on 2 workers, plus pool start-up
    assert time.monotonic() - t0 < len(PATHOLOGICAL) * (2 * timeout + 1) / 2 + 5
    for name, v in zip(PATHOLOGICAL, got):
        assert v.status in (WRONG, UNVERIFIABLE), name
        for s in (v.pred, v.gold):
            assert s is None or (len(s) < 400 and s.encode("utf-8")), name  # storable in Parquet


@pytest.mark.parametrize("name", ["huge exponent", "tower", "factorial2", "deep frac", "megabyte box",
                                  "surrogates", "empty"])
def test_pathological_through_check(name):
    t0 = time.monotonic()
    v = check(PATHOLOGICAL[name], "3", "math", timeout=1.0)
    assert v.status in (WRONG, UNVERIFIABLE)
    assert time.monotonic() - t0 < 2 * 1.0 + 3


def test_parent_side_extraction_is_fast_on_huge_text():
    from seqdistill.verify import _prepare

    t0 = time.monotonic()
    for text in PATHOLOGICAL.values():
        _prepare(text, "3", "math")
        _prepare(text, "3", "gsm8k", lenient=True)
    assert time.monotonic() - t0 < 5  # no worker involved: must be linear-time
