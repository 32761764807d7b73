import itertools
import math
import random

import pytest

from seqdistill.metrics import majority_score, mean_ci, pass_at_k, summarize_problems


@pytest.mark.parametrize("n,c,k", [(5, 2, 1), (5, 2, 2), (5, 2, 4), (6, 0, 3), (6, 6, 2), (8, 3, 5), (4, 1, 4)])
def test_pass_at_k_matches_brute_force(n, c, k):
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
    assert pass_at_k(n, c, k) == pytest.approx(brute)


def test_pass_at_k_needs_enough_samples():
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_majority_with_ties_is_expected_random_tiebreak():
    assert majority_score(["4", "4", "5"], [True, True, False]) == 1.0
    assert majority_score(["4", "5", "5"], [True, False, False]) == 0.0
    assert majority_score(["4", "5"], [True, False]) == 0.5  # 1-1 tie: half credit
    assert majority_score(["4", "5", "6", "6", "4"], [True, False, False, False, True]) == 0.5
    assert majority_score([None, None], [False, False]) == 0.0
    assert majority_score([None, "4"], [False, True]) == 1.0  # no-answer samples cast no vote


def test_ci_bounds_contain_mean_and_shrink_with_n():
    small = [1.0, 0.0] * 10
    big = [1.0, 0.0] * 500
    m, lo, hi = mean_ci(small)
    assert lo <= m <= hi and 0 <= lo and hi <= 1 and m == 0.5
    _, lo2, hi2 = mean_ci(big)
    assert (hi2 - lo2) < (hi - lo) / 4
    # close to the normal approximation for a large sample
    assert hi2 - lo2 == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 1000), rel=0.15)
    assert mean_ci([1.0] * 7) == (1.0, 1.0, 1.0)


def test_summarize_problems():
    groups = {"a": [{"correct": True, "pred": "1"}, {"correct": False, "pred": "2"}],
              "b": [{"correct": False, "pred": "3"}, {"correct": False, "pred": "3"}]}
    out = summarize_problems(groups, [1, 2])
    assert out["pass@1"]["mean"] == 0.25 and out["pass@2"]["mean"] == 0.5 and out["maj@2"]["mean"] == 0.25


def test_summary_counts_each_problem_once_for_k1():
    groups = {str(i): [{"correct": i < 29, "pred": "x"}] for i in range(48)}
    out = summarize_problems(groups, [1])
    assert out["pass@1"]["mean"] == pytest.approx(29 / 48)
    assert tuple(out["pass@1"]["ci95"]) == mean_ci([1.0] * 29 + [0.0] * 19)[1:]
    assert set(out) == {"pass@1"}


@pytest.mark.parametrize("won,lost", [(0, 0), (3, 0), (0, 5), (4, 9), (9, 9), (1, 17)])
def test_mcnemar_exact_matches_enumeration(won, lost):
    """Brute force: every way the discordant problems could split under H0 (each side p = 1/2), two-sided as the
    probability of a split at least as uneven as the one seen."""
    from seqdistill.metrics import mcnemar_exact

    n = won + lost
    seen = abs(won - lost)
    extreme = sum(abs(2 * sum(bits) - n) >= seen for bits in itertools.product((0, 1), repeat=n))
    assert mcnemar_exact(won, lost) == pytest.approx(min(1.0, extreme / 2 ** n))


def test_paired_comparison_counts_and_exact_bootstrap():
    """The difference, the discordant counts and a CI that matches the exact bootstrap distribution (all n^n
    resamples of 6 problems enumerated) to within one grid step."""
    from seqdistill.metrics import paired_comparison

    before = {"a": 1.0, "b": 0.0, "c": 0.0, "d": 1.0, "e": 0.0, "f": 0.0, "only-before": 1.0}
    after = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0, "e": 1.0, "f": 0.0, "only-after": 0.0}
    out = paired_comparison(before, after, resamples=20000)
    assert out["problems"] == 6  # only the problems both scored
    assert out["diff"] == pytest.approx(2 / 6)
    assert (out["gained"], out["lost"]) == (3, 1)
    d = [after[k] - before[k] for k in "abcdef"]
    means = sorted(sum(d[i] for i in idx) / 6 for idx in itertools.product(range(6), repeat=6))
    lo, hi = means[int(0.025 * len(means))], means[int(0.975 * len(means))]
    assert abs(out["ci95"][0] - lo) <= 1 / 6 + 1e-9 and abs(out["ci95"][1] - hi) <= 1 / 6 + 1e-9


