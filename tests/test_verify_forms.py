"""Answer forms real models write, judged both ways (docs/verifier.md): each rewrite of a right answer must be
correct, each near-miss must not be correct."""

import re

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


# ------------------------------------------------------------------ units, scales, ratios, sets (docs/verifier.md)
UNIT_RIGHT = [  # a unit that matches the gold's, or a unit on one side only: judged by value
    (boxed("12 \\text{ cm}^2"), "12 \\text{ cm}^2", "math"),
    (boxed("12 \\mathrm{cm^2}"), "12 \\text{ cm}^{2}", "math"),
    (boxed("12 \\text{ cm}^2"), "12", "math"),
    (boxed("12 \\text{ square centimeters}"), "12 \\text{ cm}^2", "math"),
    (boxed("40 sq ft"), "40 \\text{ft}^2", "gsm8k"),
    (boxed("5 \\text{ m/s}^2"), "5", "math"),
    (boxed("9.8 \\,\\mathrm{m\\cdot s^{-2}}"), "9.8 \\text{ m/s}^2", "math"),
    (boxed("13.6 \\text{ eV}"), "13.6", "math"),
    (boxed("13.6 \\mathrm{~eV}"), "13.6 \\mathrm{eV}", "math"),
    (boxed("13.6\\,\\mathrm{eV}"), "13.6 \\text{ eV}", "math"),
    (boxed("13.6 eV"), "13.6", "math"),
    (boxed("500 \\text{ nm}"), "500", "math"),
    (boxed("4.2 \\text{ kcal}"), "4.2", "math"),
    (boxed("20 \\text{ J}"), "20", "math"),
    (boxed("9.8 \\text{ N}"), "9.8", "math"),
    (boxed("8.314 \\text{ J/(mol K)}"), "8.314", "math"),
    (boxed("60 \\text{ km/h}"), "60", "math"),
    (boxed("60 km/h"), "60", "gsm8k"),
    (boxed("60 mph"), "60 \\text{ mi/h}", "gsm8k"),
    (boxed("2.5 \\text{ kHz}"), "2.5", "math"),
    (boxed("\\frac{1}{2} \\text{ J}"), "\\frac{1}{2}", "math"),
]
UNIT_NOT_RIGHT = [  # two different units: wrong (never converted)
    (boxed("12 \\text{ cm}^2"), "12 \\text{ cm}^3", "math"),
    (boxed("12 \\text{cm}^2"), "12 \\text{cm}^3", "math"),
    (boxed("12\\ \\mathrm{cm^2}"), "12\\ \\mathrm{cm^3}", "math"),
    (boxed("12 cm^2"), "12 cm^3", "math"),
    (boxed("5 \\text{ m/s}"), "5 \\text{ m/s}^2", "math"),
    (boxed("5 \\text{ m/s^2}"), "5 \\text{ m/s}", "math"),
    (boxed("5 m/s"), "5 m/s^2", "gsm8k"),
    (boxed("20 \\text{ J}"), "20 \\text{ N}", "math"),
    (boxed("13.6 \\text{ eV}"), "13.6 \\text{ keV}", "math"),
    (boxed("500 \\text{ nm}"), "500 \\text{ mm}", "math"),
    (boxed("40 \\text{ ft}^2"), "40 \\text{ ft}^3", "gsm8k"),
    (boxed("5 \\text{ km}"), "5000 \\text{ m}", "math"),  # the convention: units are not converted
    (boxed("8.314 \\text{ J/(mol K)}"), "8.314 \\text{ J/mol}", "math"),
]


@pytest.mark.parametrize("text,gold,task", UNIT_RIGHT)
def test_a_unit_the_gold_shares_or_lacks_leaves_the_value_to_judge(text, gold, task):
    assert check(text, gold, task, lenient=True).status == CORRECT
    # the same answer with its number changed (the last digit + 1): the unit alone never makes it correct
    bump = re.compile(r"(\\boxed\{(?:\\frac\{\d+\}\{)?[\d.]*?)(\d)")
    wrong_value = bump.sub(lambda m: m.group(1) + str(int(m.group(2)) + 1), text, count=1)
    assert wrong_value != text and check(wrong_value, gold, task, lenient=True).status == WRONG


