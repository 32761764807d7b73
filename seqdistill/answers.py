"""Answer conventions: where a final answer is found in a completion, how it is normalised, and the small
number grammar the verifier's fast path trusts. Everything here runs in the parent process on untrusted
model text, so every function is linear in its input and never hands text to Fraction/float/sympy.

Conventions (one table for filter and eval; where the field's checkers differ we follow math-verify /
lighteval and say so):

extraction (only from the text after </think>; an unclosed <think> has no answer)
  boxed      last \\boxed{..} / \\fbox{..}; boxes in a row joined by ",", ";", "and", "or", \\quad, short
             \\text{..} joiners form one list (math-verify: `\\boxed{1}, \\boxed{2}` is the set {1, 2}); every box of
             the run is kept (a run past MAX_ANSWER_CHARS is "answer too long", never cut short).
  final_latex  (math, amc) a closing $..$ / \\(..\\) / \\[..\\] with only punctuation after it, as math-verify.
  hash       "#### N" (GSM8K's own format)
  answer_is  "The answer is X" / "Final answer: X" (lighteval's anchors)
  last_number  the last number in the text: lenient scoring of numeric tasks only (gsm8k, arithmetic, aime)
  strict = the task's required form (boxed for math-style prompts); lenient = boxed, else answer_is,
  else hash, else (numeric tasks) last number: what the standard evaluators do.

normalisation (both sides)
  dropped: $ \\$ \\( \\) \\left \\right (as sizes, never \\leftarrow), spacing (\\, \\; \\! \\: ~ \\ ),
           a trailing period; \\dfrac/\\tfrac -> \\frac
  {,} -> ,  (LaTeX thousands separator)        ^\\circ ^{\\circ} ° \\degree  (degrees, as math-verify)
  a leading single-letter assignment "x = 18" -> 18 (math-verify compares the right-hand side)
  units after a number (units.py): the names in UNITS and physical symbols with powers, products and
  quotients ("12 \\text{ cm}^2", "5 m/s^2", "13.6 \\mathrm{~eV}"), in \\text{} or as plain words (one-letter
  plain symbols only for numeric tasks); both sides with a unit: the units must match, never converted. Scale
  words ("3 million", "2 dozen") scale the number (verify.fast_check decides against the gold); other words
  after a number ("7 squared", "5 or more") are never dropped: such an answer is wrong against a plain number.
  Numeric tasks also drop a plural count noun ("18 apples"), which names what is counted.
  %: by value ("50\\%" = 0.5), or the field's convention that a percentage gold is the number of percent
  ("50\\%" answers gold 50, as lighteval) where that gold is at least 1 (or 0): "0.5\\%" never answers 0.5.
  lists: a comma followed by a space separates items ("2, 250" is two numbers).

numbers (the fast path's grammar; anything else goes to math-verify in a killable worker)
  [sign] digits | 3-digit comma groups (1,234,567) | leading-dot decimal (.4) [e|E exponent]
  "A \\times 10^{B}" / "A \\cdot 10^{B}" scientific notation; |exponent| <= 1000, at most 60 digits.
  "12" is never "1,2": a comma is a thousands separator only between 3-digit groups. A decimal comma
  ("2,74") is read only for single-number tasks (gsm8k, arithmetic) where it cannot be a list.
choice letters (amc, math): gold "(B)" / "B" / "\\text{(B)}" compares letters with "\\textbf{(B)} 5", "B".
integers (aime): "025" == "25"; golds outside 0..999 are unverifiable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from .think import split_reasoning
from .units import canonical_name, split_unit

MAX_ANSWER_CHARS = 1000  # longer "answers" are not answers: unverifiable, never sent to sympy
_MAX_NUMBER_CHARS = 80
_MAX_EXPONENT = 1000


@dataclass(frozen=True)
class Task:
    gold_form: str  # "raw": the field is the answer; "gsm8k": text ending in '#### N'; "boxed": a solution
    pred_forms: tuple[str, ...]  # strict extraction: tried in order on the answer part
    compare: str  # "number" (exact rational), "integer" (AIME: 025 == 25), "math" (math-verify)
    int_range: tuple[int, int] | None = None
    decimal_comma: bool = False  # single-number answers: "2,74" can only mean 2.74
    plain_units: bool = False  # words after a number are units ("18 dollars")
    lenient_forms: tuple[str, ...] = ("boxed", "answer_is")

    @property
    def executes(self) -> bool:
        """Answers are programs judged by running the gold tests in the sandbox (not compared as text): no math
        witness, no majority vote over texts, gold validated as test code when loaded."""
        return self.compare == "execute"


_NUMERIC_LENIENT = ("boxed", "answer_is", "hash", "last_number")
TASKS: dict[str, Task] = {
    "gsm8k": Task("gsm8k", ("boxed", "hash", "answer_is"), "number", decimal_comma=True, plain_units=True,
                  lenient_forms=_NUMERIC_LENIENT),
    "math": Task("raw", ("boxed", "final_latex"), "math", lenient_forms=("boxed", "answer_is", "final_latex")),
    "aime": Task("raw", ("boxed", "answer_is"), "integer", (0, 999), plain_units=True,
                 lenient_forms=_NUMERIC_LENIENT),
    "amc": Task("raw", ("boxed", "answer_is", "final_latex"), "math",
                lenient_forms=("boxed", "answer_is", "final_latex")),
    "arithmetic": Task("raw", ("boxed", "answer_is"), "number", decimal_comma=True, plain_units=True,
                       lenient_forms=_NUMERIC_LENIENT),
    # programs: the answer is the last fenced Python block, the gold is test code; verified by running both in
    # the sandbox (seqdistill/sandbox.py), never by comparing text
    "code": Task("raw", ("code_block",), "execute", lenient_forms=("code_block",)),
}


# ------------------------------------------------------------------ extraction
def _box_at(text: str, start: int) -> tuple[str, int] | None:
    """(content, end) of the \\boxed/\\fbox that starts at `start`; None if unbalanced or malformed."""
    head = "\\boxed" if text.startswith("\\boxed", start) else "\\fbox"
    i = start + len(head)
    while i < len(text) and text[i] == " ":
        i += 1
    if i >= len(text):
        return None
    if text[i] != "{":
        m = re.match(r"[^\s${}]+", text[i:i + 200]) if i > start + len(head) else None  # "\boxed 5"
        return (m.group(0), i + m.end()) if m else None
    depth = 0
    for m in re.finditer(r"[{}]", text[i:]):
        depth += 1 if m.group(0) == "{" else -1
        if depth == 0:
            return text[i + 1:i + m.start()].strip(), i + m.end()
    return None  # a truncated box is no answer


# what may stand between two boxes of one answer: punctuation, math delimiters, spacing commands, "and" / "or",
# and short \text{..} joiners such as "\quad \text{and} \quad" or "\text{ for part (a) and }"
_RUN_GAP = re.compile(r"(?:\s|\$|\\\)|\\\(|\\\[|\\\]|,|;|\band\b|\bor\b|\.|\\q?quad\b|\\[,;: ]"
                      r"|\\(?:text|textrm|mbox|mathrm)\s*\{[A-Za-z0-9 ,;.()]{0,40}\})*\Z")
_RUN_GAP_CHARS = 80


def boxed_run(text: str) -> list[str] | None:
    """Contents of the last box and of the boxes right before it (joined by , / and / or / \\quad \\text{and}),
    in order. Every box of the run is kept: once the run is longer than an answer can be, it is returned as it
    is and the check says "answer too long" (never a silently shortened answer)."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    got = _box_at(text, start)
    if got is None:
        return None
    out, size = [got[0]], len(got[0])
    while size <= MAX_ANSWER_CHARS:
        prev = max(text.rfind("\\boxed", 0, start), text.rfind("\\fbox", 0, start))
        if prev < 0:
            break
        got = _box_at(text, prev)
        gap = text[got[1]:start] if got is not None else ""
        if got is None or got[1] > start or len(gap) > _RUN_GAP_CHARS or not _RUN_GAP.match(gap):
            break
        out.insert(0, got[0])
        size += len(got[0]) + 2
        start = prev
    return out


