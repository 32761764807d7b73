"""Accuracy estimators with confidence intervals: pass@1 (mean over k samples), unbiased pass@k, maj@k."""

from __future__ import annotations

import math
import random
from collections import Counter


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples of which c are correct (Chen et al., 2021)."""
    if k > n:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))


def majority_score(preds: list[str | None], correct: list[bool]) -> float:
    """maj@k for one problem: accuracy of the most common answer. A tie between top answers gives the
    expected accuracy of breaking it at random (fraction of tied answers that are correct)."""
    votes = Counter(p for p in preds if p is not None)
    if not votes:
        return 0.0
    top = max(votes.values())
    tied = [a for a, v in votes.items() if v == top]
    right = {p for p, ok in zip(preds, correct) if ok and p is not None}
    return sum(a in right for a in tied) / len(tied)


def mean_ci(scores: list[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile-bootstrap interval over problems (per-problem scores in [0, 1])."""
    n = len(scores)
    if n == 0:
        return float("nan"), float("nan"), float("nan")
    mean = sum(scores) / n
    rng = random.Random(seed)
    means = sorted(sum(scores[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return mean, means[int(0.025 * resamples)], means[min(int(0.975 * resamples), resamples - 1)]


def summarize_problems(groups: dict[str, list[dict]], ks: list[int]) -> dict:
    """groups: problem id -> samples with keys correct (bool), pred (normalized answer or None)."""
    ks = [k for k in ks if k > 1]  # pass@1 is the mean over samples, computed once below
    per_problem = {"pass@1": []}
    for k in ks:
        per_problem[f"pass@{k}"] = []
        per_problem[f"maj@{k}"] = []
    for samples in groups.values():
        n, c = len(samples), sum(s["correct"] for s in samples)
        per_problem["pass@1"].append(c / n)
        for k in ks:
            if k > n:  # dropping the problem would bias pass@k upward: refuse instead
                raise ValueError(f"pass@{k} needs {k} samples per problem, but a problem has {n}")
            per_problem[f"pass@{k}"].append(pass_at_k(n, c, k))
            first = samples[:k]
            per_problem[f"maj@{k}"].append(majority_score([s["pred"] for s in first], [s["correct"] for s in first]))
    out = {}
    for name, scores in per_problem.items():
        if scores:
            m, lo, hi = mean_ci(scores)
            out[name] = {"mean": m, "ci95": [lo, hi]}
    return out


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts: b problems only the first model solved, c only
    the second. Under H0 each discordant problem goes either way with p = 1/2, so min(b, c) ~ Binomial(b + c, 1/2)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_comparison(base: dict[str, float], other: dict[str, float], resamples: int = 2000,
                      seed: int = 0) -> dict:
    """`other` against `base` on the problems both scored (problem id -> per-problem score in [0, 1]).

    The difference's 95% CI is a paired bootstrap: one resample of problems moves both models together, so the
    problem-to-problem variance both share cancels (two unpaired CIs that overlap are not the test). McNemar's
    exact test needs 0/1 scores (k = 1); with several samples a problem counts as solved by a model when more
    than half its samples are right, and the p-value says so (`mcnemar_on`)."""
    ids = sorted(base.keys() & other.keys())
    n = len(ids)
    if n == 0:
        return {"problems": 0, "diff": None, "ci95": [None, None], "mcnemar_p": None}
    d = [other[i] - base[i] for i in ids]
    mean = sum(d) / n
    rng = random.Random(seed)
    means = sorted(sum(d[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    binary = all(base[i] in (0.0, 1.0) and other[i] in (0.0, 1.0) for i in ids)
    won = sum(base[i] <= 0.5 < other[i] for i in ids)  # wrong before, right after
    lost = sum(other[i] <= 0.5 < base[i] for i in ids)  # right before, wrong after
    return {"problems": n, "diff": mean, "ci95": [means[int(0.025 * resamples)],
                                                   means[min(int(0.975 * resamples), resamples - 1)]],
            "gained": won, "lost": lost, "mcnemar_p": mcnemar_exact(won, lost),
            "mcnemar_on": "per-problem verdicts" if binary else "majority of each problem's samples"}


def gap_closed(before: dict[str, float], after: dict[str, float], teacher: dict[str, float], resamples: int = 2000,
               seed: int = 0) -> dict:
    """Share of the teacher gap a student closed, (after - before) / (teacher - before), on the problems all
    three scored, with a paired bootstrap 95% CI (one resample of problems moves all three models together).
    Undefined (None) when the teacher is not above the student before; resamples where it is not are dropped and
    counted (`undefined_resamples`), so a CI from few defined resamples says so."""
    ids = sorted(before.keys() & after.keys() & teacher.keys())
    n = len(ids)
    none = {"problems": n, "gap_closed": None, "ci95": [None, None], "undefined_resamples": None}
    if n == 0:
        return none
    b, a, t = ([m[i] for i in ids] for m in (before, after, teacher))
    gap = sum(t) - sum(b)
    if gap <= 0:
        return none
    rng = random.Random(seed)
    ratios, undefined = [], 0
    for _ in range(resamples):
        pick = [rng.randrange(n) for _ in range(n)]
        g = sum(t[i] - b[i] for i in pick)
        if g <= 0:
            undefined += 1
            continue
        ratios.append(sum(a[i] - b[i] for i in pick) / g)
    ratios.sort()
    ci = ([ratios[int(0.025 * len(ratios))], ratios[min(int(0.975 * len(ratios)), len(ratios) - 1)]]
          if ratios else [None, None])
    return {"problems": n, "gap_closed": (sum(a) - sum(b)) / gap, "ci95": ci, "undefined_resamples": undefined}