def test_paired_ci_is_tighter_than_unpaired_when_models_agree():
    """Two models that agree on most problems: the paired CI of the difference is far narrower than the gap the
    unpaired CIs leave, which is why eval reports it."""
    from seqdistill.metrics import mean_ci, paired_comparison

    rng = random.Random(0)
    base = {str(i): float(rng.random() < 0.3) for i in range(500)}
    after = dict(base)
    flipped = [k for k, v in base.items() if v == 0.0][:25]  # 25 wrong answers fixed, nothing broken
    after.update({k: 1.0 for k in flipped})
    out = paired_comparison(base, after)
    assert out["ci95"][0] > 0 and (out["gained"], out["lost"]) == (25, 0) and out["mcnemar_p"] < 1e-6
    b_lo, b_hi = mean_ci(list(base.values()))[1:]
    a_lo, a_hi = mean_ci(list(after.values()))[1:]
    assert a_lo < b_hi  # the unpaired CIs overlap, yet the paired difference is clearly above 0


def test_maj_at_k_groups_votes_through_the_verifier(make_cfg, tmp_path):
    """\\frac{1}{2}, 0.5, 3, 3 with gold 1/2: two groups of two, a tie, so maj@4 = 1/2 (string grouping gave 0)."""
    from fakes import rec, write_generate_output

    from seqdistill.evaluate import score_model
    from seqdistill.store import Store

    cfg = make_cfg(eval={"data": {"synthetic": {"n": 1, "split": "test"}, "task": "math"},
                         "sampling": {"n": 4, "temperature": 1.0}})
    texts = ["\\boxed{\\frac{1}{2}}", "\\boxed{0.5}", "\\boxed{3}", "\\boxed{3}"]
    root = write_generate_output(tmp_path / "samples", [rec("p", j, t, gold="\\frac{1}{2}", task="math")
                                                         for j, t in enumerate(texts)])
    metrics, _ = score_model(Store(root), cfg)
    assert metrics["maj@4"]["mean"] == 0.5 and metrics["pass@1"]["mean"] == 0.5


def test_gap_closed_is_the_share_of_the_teacher_gap_with_a_paired_ci():
    from seqdistill.metrics import gap_closed

    ids = [f"p{i}" for i in range(40)]
    before = {p: float(i < 10) for i, p in enumerate(ids)}  # 25%
    teacher = {p: float(i < 30) for i, p in enumerate(ids)}  # 75%
    after = {p: float(i < 20) for i, p in enumerate(ids)}  # 50%: half the gap
    g = gap_closed(before, after, teacher)
    assert g["problems"] == 40 and g["gap_closed"] == pytest.approx(0.5)
    lo, hi = g["ci95"]
    assert lo < 0.5 < hi and 0.2 < lo and hi < 0.8
    # the bootstrap is paired: the same resamples by brute force give the same interval
    rng, order = random.Random(0), sorted(ids)
    ratios = []
    for _ in range(2000):
        pick = [order[rng.randrange(40)] for _ in range(40)]
        d = sum(teacher[p] - before[p] for p in pick)
        if d > 0:
            ratios.append(sum(after[p] - before[p] for p in pick) / d)
    ratios.sort()
    assert [lo, hi] == [ratios[int(0.025 * len(ratios))], ratios[int(0.975 * len(ratios))]]
    # a student worse than before closes a negative share; the teacher itself closes all of it
    assert gap_closed(before, {p: 0.0 for p in ids}, teacher)["gap_closed"] == pytest.approx(-0.5)
    assert gap_closed(before, teacher, teacher)["gap_closed"] == pytest.approx(1.0)


def test_gap_closed_is_undefined_when_the_teacher_is_not_above_the_student():
    from seqdistill.metrics import gap_closed

    same = {"a": 1.0, "b": 0.0}
    assert gap_closed(same, {"a": 1.0, "b": 1.0}, same)["gap_closed"] is None
    assert gap_closed({"a": 1.0}, {"a": 1.0}, {"a": 0.0})["gap_closed"] is None
    assert gap_closed({}, {}, {})["problems"] == 0
