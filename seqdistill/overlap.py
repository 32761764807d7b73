"""Text overlap between prompt sets: decontamination in filter, train/eval overlap in eval (one definition).

An item overlaps a reference set when they share a word n-gram (n = 8 by default, as open-r1), or, for an
item shorter than n words (which has no n-gram at all), when its normalised text is contained in a reference
text or a reference text in it."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    w = words(text)
    if len(w) < n:
        return {tuple(w)} if w else set()
    return {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


class OverlapIndex:
    """n-grams of a reference set, plus normalised texts for the items too short to have an n-gram."""

    def __init__(self, texts: list[str], n: int):
        self.n = n
        self.grams: set[tuple[str, ...]] = set()
        self.short: list[str] = []
        joined = []
        for t in texts:
            w = words(t)
            joined.append(" ".join(w))
            if len(w) < n:
                if w:
                    self.short.append(" " + " ".join(w) + " ")
            else:
                self.grams |= {tuple(w[i:i + n]) for i in range(len(w) - n + 1)}
        self.all_text = "\n".join(f" {j} " for j in joined)

    def hits(self, text: str) -> bool:
        w = words(text)
        if not w:
            return False
        if len(w) < self.n:  # no n-gram: normalised containment in a reference text
            return f" {' '.join(w)} " in self.all_text
        if any(tuple(w[i:i + self.n]) in self.grams for i in range(len(w) - self.n + 1)):
            return True
        norm = f" {' '.join(w)} "
        return any(s in norm for s in self.short)  # a short reference item inside this text
