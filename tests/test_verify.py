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
    (boxed("forty-two"), "42", "arithmetic", WRONG),
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
