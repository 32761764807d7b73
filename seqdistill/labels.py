"""Majority-vote labels for prompts without a gold answer (self-consistency): the teacher's most common final
answer over its n samples becomes the label when enough samples agree. Answers are grouped by the verifier, not
by string: "1/2", "0.5" and "\\frac{1}{2}" are one vote. A tie at the top is no label: a guess is refused."""

from __future__ import annotations

from collections import Counter, defaultdict

from .answers import TASKS, extract_answer
from .records import answer_text
from .verify import CORRECT, check_many


def _as_gold(pred: str, task: str) -> str:
    # gold fields of "boxed" tasks are solutions; the label must read back as the same answer
    return f"\\boxed{{{pred}}}" if TASKS[task].gold_form == "boxed" else pred


def group_answers(problems: list[tuple[list[str | None], str]], workers: int = 2,
                  timeout: float = 5.0) -> list[list[int | None]]:
    """For each problem (its samples' extracted answers, task): a group number per answer (None: no answer).

    Two answers share a group only when the verifier judges each equal to the other, both ways, and to every
    other member: equivalence must not chain values that differ ("5\\%" is equal to "0.05" and, by the percent
    convention, to "5", but "5" and "0.05" are two groups, so "5\\%" cannot join both)."""
    jobs, index = [], []
    for pi, (answers, task) in enumerate(problems):
        distinct = list(dict.fromkeys(a for a in answers if a))
        for x in distinct:
            for y in distinct:
                if x != y:
                    jobs.append((f"\\boxed{{{x}}}", _as_gold(y, task), task))
                    index.append((pi, x, y))
    same = {key for key, v in zip(index, check_many(jobs, workers=workers, timeout=timeout)) if v.status == CORRECT}
    out = []
    for pi, (answers, _) in enumerate(problems):
        groups: list[list[str]] = []
        of: dict[str, int] = {}
        for a in dict.fromkeys(x for x in answers if x):
            for gi, members in enumerate(groups):
                if all((pi, a, m) in same and (pi, m, a) in same for m in members):
                    members.append(a)
                    of[a] = gi
                    break
            else:
                of[a] = len(groups)
                groups.append([a])
        out.append([of[a] if a else None for a in answers])
    return out


def majority_labels(records: list[dict], min_agreement: float, workers: int = 2,
                    timeout: float = 5.0) -> dict[str, dict]:
    """{prompt_id: {"label", "gold_form", "votes", "samples", "agreement"}} for every prompt with at least one
    extracted answer; `label` is None below `min_agreement` or on a tie. Votes are grouped by `group_answers`."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_prompt[r["prompt_id"]].append(r)
    pids = list(by_prompt)
    answers = [[extract_answer(answer_text(r), r["task"]) for r in by_prompt[pid]] for pid in pids]
    grouped = group_answers([(a, by_prompt[pid][0]["task"]) for pid, a in zip(pids, answers)], workers, timeout)
    out = {}
    for pid, ans, groups in zip(pids, answers, grouped):
        if all(g is None for g in groups):
            continue
        votes = Counter(g for g in groups if g is not None)
        (best, n_best), *rest = votes.most_common()
        n = len(ans)
        tie = any(c == n_best for _, c in rest)  # a different answer as popular: no label, not a guess
        ok = not tie and n_best / n >= min_agreement
        label = next(a for a, g in zip(ans, groups) if g == best)  # the first spelling of the winning group
        task = by_prompt[pid][0]["task"]
        out[pid] = {"label": label if ok else None, "gold_form": _as_gold(label, task) if ok else None,
                    "votes": n_best, "samples": n, "agreement": n_best / n,
                    # the winning group's samples: only these agree with the label (a sample that matches the
                    # label by a non-transitive convention alone, e.g. "5" against "5\\%", is not one of them)
                    "voters": [r["sample_index"] for r, g in zip(by_prompt[pid], groups) if g == best and ok]}
    return out


def apply_labels(records: list[dict], labels: dict[str, dict], workers: int = 2, timeout: float = 5.0) -> dict:
    """Give gold-less records their majority label (label_source "majority"); records with gold keep it
    (label_source "gold") and are used to measure how often the majority agrees with the gold."""
    stats = {"prompts_without_gold": 0, "labelled": 0, "below_agreement_or_tie": 0,
             "with_gold_and_majority": 0, "majority_agrees_with_gold": 0}
    seen, compare = set(), []
    for r in records:
        pid = r["prompt_id"]
        lab = labels.get(pid, {})
        if r["gold"] is None:
            r["label_source"] = "majority" if lab.get("label") else None
            r["gold"] = lab.get("gold_form")
            r["in_majority"] = r["sample_index"] in lab.get("voters", ())
            if pid not in seen:
                stats["prompts_without_gold"] += 1
                stats["labelled" if lab.get("label") else "below_agreement_or_tie"] += 1
        else:
            r["label_source"] = "gold"
            if pid not in seen and lab.get("label"):
                compare.append((f"\\boxed{{{lab['label']}}}", r["gold"], r["task"]))
        seen.add(pid)
    if compare:  # the majority answer, checked against the real gold like any prediction
        agree = check_many(compare, workers=workers, timeout=timeout)
        stats["with_gold_and_majority"] = len(compare)
        stats["majority_agrees_with_gold"] = sum(v.status == CORRECT for v in agree)
    return stats
