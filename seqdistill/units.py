"""Units after a number, read into one canonical form: `cm^2` and `cm^3`, `m/s` and `m/s^2` differ;
`\\text{ eV}`, `\\mathrm{~eV}` and `\\,\\mathrm{eV}` are the same unit; `square feet` is `foot^2`.

The convention (docs/verifier.md): a unit that matches the gold's, or a unit on one side only, leaves the answer
judged by its value; two different units make it wrong. Units are never converted (5 km against 5000 m is
wrong), so a canonical form only has to say when two spellings are the same unit.

What counts as a unit: the spelled-out names in answers.UNITS (dollars, minutes, square feet, ...) and physical
symbols with an SI prefix (eV, keV, nm, kcal, J, kN, kPa, Hz, ...), with powers (`^2`, `^{-1}`) and products and
quotients of them (`m/s^2`, `km/h`, `kg\\cdot m`, `J/(mol K)`). One-letter symbols stand for variables in
MATH answers (`5 m` may be 5m): written as plain text they count only where the task says plain words are units
(answers.Task.plain_units) or inside \\text{} / \\mathrm{}, as answers.py already decides for its names."""

from __future__ import annotations

import re
from collections import Counter

PREFIXES = ("da", "p", "n", "μ", "µ", "u", "m", "c", "d", "k", "M", "G", "T")
# symbols that take a prefix (kJ, MeV, nm): SI units and the few others science answers use
PREFIXABLE = ("m", "g", "s", "A", "K", "mol", "Hz", "N", "Pa", "J", "W", "C", "V", "F", "Ω", "ohm", "ohms", "S",
              "Wb", "T", "H", "lm", "lx", "Bq", "Gy", "Sv", "eV", "L", "l", "cal", "bar", "Wh", "b")
PLAIN = ("atm", "mmHg", "psi", "rad", "sr", "dB", "Å", "au", "AU", "ly", "pc", "amu", "u", "Da", "mph", "kph",
         "rpm", "min", "h", "hr", "d", "yr", "°C", "°F", "K")
