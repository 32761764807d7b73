"""Answer forms real models write, judged both ways (docs/verifier.md): each rewrite of a right answer must be
correct, each near-miss must not be correct."""

import pytest

from seqdistill.verify import CORRECT, UNVERIFIABLE, WRONG, check


def boxed(x):
    return f"<think>\nwork\n</think>\nSo the answer is \\boxed{{{x}}}."


RIGHT = [  # (completion, gold, task): must be judged correct
    ("The final answer is **18**.", "18", "gsm8k"),
    ("**Answer: 18**", "18", "gsm8k"),
    ("**Final Answer:** 18", "18", "gsm8k"),
    ("Final Answer: The final answer is $\\frac{1}{2}$. I hope it is correct.", "\\frac{1}{2}", "math"),
    ("Final Answer: The final answer is $7$. I hope it is correct.", "7", "math"),
    ("Some work.\n#### 18", "18", "gsm8k"),
    (boxed("7 \\text{ marbles}"), "7", "gsm8k"),
    (boxed("7 marbles"), "7", "gsm8k"),
    (boxed("50 percent"), "50\\%", "math"),
    (boxed("50 \\text{ percent}"), "50\\%", "math"),
    (boxed("50 pct"), "50\\%", "math"),
    (boxed("twelve"), "12", "gsm8k"),
    (boxed("twenty-four"), "24", "gsm8k"),
    (boxed("one hundred and five"), "105", "gsm8k"),
    (boxed("½"), "\\frac{1}{2}", "math"),
    (boxed("2½"), "\\frac{5}{2}", "math"),
    (boxed("√2"), "\\sqrt{2}", "math"),
    (boxed("€15"), "15", "gsm8k"),
    (boxed("£20.50"), "20.50", "gsm8k"),
    (boxed("₹ 300"), "300", "gsm8k"),
    (boxed("1\\,000\\,000"), "1000000", "gsm8k"),
    (boxed("x = 4"), "4", "math"),  # a bare-value gold: the assignment is dropped
    (boxed("a = 4"), "a = 4", "math"),
]

NOT_RIGHT = [  # (completion, gold, task, verdict it must get)
    ("The answer is $7$, not $9$.", "9", "math", UNVERIFIABLE),
    ("The answer is $7$, not $9$.", "7", "math", UNVERIFIABLE),  # never a guess, either way
    ("So we take $a$ rather than $b$.", "b", "math", UNVERIFIABLE),
    ("The answer is 12 instead of 15.", "15", "gsm8k", UNVERIFIABLE),
    (boxed("b = 4"), "a = 4", "math", WRONG),
    (boxed("90^\\circ"), "90\\%", "math", WRONG),
    (boxed("90°"), "90\\%", "math", WRONG),
    (boxed("C = 2\\pi r"), "(C)", "math", WRONG),
    (boxed("twelve"), "13", "gsm8k", WRONG),
    (boxed("50 percent"), "5", "math", WRONG),
    (boxed("€15"), "16", "gsm8k", WRONG),
    ("The final answer is **18**.", "19", "gsm8k", WRONG),
    (boxed("2½"), "\\frac{1}{2}", "math", WRONG),
]


@pytest.mark.parametrize("text,gold,task", RIGHT)
def test_rewrites_of_a_right_answer_are_correct(text, gold, task):
    v = check(text, gold, task, lenient=True)
    assert v.status == CORRECT, v


@pytest.mark.parametrize("text,gold,task,want", NOT_RIGHT)
def test_near_misses_are_not_correct(text, gold, task, want):
    v = check(text, gold, task, lenient=True)
    assert v.status == want, v


def test_a_boxed_answer_is_read_even_when_a_sentence_rejects_another_value():
    """The rejection rule reads closing sentences; an explicit box is the answer the model marked."""
    assert check("\\boxed{7}, not 9.", "7", "math").status == CORRECT
