"""Majority-vote labels for prompts without a gold answer (self-consistency): the teacher's most common final
answer over its n samples becomes the label when enough samples agree. Answers are grouped by the verifier, not
by string: "1/2", "0.5" and "\\frac{1}{2}" are one vote. A tie at the top is no label: a guess is refused."""

from __future__ import annotations

from collections import defaultdict

from .answers import TASKS, extract_answer
from .verify import CORRECT, check_many


def _as_gold(pred: str, task: str) -> str:
    # gold fields of "boxed" tasks are solutions; the label must read back as the same answer
    return f"\\boxed{{{pred}}}" if TASKS[task].gold_form == "boxed" else pred


def majority_labels(records: list[dict], min_agreement: float, workers: int = 2,
                    timeout: float = 5.0) -> dict[str, dict]:
    """{prompt_id: {"label", "gold_form", "votes", "samples", "agreement"}} for every prompt with at least one
    extracted answer; `label` is None below `min_agreement` or on a tie."""
    by_prompt: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_prompt[r["prompt_id"]].append(r)
    jobs, owners = [], []
    for pid, group in by_prompt.items():
        task = group[0]["task"]
        texts = [r["messages"][-1]["content"] for r in group]
        candidates = list(dict.fromkeys(p for p in (extract_answer(t, task) for t in texts) if p))
        for c in candidates:
            for i, t in enumerate(texts):
                jobs.append((t, _as_gold(c, task), task))
                owners.append((pid, c, i))
    verdicts = check_many(jobs, workers=workers, timeout=timeout)
    voters: dict[str, dict[str, frozenset]] = defaultdict(lambda: defaultdict(frozenset))
    for (pid, c, i), v in zip(owners, verdicts):
        if v.status == CORRECT:
            voters[pid][c] |= {i}
        else:
            voters[pid][c] |= set()
    out = {}
    for pid, tally in voters.items():
        ranked = sorted(tally.items(), key=lambda kv: -len(kv[1]))
        best, who = ranked[0]
        n_best, n = len(who), len(by_prompt[pid])
        # equivalent spellings ("5", "5.0") have the same voters: only a different answer as popular is a tie
        tie = any(len(w) == n_best and w != who for _, w in ranked[1:])
        ok = n_best > 0 and not tie and n_best / n >= min_agreement
        task = by_prompt[pid][0]["task"]
        out[pid] = {"label": best if ok else None, "gold_form": _as_gold(best, task) if ok else None,
                    "votes": n_best, "samples": n, "agreement": n_best / n}
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