# spellings of one unit: the canonical symbol for physical units (the names in answers.UNITS keep their own)
_ALIASES = {"ohm": "Ω", "ohms": "Ω", "µ": "μ", "L": "l", "hr": "h"}
_WRAPPER = re.compile(r"\\(?:text|mathrm|textrm|mbox|operatorname|rm|mathit)\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_BLANKS = re.compile(r"\\[,;:! ]|~|\\quad|\\qquad")
_TOKEN = re.compile(r"\s*(?:(?P<sym>°[CF]|[A-Za-zΩμµÅ]+)\s*(?:\^\s*(?:\{\s*(?P<pb>[-−]?\d)\s*\}|(?P<p>[-−]?\d)))?"
                    r"|(?P<op>/|\\cdot|·|\*|\\times|\(|\)))")


def _physical(sym: str) -> str | None:
    """The canonical symbol of a physical unit (prefix kept: kJ is not J), else None."""
    sym = _ALIASES.get(sym, sym)
    if sym in PLAIN or sym in PREFIXABLE:
        return sym
    for p in PREFIXES:
        if sym.startswith(p) and sym[len(p):] in PREFIXABLE:
            return ("μ" if p in ("µ", "u") else p) + _ALIASES.get(sym[len(p):], sym[len(p):])
    return None


def _symbol(sym: str, names: dict[str, str]) -> str | None:
    if sym in ("mph", "kph"):  # a quotient written as one word
        return {"mph": "mile/hour", "kph": "kilometer/hour"}[sym]
    if sym.lower() in names and (len(sym) > 2 or sym == sym.lower()):
        return names[sym.lower()]  # "cm", "ft", "dollars": the canonical name answers.UNITS gives it
    return _physical(sym)


def parse_unit(text: str, names: dict[str, str], letters_are_units: bool = True) -> str | None:
    """The canonical form of a unit expression ("m/s^2" -> "meter second^-2"), or None when `text` is not wholly
    one. `names`: answers.UNITS (spelled-out names -> canonical name). `letters_are_units` False: an expression
    written as plain text needs a symbol of two or more letters (a lone `m` or `s` may be a variable)."""
    wrapped = bool(_WRAPPER.search(text))
    s = _BLANKS.sub(" ", _WRAPPER.sub(lambda m: " " + m.group(1) + " ", text))
    s = s.replace("{", " ").replace("}", " ") if not re.search(r"\^\s*\{", s) else s
    s = s.strip().rstrip(".").strip()
    if not s or len(s) > 60:
        return None
    spelled = " ".join(s.lower().split())
    if spelled in names and " " in spelled:  # "square feet", "sq ft": two words, one unit
        return _powers_of_name(names[spelled])
    powers: Counter = Counter()
    groups, divide, pos, longest = [1], False, 0, 0  # groups: the sign of each open parenthesis
    while pos < len(s):
        m = _TOKEN.match(s, pos)
        if not m or m.end() == pos:
            if s[pos:].strip():
                return None
            break
        pos = m.end()
        op = m.group("op")
        if op == "/":
            divide = True
        elif op == "(":
            groups.append(groups[-1] * (-1 if divide else 1))
            divide = False
        elif op == ")":
            if len(groups) == 1:
                return None
            groups.pop()
        elif op is None:  # a symbol: "/" divides by the next factor only ("m/s^2", "J/(mol K)")
            sym = _symbol(m.group("sym"), names)
            if sym is None:
                return None
            longest = max(longest, len(m.group("sym")))
            power = int((m.group("pb") or m.group("p") or "1").replace("−", "-"))
            for part, k in _split_compound(sym):
                powers[part] += groups[-1] * (-1 if divide else 1) * power * k
            divide = False
    if len(groups) != 1 or divide:
        return None
    return _render(powers, wrapped, letters_are_units, longest)


def _split_compound(sym: str) -> list[tuple[str, int]]:
    """A canonical symbol that is itself a quotient (mph -> mi/h) as its factors."""
    if "/" in sym:
        num, den = sym.split("/")
        return [(num, 1), (den, -1)]
    return [(sym, 1)]


def _powers_of_name(name: str) -> str:
    """answers.UNITS names: "square foot" -> "foot^2", "cubic meter" -> "meter^3"; others as they are."""
    for word, k in (("square ", 2), ("cubic ", 3)):
        if name.startswith(word):
            return f"{name[len(word):]}^{k}"
    return name


def _render(powers: Counter, wrapped: bool, letters_are_units: bool, longest: int) -> str | None:
    parts = [(_powers_of_name(u), k) for u, k in powers.items() if k]
    if not parts or (not wrapped and not letters_are_units and longest < 2):
        return None
    flat: Counter = Counter()
    for u, k in parts:  # "foot^2" from a spelled name, raised again by a power
        base, _, p = u.partition("^")
        flat[base] += k * int(p or 1)
    return " ".join(f"{u}^{k}" if k != 1 else u for u, k in sorted(flat.items()) if k)


_NUMBER_END = re.compile(r"(?:\d|\}|\)|%|\\pi)\s*$")


def split_unit(ans: str, names: dict[str, str], letters_are_units: bool = True) -> tuple[str, str] | None:
    """(the value's text, the canonical unit) when `ans` ends in a unit expression after its value
    ("12 \\text{ cm}^2" -> ("12", "centimeter^2")), else None. The longest such ending is the unit."""
    for i in range(max(1, len(ans) - 60), len(ans)):
        head = ans[:i]
        if not _NUMBER_END.search(head) or ans[i - 1].isalpha() and ans[i].isalpha() \
                or head.count("{") != head.count("}"):
            continue
        unit = parse_unit(ans[i:], names, letters_are_units)
        if unit is not None:
            return head.strip(), unit
    return None


def canonical_name(name: str | None) -> str | None:
    """A unit name from answers.UNITS in the form parse_unit gives ("square foot" -> "foot^2")."""
    return None if name is None else _powers_of_name(name)
