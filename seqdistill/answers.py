"""Answer conventions: where a final answer is found in a completion, how it is normalised, and the small
number grammar the verifier's fast path trusts. Everything here runs in the parent process on untrusted
model text, so every function is linear in its input and never hands text to Fraction/float/sympy.

Conventions (one table for filter and eval; where the field's checkers differ we follow math-verify /
lighteval and say so):

extraction (only from the text after </think>; an unclosed <think> has no answer)
  boxed      last \\boxed{..} / \\fbox{..}; boxes in a row joined by ",", "and", "or" form one list
             (math-verify: `\\boxed{1}, \\boxed{2}` is the set {1, 2}); at most 6 boxes are joined.
  hash       "#### N" (GSM8K's own format)
  answer_is  "The answer is X" / "Final answer: X" (lighteval's anchors)
  last_number  the last number in the text: lenient scoring of numeric tasks only (gsm8k, arithmetic, aime)
  strict = the task's required form (boxed for math-style prompts); lenient = boxed, else answer_is,
  else hash, else (numeric tasks) last number: what the standard evaluators do.

normalisation (both sides)
  dropped: $ \\$ \\( \\) \\left \\right, spacing (\\, \\; \\! \\: ~ \\ ), a trailing period, \\dfrac/\\tfrac -> \\frac
  {,} -> ,  (LaTeX thousands separator)        ^\\circ ^{\\circ} ° \\degree  (degrees, as math-verify)
  a leading single-letter assignment "x = 18" -> 18 (math-verify compares the right-hand side)
  units after a number: \\text{..} / \\mbox{..} / \\mathrm{..} of letters ("18 \\text{ dollars}"); plain words
  after a number only for numeric tasks ("18 dollars"); MATH answers keep plain words (\\pi, x, ...).
  %: "50\\%" equals "50" (GSM8K convention, as lighteval); a percent never makes the fast path say "wrong".

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

from .chat import split_reasoning

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


_NUMERIC_LENIENT = ("boxed", "answer_is", "hash", "last_number")
TASKS: dict[str, Task] = {
    "gsm8k": Task("gsm8k", ("boxed", "hash", "answer_is"), "number", decimal_comma=True, plain_units=True,
                  lenient_forms=_NUMERIC_LENIENT),
    "math": Task("raw", ("boxed",), "math"),
    "aime": Task("raw", ("boxed", "answer_is"), "integer", (0, 999), plain_units=True,
                 lenient_forms=_NUMERIC_LENIENT),
    "amc": Task("raw", ("boxed", "answer_is"), "math"),
    "arithmetic": Task("raw", ("boxed", "answer_is"), "number", decimal_comma=True, plain_units=True,
                       lenient_forms=_NUMERIC_LENIENT),
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


_RUN_GAP = re.compile(r"(?:\s|\$|\\\)|\\\(|,|\band\b|\bor\b|\.)*\Z")


def boxed_run(text: str) -> list[str] | None:
    """Contents of the last box and of the boxes right before it (joined by , / and / or), in order."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    got = _box_at(text, start)
    if got is None:
        return None
    out = [got[0]]
    while len(out) < 6:
        prev = max(text.rfind("\\boxed", 0, start), text.rfind("\\fbox", 0, start))
        if prev < 0:
            break
        got = _box_at(text, prev)
        if got is None or got[1] > start or not _RUN_GAP.match(text[got[1]:start][:40]) \
                or len(text[got[1]:start]) > 40:
            break
        out.insert(0, got[0])
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


def _find(form: str, answer_part: str) -> str | None:
    if form == "boxed":
        return last_boxed(answer_part)
    if form == "hash":
        m = _HASH.findall(answer_part)
        return m[-1].strip() if m else None
    if form == "answer_is":
        m = _ANSWER_IS.findall(answer_part[-20000:])
        return m[-1].strip() if m else None
    if form == "last_number":
        tail = answer_part[-2000:]
        m = None
        for m in _LAST_NUMBER.finditer(tail):
            pass
        return m.group(0).rstrip(",") if m else None
    raise ValueError(form)


def extract_answer(text: str, task: Task | str, lenient: bool = False) -> str | None:
    """The final answer from the part after </think>, by the task's strict (or lenient) forms."""
    task = TASKS[task] if isinstance(task, str) else task
    _, answer_part, closed = split_reasoning(text)
    if not closed or not answer_part:
        return None
    for form in (task.lenient_forms if lenient else task.pred_forms):
        got = _find(form, answer_part)
        if got:
            return got
    return None


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
_TEXT_CMD = re.compile(r"\\(?:text|textbf|mathrm|mbox|textrm|mathbf)\s*\{([^{}]*)\}")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°|\\degree")
_ASSIGN = re.compile(r"^[A-Za-z]\s*=\s*(?=[^=])")
_UNIT_TEXT = re.compile(r"\\(?:text|mbox|mathrm|textrm)\s*\{\s*[A-Za-z][A-Za-z .]*\}\s*$")
_PLAIN_WORDS = re.compile(r"(?<=[\d.])\s+[A-Za-z][A-Za-z .]*$")
_MATH_UNITS = re.compile(r"(?<=[\d.])\s+(?:cm|mm|km|inches|inch|feet|ft|units|meters|degrees|dollars|cents"
                         r"|hours|minutes|seconds|square units|sq units)\.?$")


def light_normalize(ans: str) -> str:
    """Only changes that cannot change the value: used for the exact-string shortcut."""
    s = ans.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = re.sub(r"\\left|\\right", "", s)
    s = _SPACING.sub("", s)
    return s.rstrip(".")


def numeric_form(ans: str, task: Task) -> tuple[str, bool]:
    """The answer stripped of units, assignments, degrees and percent, for the number grammar.
    Returns (text, had_percent)."""
    s = ans.strip()
    s = s.replace("{,}", ",").replace("\\!", "")
    if task.plain_units:
        s = _PLAIN_WORDS.sub("", s)
    else:
        s = _MATH_UNITS.sub("", s)
    s = _UNIT_TEXT.sub("", s.strip())
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = _DEGREES.sub("", s)
    had_percent = "%" in s
    s = s.replace("\\%", "").replace("%", "")
    s = _SPACING.sub("", s).rstrip(".")
    s = _ASSIGN.sub("", s)
    return s, had_percent


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


_CHOICE = re.compile(r"^\(?([A-E])\)?(?:\s|$|[.:)])")


def choice_letter(ans: str) -> str | None:
    """'(B)', 'B', '\\text{(B)}', '\\textbf{(B)} 5' -> 'B'."""
    s = _TEXT_CMD.sub(r"\1", ans).replace("$", "").strip()
    m = _CHOICE.match(s + " ")
    return m.group(1) if m else None


def is_choice(ans: str) -> bool:
    s = _TEXT_CMD.sub(r"\1", ans).replace("$", "").strip()
    return re.fullmatch(r"\(?[A-E]\)?", s) is not None