@pytest.mark.parametrize("text,gold,task", UNIT_NOT_RIGHT)
def test_different_units_are_wrong_even_with_equal_numbers(text, gold, task):
    v = check(text, gold, task, lenient=True)
    assert v.status == WRONG and "units differ" in v.detail, v


def test_one_letter_symbols_in_plain_math_text_stay_variables():
    """`5 m` may be 5m in a MATH answer: plain one-letter units count only in \\text{} or for numeric tasks."""
    from seqdistill.answers import UNITS
    from seqdistill.units import parse_unit, split_unit

    assert split_unit("5 m", UNITS, letters_are_units=False) is None
    assert split_unit("5 m/s", UNITS, letters_are_units=False) is None
    assert split_unit("5 \\text{ m/s}", UNITS, letters_are_units=False) == ("5", "meter second^-1")
    assert split_unit("5 m", UNITS) == ("5", "meter")
    assert parse_unit("x^2", UNITS) is None and parse_unit("apples", UNITS) is None
    assert parse_unit("J/(mol K", UNITS) is None and parse_unit("m/", UNITS) is None
    assert parse_unit("kg m/s^2", UNITS) == parse_unit("\\mathrm{kg\\cdot m\\cdot s^{-2}}", UNITS)
    assert parse_unit("m/s/s", UNITS) == parse_unit("m/s^2", UNITS) != parse_unit("m s^2", UNITS)


SCALE_CASES = [  # (completion, gold, verdict)
    (boxed("3 million"), "3000000", CORRECT),
    (boxed("2 dozen"), "24", CORRECT),
    (boxed("3 thousand"), "3000", CORRECT),
    (boxed("1.5 billion"), "1500000000", CORRECT),
    (boxed("2 dozen eggs"), "24", CORRECT),
    (boxed("3 million dollars"), "3000000", CORRECT),
    (boxed("3 million"), "3", UNVERIFIABLE),  # the question may count in millions: not read here, not guessed
    (boxed("2 dozen"), "2", UNVERIFIABLE),
    (boxed("3 million"), "300000", WRONG),
    (boxed("2 dozen"), "25", WRONG),
    (boxed("4 hundred"), "400", CORRECT),
    (boxed("5 thousands"), "5000", CORRECT),
]


@pytest.mark.parametrize("text,gold,want", SCALE_CASES)
def test_scale_words_are_read_as_their_value_or_left_undecided(text, gold, want):
    v = check(text, gold, "gsm8k", lenient=True)
    assert v.status == want, v


RATIO_CASES = [  # ratios are ordered; equivalent-but-not-equal and ratio-against-number are not guessed
    (boxed("1:2:3"), "1:2:3", CORRECT),
    (boxed("1 : 2"), "1:2", CORRECT),
    (boxed("3 \\colon 4"), "3:4", CORRECT),
    (boxed("3:2:1"), "1:2:3", WRONG),
    (boxed("2:1"), "1:2", WRONG),
    (boxed("1:2"), "1:3", WRONG),
    (boxed("1:2:3"), "1:2", WRONG),
    (boxed("2:4"), "1:2", UNVERIFIABLE),
    (boxed("1:2"), "\\frac{1}{2}", UNVERIFIABLE),
    (boxed("2"), "2:1", UNVERIFIABLE),
    (boxed("6"), "3:2:1", UNVERIFIABLE),  # math-verify reads 3:2:1 as a division (1.5) or worse
]


@pytest.mark.parametrize("text,gold,want", RATIO_CASES)
def test_ratios_are_ordered_tuples(text, gold, want):
    v = check(text, gold, "math", lenient=True)
    assert v.status == want, v


@pytest.mark.parametrize("text,gold,want", [
    (boxed("\\{1, 2\\}"), "\\{2, 1\\}", CORRECT),  # a set: order does not matter
    (boxed("(1, 2)"), "(2, 1)", WRONG),  # an ordered tuple: it does
    (boxed("(1, 2)"), "(1, 2)", CORRECT),
    (boxed("1, 2"), "2, 1", CORRECT),  # a bare list is a set to math-verify: its convention, kept
    (boxed("\\{1, 2\\}"), "\\{1, 3\\}", WRONG),
])
def test_sets_and_tuples_follow_math_verify(text, gold, want):
    assert check(text, gold, "math", lenient=True).status == want