def last_boxed(text: str) -> str | None:
    run = boxed_run(text)
    if not run:
        return None
    distinct = list(dict.fromkeys(run))  # "\boxed{5} ... \boxed{5}" is one answer
    return ", ".join(distinct) if len(distinct) > 1 else distinct[0]


_HASH = re.compile(r"####\s*([^\n]{1,200})")
_ANSWER_IS = re.compile(r"(?:final answer|the answer)\s*(?:is|:)\s*:?\s*\$?([^\n$]{1,200}?)\$?\s*(?:\.\s*)?$",
                        re.IGNORECASE | re.MULTILINE)
_LAST_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")


_CLOSERS = (("$$", "$$"), ("\\]", "\\["), ("\\)", "\\("), ("$", "$"))


def final_math(answer_part: str) -> str | None:
    """The math span that closes the answer ("... so the probability is $\\frac{1}{2}$."): the last $..$ /
    $$..$$ / \\(..\\) / \\[..\\] when nothing but punctuation follows it. math-verify reads such an answer too;
    one earlier in the text, with words after it, is not taken for the answer."""
    tail = answer_part[-4000:].rstrip().rstrip(".!").rstrip()
    for close, open_ in _CLOSERS:
        if not tail.endswith(close) or (close == "$" and tail.endswith("\\$")):  # \$ is a dollar sign
            continue
        start = tail.rfind(open_, 0, len(tail) - len(close))
        if start < 0:
            return None
        body = tail[start + len(open_):len(tail) - len(close)].strip()
        return body or None
    return None


