import itertools
import math

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
