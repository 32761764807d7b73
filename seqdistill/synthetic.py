"""Built-in offline prompt set: seeded multi-step arithmetic word problems with exact integer answers.

Difficulty knobs: `steps` (operations chained) and `max_value` (operand size). Train and test splits are
disjoint by construction: a problem's split is a hash of its text, and each split draws until it has `n`."""

from __future__ import annotations

import hashlib
import random

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Emma", "Farid", "Grace", "Hugo", "Iris", "Jon", "Kira", "Liam",
         "Maya", "Noah", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tara"]
MULTIPLY = {2: "doubles", 3: "triples", 4: "quadruples"}
ITEMS = ["apples", "marbles", "stickers", "books", "coins", "shells", "pencils", "cards", "stamps", "beads"]


def _split_of(text: str) -> str:
    # 1 in 4 problems is held out; stable across runs, sizes and Python versions
    return "test" if int(hashlib.sha256(text.encode()).hexdigest(), 16) % 4 == 0 else "train"


def _problem(rng: random.Random, steps: int, max_value: int) -> tuple[str, int]:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(2, max_value)
    sentences = [f"{name} has {value} {item}."]
    for _ in range(steps):
        op = rng.choice(["add", "sub", "mul"] if value <= max_value * 4 else ["add", "sub"])
        if op == "add":
            k = rng.randint(2, max_value)
            sentences.append(f"{name} gets {k} more {item}.")
            value += k
        elif op == "sub" and value > 2:
            k = rng.randint(1, value - 1)
            sentences.append(f"{name} gives away {k} {item}.")
            value -= k
        else:
            k = rng.randint(2, 4)
            sentences.append(f"Then {name} {MULTIPLY[k]} the number of {item}.")
            value *= k
    sentences.append(f"How many {item} does {name} have now?")
    return " ".join(sentences), value


def make_problems(n: int, split: str = "train", steps: int = 2, max_value: int = 20, seed: int = 0) -> list[dict]:
    rng = random.Random(f"seqdistill-arith-{steps}-{max_value}-{seed}")
    out, seen = [], set()
    for _ in range(n * 200):
        question, answer = _problem(rng, steps, max_value)
        if question in seen or _split_of(question) != split:
            continue
        seen.add(question)
        out.append({"question": question, "answer": str(answer)})
        if len(out) == n:
            return out
    raise ValueError(f"could only make {len(out)} distinct {split} problems with steps={steps}, "
                     f"max_value={max_value}; raise max_value or lower n")