_FENCE = re.compile(r"```[ \t]*(python3?|py)?[ \t]*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def last_code_block(answer_part: str) -> str | None:
    """The last fenced code block (```python / ```py / ``` with no language) after the reasoning."""
    blocks = [m.group(2) for m in _FENCE.finditer(answer_part[-200_000:])]
    return blocks[-1] if blocks and blocks[-1].strip() else None


_BOLD = re.compile(r"\*\*|__")
_HOPE = re.compile(r"\s*I hope it is correct\.?\s*$", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"^\s*answer\s*:\s*\$?([^\n$]{1,200}?)\$?\s*\.?\s*$", re.IGNORECASE | re.MULTILINE)


def plain_tail(answer_part: str) -> str:
    """The answer part as the harnesses' final-answer formats write it, made plain: markdown bold markers
    (`The final answer is **18**.`, `**Answer: 18**`) dropped, and the Minerva / lm-eval closing phrase
    (`Final Answer: The final answer is $x$. I hope it is correct.`) cut."""
    return _HOPE.sub("", _BOLD.sub("", answer_part[-20000:]))


def _find(form: str, answer_part: str) -> str | None:
    if form == "boxed":
        return last_boxed(answer_part)
    if form == "hash":
        m = _HASH.findall(answer_part)
        return m[-1].strip() if m else None
    if form == "answer_is":
        tail = plain_tail(answer_part)
        m = _ANSWER_IS.findall(tail) or _ANSWER_LINE.findall(tail)
        return m[-1].strip() if m else None
    if form == "code_block":
        return last_code_block(answer_part)
    if form == "final_latex":
        return final_math(plain_tail(answer_part))
    if form == "last_number":
        tail = answer_part[-2000:]
        m = None
        for m in _LAST_NUMBER.finditer(tail):
            pass
        return m.group(0).rstrip(",") if m else None
    raise ValueError(form)


_REJECTS = re.compile(r"(?:,|;|\b)\s*(?:not|rather than|instead of|but not)\s+(?:\$|\\\(|\\boxed|[-+]?\d)",
                      re.IGNORECASE)


def rejects_a_value(answer_part: str) -> bool:
    """The closing sentence names a value and rejects another ("The answer is $7$, not $9$.", "$a$ rather than
    $b$"): which value it asserts is a reading of the sentence, so the answer is unverifiable, never a guess."""
    tail = plain_tail(answer_part).rstrip()
    last = re.split(r"(?<=[.!?])\s+(?=[A-Z])", tail[-600:])[-1]
    return bool(_REJECTS.search(last))


def answer_form(text: str, task: Task | str, lenient: bool = False) -> tuple[str, str] | tuple[None, None]:
    """(form, answer): the final answer from the part after </think> and the form it was found in, by the task's
    strict (or lenient) forms in order."""
    task = TASKS[task] if isinstance(task, str) else task
    _, answer_part, closed = split_reasoning(text)
    if not closed or not answer_part:
        return None, None
    for form in (task.lenient_forms if lenient else task.pred_forms):
        got = _find(form, answer_part)
        if got:
            return form, got
    return None, None


def extract_answer(text: str, task: Task | str, lenient: bool = False) -> str | None:
    """The final answer from the part after </think>, by the task's strict (or lenient) forms."""
    return answer_form(text, task, lenient)[1]


# an answer counts as given "in format" (eval's format score) in any strict form but a bare closing $..$
FORMAT_FORMS_EXCLUDED = ("final_latex",)


def gold_answer(gold: str | None, task: Task) -> str | None:
    if gold is None or str(gold).strip() == "":
        return None
    gold = str(gold)
    if task.gold_form == "gsm8k":
        m = _HASH.findall(gold)
        return m[-1].strip() if m else gold.strip()
    if task.gold_form == "boxed":
        return last_boxed(gold)
    return gold.strip()


# ------------------------------------------------------------------ normalisation
_SPACING = re.compile(r"\\[,;!: ]|~|\s+")
_SIZING = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])")  # not \leftarrow, \rightarrow
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox|textrm|mathbf)\s*\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°|\\degree")
_ASSIGN = re.compile(r"^[A-Za-z]\s*=\s*(?=[^=])")
_TRAILING_TEXT = re.compile(r"\\(?:text|mbox|mathrm|textrm)\s*\{\s*([A-Za-z][A-Za-z ./]*?)\s*\}\s*\.?$")
_TRAILING_WORDS = re.compile(r"(?<=[\d.}%])\s*((?:[A-Za-z][A-Za-z./]*)(?:\s+[A-Za-z][A-Za-z./]*){0,2})\s*\.?$")
_LIST_COMMA = re.compile(r",\s")  # "2, 250" is a list of two numbers; "2,250" may be a thousands group

