"""Issue 7's bar on our own answer-equivalence corpus: no false 'correct' on perturbed answers, and
agreement with the expected verdicts at least that of math-verify alone (the table prints with -s)."""

from verifier_corpus import load_cases, score, table


def test_corpus_is_large_and_balanced():
    cases = load_cases()
    assert len(cases) >= 300
    assert sum(c["perturbed"] for c in cases) >= 100
    assert len({c["category"] for c in cases}) >= 10


def test_corpus_agreement_beats_math_verify_alone_and_no_false_correct():
    result = score(load_cases())
    print("\n" + table(result))
    every = result["per_category"]["ALL"]
    assert every["ours_false_correct"] == 0, [c for c, _ in result["disagreements"] if not c["expected"]]
    assert every["ours"] >= every["math_verify"]
    assert every["ours"] / every["n"] >= 0.97
    for cat, row in result["per_category"].items():
        assert row["ours"] >= row["math_verify"], cat
