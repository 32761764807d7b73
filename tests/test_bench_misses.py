"""bench/gsm8k_misses.py: the miss classes of the GSM8K diagnosis (docs/gsm8k-scaled.md)."""

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "bench"))

from gsm8k_misses import classify, looping, wrong_calculation  # noqa: E402


def row(text, finish="stop", pred="5", reason="fast-path"):
    return {"completion": text, "finish_reason": finish, "pred": pred, "verify_reason": reason}


def test_each_miss_gets_the_first_class_that_fits():
    assert wrong_calculation("so 12 * 3 = 36 and 36 + 4 = 41") == "36 + 4 = 41"
    assert wrong_calculation("12 * 3 = 36, 10 / 4 = 2.5, 1,200 + 300 = 1,500, 7 \\times 3 = 21") is None
    assert looping(" ".join(["she buys two apples and then sells them again"] * 10))
    assert classify(row("12 * 3 = 35", finish="length")) == "truncated"
    assert classify(row(" ".join(["add the apples to the pears and count them all"] * 10))) == "looping"
    assert classify(row("I am not sure.", pred=None, reason="no answer")) == "no_answer"
    assert classify(row("12 * 3 = 35, so \\boxed{35}")) == "arithmetic"
    assert classify(row("12 * 3 = 36, so \\boxed{36}")) == "reasoning"