# Units dropped after a number, one canonical name per unit. Only these: a word that is not a unit may change
# the value ("5 thousand", "3 dozen", "2 and a half", "7 squared", "5 or more"), so it is never dropped.
_UNIT_NAMES = {
    "dollar": "dollar dollars usd bucks", "cent": "cent cents", "euro": "euro euros", "pound": "pound pounds lb lbs",
    "ounce": "ounce ounces oz", "gram": "gram grams g", "kilogram": "kilogram kilograms kg kgs", "ton": "ton tons",
    "meter": "meter meters metre metres m", "centimeter": "centimeter centimeters cm", "millimeter": "millimeter "
    "millimeters mm", "kilometer": "kilometer kilometers km", "inch": "inch inches in", "foot": "foot feet ft",
    "yard": "yard yards yd", "mile": "mile miles mi", "mph": "mph", "liter": "liter liters litre litres l",
    "milliliter": "milliliter milliliters ml", "gallon": "gallon gallons gal", "cup": "cup cups",
    "second": "second seconds sec secs s", "minute": "minute minutes min mins", "hour": "hour hours hr hrs h",
    "day": "day days", "week": "week weeks", "month": "month months", "year": "year years yr yrs",
    "degree": "degree degrees", "unit": "unit units", "square unit": "square unit square units sq units",
    "square foot": "square foot square feet sq ft", "square meter": "square meter square meters sq m",
    "square inch": "square inch square inches sq in", "square centimeter": "square centimeter square centimeters",
    "cubic foot": "cubic foot cubic feet", "cubic meter": "cubic meter cubic meters",
    "cubic centimeter": "cubic centimeter cubic centimeters", "cubic inch": "cubic inch cubic inches",
    "point": "point points", "page": "page pages", "calorie": "calorie calories",
}
UNITS: dict[str, str] = {}
for _canon, _names in _UNIT_NAMES.items():
    _words = _names.split()
    for _i, _w in enumerate(_words):  # two-word names ("square feet") are listed as consecutive pairs
        if _w in ("square", "cubic", "sq"):
            continue
        _prev = _words[_i - 1] if _i and _words[_i - 1] in ("square", "cubic", "sq") else None
        UNITS[f"{_prev} {_w}" if _prev else _w] = _canon
