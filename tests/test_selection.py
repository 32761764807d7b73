"""Majority-vote labels for gold-less prompts, and student-aware selection (filter.student_probe)."""

import json

import pytest
from fakes import rec, write_generate_output

from seqdistill.errors import SeqdistillError
from seqdistill.filter import run_filter
from seqdistill.store import Store


def _filter(make_cfg, tmp_path, records, overwrite=False, **filt):
    if not overwrite:
        write_generate_output(tmp_path / "run" / "generate", records)
    cfg = make_cfg(filter={"dedup": False, **filt})
    out = run_filter(cfg, overwrite=overwrite)
    kept = {(r["prompt_id"], r["sample_index"]): r for r in Store(out, "kept").records()}
    rejected = {(r["prompt_id"], r["sample_index"]): r for r in Store(out, "rejected").records()}
    return kept, rejected, json.loads((out / "stats.json").read_text())


RECORDS = (
    [rec("A", j, t, gold=None) for j, t in enumerate(["\\boxed{5}", "\\boxed{5.0}", "\\boxed{3}"])]
    + [rec("B", j, t, gold=None) for j, t in enumerate(["\\boxed{1}", "\\boxed{2}"])]
    + [rec("C", j, t, gold="7") for j, t in enumerate(["\\boxed{7}", "\\boxed{7}", "\\boxed{8}"])]
    + [rec("D", j, t, gold="9") for j, t in enumerate(["\\boxed{4}", "\\boxed{4}"])])


def test_majority_labels_only_where_gold_is_missing_and_marked(make_cfg, tmp_path):
    kept, rejected, stats = _filter(make_cfg, tmp_path, RECORDS, majority_labels=True)
    # A: 5 and 5.0 are one answer (the verifier groups them), 2 of 3 >= 0.6 -> label 5
    assert {k for k in kept if k[0] == "A"} == {("A", 0), ("A", 1)}
    assert kept[("A", 0)]["label_source"] == "majority" and kept[("A", 0)]["gold"] == "5"
    assert rejected[("A", 2)]["reject_reason"] == "wrong_answer"
    # B: a tie is no label, never a guess
    assert {rejected[("B", j)]["reject_reason"] for j in (0, 1)} == {"no_majority_label"}
    # C and D keep their gold; the majority is only compared with it
    assert kept[("C", 0)]["label_source"] == "gold" and rejected[("D", 0)]["reject_reason"] == "wrong_answer"
    m = stats["majority_labels"]
    assert (m["prompts_without_gold"], m["labelled"], m["below_agreement_or_tie"]) == (2, 1, 1)
    assert (m["with_gold_and_majority"], m["majority_agrees_with_gold"]) == (2, 1)


def test_without_majority_labels_gold_less_prompts_are_unverifiable(make_cfg, tmp_path):
    kept, rejected, stats = _filter(make_cfg, tmp_path, RECORDS)
    assert not any(k[0] in "AB" for k in kept) and rejected[("A", 0)]["reject_reason"] == "unverifiable"
    assert "majority_labels" not in stats and kept[("C", 0)]["label_source"] == "gold"


def test_majority_agreement_threshold(make_cfg, tmp_path):
    kept, rejected, stats = _filter(make_cfg, tmp_path, RECORDS, majority_labels=True, majority_min_agreement=0.9)
    assert rejected[("A", 0)]["reject_reason"] == "no_majority_label"  # 2 of 3 < 0.9
    assert stats["majority_labels"]["labelled"] == 0


def test_student_probe_band_removes_prompts_the_student_solves(make_cfg, tmp_path, tiny):
    records = [rec(p, j, "\\boxed{42}") for p in ("p1", "p2", "p3") for j in range(2)]
    records += [rec("wrong", j, "\\boxed{41}") for j in range(2)]  # rejected whatever the student does
    probe = {"sampling": {"n": 2, "max_tokens": 6, "temperature": 1.0}, "batch_size": 4}
    # the tiny random student never solves anything: pass rate 0, inside the default band [0, 0.75]
    kept, rejected, stats = _filter(make_cfg, tmp_path, records, student_probe=probe)
    assert len(kept) == 6 and stats["student_pass_rate"] == {"p1": 0.0, "p2": 0.0, "p3": 0.0}
    assert all(r["student_pass_rate"] == 0.0 for r in kept.values())
    probe_store = Store(tmp_path / "run" / "filter" / "probe")
    assert probe_store.count() == 6 and probe_store.manifest()["complete"]
    assert set(probe_store.column("prompt_id")) == {"p1", "p2", "p3"}  # not probed: no trace of it survives
    assert rejected[("wrong", 0)]["reject_reason"] == "wrong_answer"
    # a band that wants prompts the student solves half the time removes all three, counted per prompt
    kept, rejected, stats = _filter(make_cfg, tmp_path, records, overwrite=True,
                                    student_probe={**probe, "pass_rate_min": 0.5, "pass_rate_max": 1.0})
    assert not kept and stats["prompts_removed"] == {"student_pass_rate_out_of_band": 3, "wrong_answer": 1}