# one-letter and ambiguous units stand for variables in MATH answers ("5 m" may be 5m): plain words there
# count as units only when spelled out
_SHORT_UNITS = {w for w in UNITS if len(w) <= 2 or w in ("min", "sec", "mi", "gal")}
# words that change a number's value or meaning: never dropped, and a number followed by one is not that number
QUALIFIERS = frozenset(
    "thousand thousands million millions billion billions trillion hundred hundreds dozen dozens score half halves "
    "quarter quarters third thirds fourth fifths tenths percent per cent squared cubed times twice and or more less "
    "fewer least most at about around approximately roughly nearly almost over under above below plus minus to "
    "than each k m bn one two three four five six seven eight nine ten ones tens".split())


# scale words: "3 million" is 3000000 - or 3, where the question counts in millions (decided in verify.fast_check)
SCALES = {"thousand": 1000, "million": 10 ** 6, "billion": 10 ** 9, "trillion": 10 ** 12, "dozen": 12,
          "hundred": 100}
_RATIO_SPLIT = re.compile(r"\s*(?<!:)(?::|\\colon)(?!:)\s*")


def scale_of(words: str | None) -> tuple[int, str | None] | None:
    """(the factor, what follows it) for trailing words that start with one scale word ("million",
    "dozen eggs", "thousand dollars"), else None."""
    parts = (words or "").lower().rstrip(".").split(maxsplit=1)
    if not parts:
        return None
    factor = SCALES.get(parts[0]) or SCALES.get(parts[0][:-1] if parts[0].endswith("s") else "")
    return (factor, parts[1] if len(parts) > 1 else None) if factor else None


def ratio_terms(ans: str, task: "Task") -> list[Fraction] | None:
    """"1:2:3" or "3 \\colon 4" -> the terms' values, in order; None unless every term is a number."""
    s = ans.strip().replace("$", "").strip()
    parts = _RATIO_SPLIT.split(s)
    if len(parts) < 2 or len(s) > 200:
        return None
    values = [parse_number(_SPACING.sub("", p), task.decimal_comma) for p in parts]
    return None if any(v is None for v in values) else values


@dataclass(frozen=True)
class NumericForm:
    text: str  # what is left for the number grammar (without the trailing unit or words)
    percent: bool  # a % sign was removed
    unit: str | None  # canonical unit removed from the end, if any
    words: str | None  # trailing words that are not a unit (a qualifier or multiplier: the value may differ)
    is_list: bool  # a comma followed by a space: several numbers, never one


def _is_count_noun(phrase: str) -> bool:
    """'apples', 'red apples': lowercase words ending in a plural noun, none of them a qualifier or multiplier."""
    words = phrase.rstrip(".").split()
    return (0 < len(words) <= 2 and all(w.isalpha() and w.islower() and w not in QUALIFIERS for w in words)
            and len(words[-1]) >= 3 and words[-1].endswith("s"))


def _unit_of(phrase: str, spelled_out_only: bool) -> str | None:
    key = " ".join(phrase.lower().rstrip(".").split())
    unit = UNITS.get(key)
    if unit is None or (spelled_out_only and key in _SHORT_UNITS):
        return None
    return unit


_VULGAR = {"½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5), "⅖": (2, 5), "⅗": (3, 5),
           "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅛": (1, 8), "⅜": (3, 8), "⅝": (5, 8), "⅞": (7, 8)}
_MIXED = re.compile(r"(?<![\d.])(\d{0,6})\s*([" + "".join(_VULGAR) + r"])")
_ROOT = re.compile(r"√\s*(\d+|\([^()]{1,40}\)|[A-Za-z])")
_CURRENCY = re.compile(r"[€£₹¥]|\\(?:euro|pounds|yen)\b")
_PERCENT_WORD = re.compile(r"(?<=[\d}])\s*(?:\\text\s*\{\s*)?(?:percent|per cent|pct)\b\.?\s*\}?", re.IGNORECASE)
_UNITS_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve "
                                           "thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split())}
_TENS_WORDS = {w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
               if w != "_"}
_NUMBER_WORDS = re.compile(r"^\s*([a-z]+(?:[\s-]+[a-z]+){0,5})\s*(\s[a-z][a-z\s]{0,30})?\.?\s*$", re.IGNORECASE)


def words_to_number(phrase: str) -> int | None:
    """"twelve", "twenty-four", "one hundred and five", "three thousand two hundred": the integer, else None.
    Only whole phrases of number words (a scale word such as "million" or "dozen" is not read: it scales)."""
    words = [w for w in re.split(r"[\s-]+", phrase.lower().strip()) if w and w != "and"]
    if not words:
        return None
    total = current = 0
    for w in words:
        if w in _UNITS_WORDS:
            current += _UNITS_WORDS[w]
        elif w in _TENS_WORDS:
            current += _TENS_WORDS[w]
        elif w == "hundred" and current:
            current *= 100
        elif w == "thousand" and current:
            total, current = total + current * 1000, 0
        else:
            return None
    return total + current


def canonical_symbols(ans: str) -> str:
    """Symbols that write a value another way, rewritten before any comparison (both sides): unicode fractions
    (`½`, `2¾`) and radicals (`√2`) as LaTeX, percent as a word (`50 percent`, `pct`) as `%`, currency signs other
    than `$` (€, £, ₹, ¥) dropped as `$` is, unicode thin spaces dropped, and an answer that is only number words
    (`twelve`, `twenty-four`, optionally followed by what is counted) as digits."""
    s = ans.replace("\u2009", "").replace("\u202f", "").replace("\u00a0", " ")

    def mixed(m):
        a, b = _VULGAR[m.group(2)]
        whole = int(m.group(1)) if m.group(1) else 0
        return f"\\frac{{{whole * b + a}}}{{{b}}}"

    s = _MIXED.sub(mixed, s)
    s = _ROOT.sub(lambda m: "\\sqrt{" + m.group(1).strip("()") + "}", s)
    s = _CURRENCY.sub("", s)
    s = _PERCENT_WORD.sub("\\%", s)
    m = _NUMBER_WORDS.match(s)
    if m and not any(ch.isdigit() for ch in s):
        words = m.group(1).split()
        for cut in range(len(words), 0, -1):  # the longest leading run of number words, the rest what is counted
            n = words_to_number(" ".join(words[:cut]))
            if n is not None:
                rest = " ".join(words[cut:]) + (m.group(2) or "")
                return f"{n} {rest.strip()}".strip()
    return s


def light_normalize(ans: str) -> str:
    """Only changes that cannot change the value: used for the exact-string shortcut."""
    s = ans.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = _SIZING.sub("", s)
    s = _SPACING.sub("", s)
    return s.rstrip(".")


def numeric_form(ans: str, task: Task) -> NumericForm:
    """The answer stripped of a unit from the explicit list, assignments, degrees and percent, for the number
    grammar. A trailing word that is not a listed unit stays (and is reported), so "5 thousand" never reads 5."""
    s = ans.strip()
    s = s.replace("{,}", ",").replace("\\!", "")
    unit = words = None
    split = split_unit(s, UNITS, letters_are_units=task.plain_units)  # "12 \text{ cm}^2", "5 m/s^2", "13.6 eV"
    if split:
        s, unit = split
    m = None if split else _TRAILING_TEXT.search(s)
    if m:  # a unit is dropped; other words are set aside and reported (the number alone is not the answer)
        unit = _unit_of(m.group(1), spelled_out_only=False)
        if unit is None and task.plain_units and _is_count_noun(m.group(1)):
            unit = " ".join(m.group(1).lower().split())  # "7 \text{ marbles}" as "7 marbles": what is counted
        words = None if unit else " ".join(m.group(1).split())
        s = s[:m.start()].strip()
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    if _DEGREES.search(s):
        unit = unit or "degree"
        s = _DEGREES.sub("", s)
    if unit is None and words is None:
        m = _TRAILING_WORDS.search(s)
        if m:
            found = _unit_of(m.group(1), spelled_out_only=not task.plain_units)
            if found is None and task.plain_units and _is_count_noun(m.group(1)):
                found = " ".join(m.group(1).lower().split())  # "18 apples": what is counted, not a scale
            unit, words = (found, None) if found else (None, " ".join(m.group(1).split()))
            s = s[:m.start()]
    had_percent = "%" in s
    s = s.replace("\\%", "").replace("%", "")
    is_list = _LIST_COMMA.search(s) is not None
    s = _SPACING.sub("", s).rstrip(".")
    s = _ASSIGN.sub("", s)
    return NumericForm(s, had_percent, canonical_name(unit), words, is_list)