def test_bad_bands_name_the_key(make_cfg):
    with pytest.raises(SeqdistillError, match="filter: .*pass_rate_min 0.9 > pass_rate_max 0.1"):
        make_cfg(filter={"pass_rate_min": 0.9, "pass_rate_max": 0.1})
    with pytest.raises(SeqdistillError, match="filter.student_probe: .*pass_rate_min 0.8 > pass_rate_max 0.2"):
        make_cfg(filter={"student_probe": {"pass_rate_min": 0.8, "pass_rate_max": 0.2}})


def test_a_prompt_set_without_any_gold_can_be_labelled(make_cfg, tmp_path):
    gold_less = [r for r in RECORDS if r["prompt_id"] in "AB"]
    with pytest.raises(SeqdistillError, match="no record has a gold answer.*majority_labels"):
        _filter(make_cfg, tmp_path, gold_less)
    kept, _, stats = _filter(make_cfg, tmp_path, gold_less, overwrite=True, majority_labels=True)
    assert {k for k in kept} == {("A", 0), ("A", 1)} and stats["majority_labels"]["labelled"] == 1


def test_answer_groups_do_not_chain_values_that_differ():
    """5% equals 0.05 (by value) and 5 (by the percent convention), but 5 != 0.05: no group holds both."""
    from seqdistill.labels import group_answers

    (groups,) = group_answers([(["5\\%", "0.05", "5"], "math")])
    assert groups[1] != groups[2]
    assert groups[0] in (groups[1], groups[2])  # it joins one of them, never both
    (groups,) = group_answers([(["\\frac{1}{2}", "0.5", "3", "3", None], "math")])
    assert groups[0] == groups[1] and groups[2] == groups[3] and groups[0] != groups[2] and groups[4] is None


def test_majority_label_refused_when_the_votes_only_chain(make_cfg, tmp_path):
    records = [rec("P", j, t, gold=None) for j, t in enumerate(["\\boxed{5\\%}", "\\boxed{0.05}", "\\boxed{5}"])]
    kept, rejected, stats = _filter(make_cfg, tmp_path, records, majority_labels=True, majority_min_agreement=0.6)
    # before: all three voted for "5%" (3/3 agreement) and all three were kept. Now 5% and 0.05 (one value)
    # win 2 of 3, and "5", equal to the label "5%" only by the percent convention, is not kept with them
    assert set(kept) == {("P", 0), ("P", 1)} and kept[("P", 0)]["label_source"] == "majority"
    assert rejected[("P", 2)]["reject_reason"] == "wrong_answer"
    assert "not in the majority group" in rejected[("P", 2)]["verify_detail"]


def test_probe_verifies_prefill_plus_completion_like_filter_and_eval(make_cfg, tmp_path, monkeypatch):
    """With a `<think>` prefill the completion alone has an unopened </think>: the probe must judge the same text
    filter and eval judge (records.answer_text), or its pass rate differs on the same samples."""
    from seqdistill import probe

    seen = []
    real = probe.check_many

    def spy(items, **kw):
        seen.extend(text for text, _, _ in items)
        return real(items, **kw)

    monkeypatch.setattr(probe, "check_many", spy)
    records = [rec("p1", j, "\\boxed{42}") for j in range(2)]
    write_generate_output(tmp_path / "run" / "generate", records)
    cfg = make_cfg(filter={"dedup": False, "student_probe": {"sampling": {"n": 2, "max_tokens": 4,
                                                                          "temperature": 1.0}}},
                   prompt={"prefill": "<think>\n"})
    run_filter(cfg)
    assert len(seen) == 2 and all(t.startswith("<think>\n") for t in seen)