def list_numbers(ans: str, task: Task) -> list[Fraction] | None:
    """"2, 250" -> [2, 250]: the values of a comma-and-space separated list of plain numbers, else None."""
    s = ans.strip().replace("$", "").replace("\\(", "").replace("\\)", "")
    parts = _LIST_COMMA.split(s)
    if len(parts) < 2 or len(parts) > 50:
        return None
    vals = [parse_number(_SPACING.sub("", p).rstrip("."), decimal_comma=False) for p in parts]
    return None if any(v is None for v in vals) else vals  # type: ignore[return-value]


_NUMBER = re.compile(r"([+-]?)(\d{1,3}(?:,\d{3})+|\d+)?(?:\.(\d+))?(?:[eE]([+-]?\d{1,4}))?")
_SCI = re.compile(r"(.*?)(?:\\times|\\cdot|\*)\{?10\}?\^\{?([+-]?\d{1,4})\}?")
_DECIMAL_COMMA = re.compile(r"([+-]?\d+),(\d{1,2}|\d{4,})")


def parse_number(s: str, decimal_comma: bool = False) -> Fraction | None:
    """The grammar in the module docstring; None for anything it does not cover (never a guess)."""
    if not s or len(s) > _MAX_NUMBER_CHARS:
        return None
    exp = 0
    m = _SCI.fullmatch(s)
    if m:
        s, exp = m.group(1), int(m.group(2))
        if s == "":
            s = "1"
    if decimal_comma:
        dc = _DECIMAL_COMMA.fullmatch(s)
        if dc:
            s = f"{dc.group(1)}.{dc.group(2)}"
    m = _NUMBER.fullmatch(s)
    if not m or (m.group(2) is None and m.group(3) is None):
        return None
    sign, whole, frac, e = m.groups()
    exp += int(e) if e else 0
    if abs(exp) > _MAX_EXPONENT:
        return None
    digits = (whole or "0").replace(",", "") + (frac or "")
    value = Fraction(int(digits), 10 ** len(frac or ""))
    value *= Fraction(10) ** exp
    return -value if sign == "-" else value


_CHOICE = re.compile(r"^\(?([A-E])\)?(?!\s*=)(?:\s|$|[.:)])")  # "C = 2\pi r" is an equation, not choice C
_ANY_CHOICE = re.compile(r"(?<![A-Za-z\\])\(?([A-E])\)?(?![A-Za-z])")


def choice_letter(ans: str) -> str | None:
    """'(B)', 'B', '\\text{(B)}', '\\textbf{(B)} 5' -> 'B'."""
    s = _TEXT_CMD.sub(r"\1", ans).replace("$", "").strip()
    m = _CHOICE.match(s + " ")
    return m.group(1) if m else None


def choice_letters(ans: str) -> set[str]:
    """Every choice letter an answer names: 'B \\text{ and } C', '(B) or (C)', 'A B C D E' name several."""
    s = _TEXT_CMD.sub(r"\1", ans).replace("$", "")
    return set(_ANY_CHOICE.findall(s))


def is_choice(ans: str) -> bool:
    s = _TEXT_CMD.sub(r"\1", ans).replace("$", "").strip()
    return re.fullmatch(r"\(?[A-E]\)?", s) is not None
