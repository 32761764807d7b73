"""eval and run end to end on tiny models (random text: the filter is told to keep it)."""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO, recipe

from seqdistill.config import validate
from seqdistill.errors import ConfigError, SeqdistillError
from seqdistill.evaluate import distillation_summary, run_eval
from seqdistill.pipeline import run_pipeline
from seqdistill.store import Store

KEEP_ALL = {"require_correct": False, "drop_truncated": False, "drop_unclosed_think": False,
            "require_boxed": False, "drop_garbage": False, "dedup": False, "num_workers": 1}
EVAL = {"data": {"synthetic": {"n": 4, "split": "test"}, "task": "arithmetic"}, "batch_size": 4,
        "sampling": {"n": 2, "max_tokens": 8, "temperature": 1.0}}


def full_recipe(tmp_path, tiny, **over):
    return recipe(tmp_path, tiny, filter=KEEP_ALL, eval=EVAL,
                  sft={"max_steps": 3, "max_length": 256, "learning_rate": 1e-3, "save_steps": 1000}, **over)


def test_eval_end_to_end_on_tiny_models(make_cfg, tiny):
    cfg = make_cfg(eval={**EVAL, "models": ["teacher", "student"]})
    out = run_eval(cfg)
    report = json.loads((out / "eval.json").read_text())
    t, s = report["models"]["teacher"], report["models"]["student"]
    assert t["problems"] == 4 and t["samples"] == 8
    for m in (t, s):
        assert 0 <= m["pass@1"]["ci95"][0] <= m["pass@1"]["mean"] <= m["pass@1"]["ci95"][1] <= 1
        assert m["accuracy"] == m["pass@1"] and "format" in m and "pass@1" in m["strict"]
        assert "pass@2" in m and "maj@2" in m and m["tokens_per_s"] > 0 and m["latency_per_problem_s"] > 0
        assert m["truncation_rate"] == 1.0 and m["mean_output_tokens"] == 8
        # random text boxes no answer (lenient scoring may still find a stray last number)
        assert m["format"]["mean"] == 0.0 and m["strict"]["pass@1"]["mean"] == 0.0
    assert s["params"] < t["params"]
    summ = report["summary"]["student"]
    assert summ["size_ratio"] == pytest.approx(s["params"] / t["params"])
    assert summ["speedup"] == pytest.approx(s["tokens_per_s"] / t["tokens_per_s"])
    for m in (t, s):  # both timed on the same work: every timed sequence decoded exactly speed_tokens
        assert m["speed_fixed_length"] and m["speed_tokens_per_sequence"] == 8
    table = (out / "report.md").read_text()
    assert "every timed sequence decoded exactly 8 tokens" in table
    assert "| teacher |" in table and "| student |" in table and "retention" in table
    assert (out / "report.png").stat().st_size > 1000 and (out / "student" / "samples.parquet").is_file()
    # paired: the student against the teacher on the same problems, recomputed from the per-sample records
    import pyarrow.parquet as pq

    per = {}
    for m in ("teacher", "student"):
        rows = pq.read_table(out / m / "samples.parquet").to_pylist()
        per[m] = {pid: sum(r["verdict"] == "correct" for r in rows if r["prompt_id"] == pid) / 2
                  for pid in {r["prompt_id"] for r in rows}}
    (row,) = report["paired"]
    assert (row["model"], row["against"], row["problems"]) == ("student", "teacher", 4)
    assert row["diff"] == pytest.approx(sum(per["student"][p] - per["teacher"][p] for p in per["teacher"]) / 4)
    assert row["ci95"][0] <= row["diff"] <= row["ci95"][1] and 0 <= row["mcnemar_p"] <= 1
    assert "Paired on the same problems" in table
    # math samples are scored a second time by the outside witness, every one of them
    assert t["witness"]["samples"] == 8 and 0 <= t["witness"]["agreement"] <= 1 and "Outside witness" in table
    # rerun: samples come from disk, not regenerated
    before = sorted(p.stat().st_mtime_ns for p in (out / "teacher" / "data").glob("*.parquet"))
    run_eval(cfg)
    assert sorted(p.stat().st_mtime_ns for p in (out / "teacher" / "data").glob("*.parquet")) == before


def test_eval_repeats_a_model_at_another_batch_size_and_reports_the_noise(make_cfg, tiny):
    cfg = make_cfg(eval={**EVAL, "models": ["teacher", "student"], "repeat_models": ["student"],
                         "repeat_batch_size": 3, "speed_prompts": 0})
    out = run_eval(cfg)
    nz = json.loads((out / "eval.json").read_text())["repeat_noise"]
    assert list(nz) == ["student"] and nz["student"]["samples"] == 8
    assert (nz["student"]["batch_size"], nz["student"]["repeat_batch_size"]) == (4, 3)
    assert (out / "student@batch3" / "samples.parquet").is_file()  # the repeat's verdicts, to check the count
    assert 0 <= nz["student"]["verdict_flips"] <= nz["student"]["completions_differ"] <= 8
    assert "Run-to-run noise: student sampled again with batches of 3 instead of 4" in (out / "report.md").read_text()
    with pytest.raises(SeqdistillError, match="repeat_models: 'sft' is not in eval.models"):
        make_cfg(eval={**EVAL, "models": ["student"], "repeat_models": ["sft"]})
    with pytest.raises(SeqdistillError, match="equals batch_size"):
        make_cfg(eval={**EVAL, "models": ["student"], "repeat_models": ["student"], "repeat_batch_size": 4})


def test_eval_of_an_unreachable_hub_model_fails_before_writing_anything(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = make_cfg(eval={**EVAL, "models": ["org/nomodel"]})
    with pytest.raises(SeqdistillError, match="org/nomodel: no model folder here"):
        run_eval(cfg)
    assert not (tmp_path / "run" / "eval").exists()


def test_repeat_noise_counts_differences_and_flips_both_ways():
    from seqdistill.evaluate import repeat_noise

    def r(pid, text, verdict):
        return {"prompt_id": pid, "sample_index": 0, "completion": text, "verdict": verdict}

    first = [r("a", "x", "correct"), r("b", "y", "wrong"), r("c", "z", "correct"), r("d", "w", "wrong")]
    second = [r("a", "x", "correct"), r("b", "y2", "correct"), r("c", "z2", "wrong"), r("d", "w2", "wrong")]
    nz = repeat_noise(first, second)
    assert (nz["samples"], nz["completions_differ"], nz["verdict_flips"]) == (4, 3, 2)
    assert (nz["flipped_to_correct"], nz["flipped_to_wrong"], nz["accuracy_diff"]) == (1, 1, 0.0)


@pytest.mark.parametrize("labels, expected", [
    # the arms against the student before, the teacher and each other; teachers are never "against" a student
    (["teacher", "student", "sft", "kd"],
     {("student", "teacher"), ("sft", "student"), ("kd", "student"), ("sft", "teacher"), ("kd", "teacher"),
      ("kd", "sft")}),
    (["student", "sft", "/models/other"], {("sft", "student"), ("/models/other", "student"), ("/models/other", "sft")}),
    (["teacher:a", "teacher:b", "student"], {("teacher:b", "teacher:a"), ("student", "teacher:a")}),
    (["sft", "kd"], {("kd", "sft")}),
    (["teacher", "final"], {("final", "teacher")}),
])
def test_paired_table_pairs_each_arm_with_the_student_the_teacher_and_the_sft_arm(labels, expected):
    from seqdistill.evaluate import paired_table

    rng = random.Random(0)
    per = {m: {f"p{i}": float(rng.random() < 0.5) for i in range(12)} for m in labels}
    rows = paired_table(per)
    assert {(r["model"], r["against"]) for r in rows} == expected and len(rows) == len(expected)
    for r in rows:  # each row is the difference model - reference on the same problems
        assert r["diff"] == pytest.approx(sum(per[r["model"]][p] - per[r["against"]][p] for p in per[r["model"]]) / 12)


def test_gap_table_names_every_trained_model_against_the_student_before_and_the_teacher():
    from seqdistill.evaluate import gap_table

    per = {"teacher": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0}, "student": {"a": 0.0, "b": 0.0, "c": 1.0, "d": 0.0},
           "sft": {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0}, "kd": {"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0}}
    g = gap_table(per)
    assert set(g) == {"sft", "kd"}
    assert g["sft"]["gap_closed"] == pytest.approx(0.5) and g["kd"]["gap_closed"] == pytest.approx(1.5)
    assert gap_table({k: v for k, v in per.items() if k != "teacher"}) == {}


def test_distillation_summary_math():
    same = {"speed_fixed_length": True, "speed_tokens_per_sequence": 256}
    res = {"teacher": {"accuracy": {"mean": 0.8}, "params": 1000, "tokens_per_s": 10.0, "latency_per_problem_s": 4.0,
                       **same},
           "final": {"accuracy": {"mean": 0.6}, "params": 400, "tokens_per_s": 25.0, "latency_per_problem_s": 1.0,
                     **same}}
    s = distillation_summary(res)["final"]
    assert s["retention"] == pytest.approx(0.75) and s["size_ratio"] == 0.4 and s["speedup"] == 2.5
    assert s["latency_ratio"] == 0.25


@pytest.mark.parametrize("final_speed", [{"speed_fixed_length": False, "speed_tokens_per_sequence": 256},
                                         {"speed_fixed_length": True, "speed_tokens_per_sequence": 128}, {}])
def test_speedup_is_refused_when_the_models_were_not_timed_on_the_same_work(final_speed):
    """A batch's time is its longest answer's: tok/s of answers of different lengths (a timing from before the
    fixed-length protocol, a backend that cannot ignore the end of sequence, another length) is no speed-up."""
    res = {"teacher": {"accuracy": {"mean": 0.8}, "params": 1000, "tokens_per_s": 10.0, "latency_per_problem_s": 4.0,
                       "tokens_per_s_spread": [9.0, 11.0], "speed_fixed_length": True,
                       "speed_tokens_per_sequence": 256},
           "final": {"accuracy": {"mean": 0.6}, "params": 400, "tokens_per_s": 25.0, "latency_per_problem_s": 1.0,
                     "tokens_per_s_spread": [24.0, 26.0], **final_speed}}
    s = distillation_summary(res)["final"]
    assert s["speedup"] is None and s["speedup_spread"] is None and s["latency_ratio"] is None
    assert s["retention"] == pytest.approx(0.75)  # accuracy and size still compare


def test_eval_names_missing_stage_model(make_cfg):
    with pytest.raises(ConfigError, match="run the sft stage"):
        run_eval(make_cfg(eval={**EVAL, "models": ["final"]}))


@pytest.mark.slow  # a subprocess run, killed or timed: the full suite (.ci/run) runs it
def test_run_all_stages_then_kill_in_sft_and_resume(tmp_path, tiny):
    data = full_recipe(tmp_path, tiny)
    data["sft"].update(max_steps=150, save_steps=10)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(data))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "seqdistill.cli", "run", str(path)]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck = tmp_path / "run" / "sft" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not list(ck.glob("checkpoint-*/trainer_state.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run = tmp_path / "run"
    assert Store(run / "generate").is_complete() and Store(run / "filter").is_complete()
    assert not Store(run / "sft").is_complete() and not (run / "eval").exists()
    done_files = {p: p.stat().st_mtime_ns for p in list((run / "generate").rglob("*.parquet")) +
                  list((run / "filter").rglob("*.parquet"))}
    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in done_files} == done_files  # finished stages skipped
    assert "resuming from" in second.stderr and "checkpoint-" in second.stderr
    assert Store(run / "sft").manifest()["global_step"] == 150
    report = json.loads((run / "eval" / "eval.json").read_text())
    assert set(report["models"]) == {"teacher", "student", "final"}
    assert "retention" in report["summary"]["final"]


def test_run_subset_and_failure_message(tmp_path, tiny):
    cfg = validate(full_recipe(tmp_path, tiny))
    with pytest.raises(SeqdistillError, match="stage filter failed: .*not a generate output"):
        run_pipeline(cfg, stages=["filter"])
    with pytest.raises(ConfigError, match="unknown stage"):
        run_pipeline(cfg, stages=["generate", "distill"])
    with pytest.raises(ConfigError, match="no kd: section"):
        run_pipeline(cfg, stages=["kd"])
    times = run_pipeline(cfg, stages=["generate", "filter"])
    assert set(times) == {"generate", "filter"} and not (tmp_path / "run" / "sft").exists()


def test_run_with_kd_section(tmp_path, tiny):
    data = full_recipe(tmp_path, tiny, kd={"max_steps": 2, "max_length": 256, "save_steps": 1000})
    data["generate"]["logprobs"] = 4
    data["eval"] = {**EVAL, "models": ["student", "final"]}
    cfg = validate(data)
    run_pipeline(cfg)
    assert Store(tmp_path / "run" / "kd").manifest()["complete"]
    report = json.loads((tmp_path / "run" / "eval" / "eval.json").read_text())
    assert report["models"]["final"]["model"].endswith("kd/model")


# ------------------------------------------------------------------ issue 8: eval sets and scoring
def test_eval_requires_a_held_out_set_and_refuses_overlap(make_cfg, tmp_path):
    from seqdistill.errors import ConfigError, DataError

    cfg = make_cfg()
    cfg.eval.data = None
    with pytest.raises(ConfigError, match="eval.data: required"):
        run_eval(cfg)
    # the training split itself as the "benchmark": every item overlaps the training prompts
    same = {**EVAL, "data": {"synthetic": {"n": 6}, "task": "arithmetic"}, "models": ["student"]}
    with pytest.raises(DataError, match="6 of 6 eval items .* overlap the training prompts"):
        run_eval(make_cfg(eval=same))
    assert not (tmp_path / "run" / "eval").exists()
    out = run_eval(make_cfg(eval={**same, "max_train_overlap": 1.0}))  # intended: allowed, and reported
    assert json.loads((out / "eval.json").read_text())["train_overlap"]["overlapping"] == 6


def test_strict_and_lenient_scoring_and_format_rate(make_cfg, tmp_path):
    from fakes import rec

    from seqdistill.evaluate import score_model
    from seqdistill.records import RECORD_SCHEMA

    store = Store(tmp_path / "s")
    store.prepare("eval-generate", "h", {})
    store.write_shard([rec("a", 0, "So the total is 42.", gold="42"),  # right, but not in the asked-for box
                       rec("b", 0, "Thus \\boxed{7}.", gold="7"),  # right and boxed
                       rec("c", 0, "The answer is 5.", gold="6"),  # wrong either way
                       rec("d", 0, "I think \\boxed{3}", gold="4")], "s0", RECORD_SCHEMA)
    cfg = make_cfg(eval={**EVAL, "sampling": {"n": 1}})
    metrics, _ = score_model(store, cfg)
    assert metrics["accuracy"]["mean"] == 0.5  # a (last number) and b
    assert metrics["strict"]["pass@1"]["mean"] == 0.25  # only b: "the answer is" counts for arithmetic
    assert metrics["format"]["mean"] == 0.75  # b, c ("the answer is" is a required form), d
    for m in (metrics["accuracy"], metrics["strict"]["pass@1"], metrics["format"]):
        assert m["ci95"][0] <= m["mean"] <= m["ci95"][1]


def test_pass_at_k_with_fewer_samples_is_refused(make_cfg, tmp_path):
    from fakes import rec

    from seqdistill.errors import DataError
    from seqdistill.evaluate import score_model
    from seqdistill.records import RECORD_SCHEMA

    store = Store(tmp_path / "s")
    store.prepare("eval-generate", "h", {})
    store.write_shard([rec("a", 0, "\\boxed{1}", gold="1"), rec("a", 1, "\\boxed{1}", gold="1"),
                       rec("b", 0, "\\boxed{1}", gold="1")], "s0", RECORD_SCHEMA)
    with pytest.raises(DataError, match="eval.sampling.n: pass@2 needs 2 samples"):
        score_model(store, make_cfg(eval={**EVAL, "sampling": {"n": 2}}))


def test_eval_speed_is_timed_after_a_warm_up_repeated_and_re_measured_when_settings_change(make_cfg, monkeypatch):
    """A warm-up first, `speed_repeats` timed passes (median and spread), and a timing from other settings is
    measured again while the scored samples are reused."""
    from seqdistill import evaluate

    calls = []
    real = evaluate.measure_speed

    def spy(backend, prompts, params, repeats, label, tokens, budget_s):
        calls.append((label, len(prompts), repeats))
        return real(backend, prompts, params, repeats, label, tokens, budget_s)

    monkeypatch.setattr(evaluate, "measure_speed", spy)
    ev = {**EVAL, "models": ["teacher", "student"], "speed_prompts": 2, "speed_repeats": 3}
    out = run_eval(make_cfg(eval=ev))
    report = json.loads((out / "eval.json").read_text())
    assert calls == [("teacher", 2, 3), ("student", 2, 3)]
    for m in report["models"].values():
        lo, hi = m["tokens_per_s_spread"]
        assert m["speed_runs"] == 3 and lo <= m["tokens_per_s"] <= hi
    s = report["summary"]["student"]
    assert s["speedup_spread"][0] <= s["speedup"] <= s["speedup_spread"][1]
    shards = sorted(p.stat().st_mtime_ns for p in (out / "teacher" / "data").glob("*.parquet"))
    # same settings: nothing re-measured; another batch size: the timing is redone, the samples are not
    run_eval(make_cfg(eval=ev))
    assert len(calls) == 2
    run_eval(make_cfg(eval={**ev, "batch_size": 2}))
    assert len(calls) == 4
    run_eval(make_cfg(eval={**ev, "batch_size": 2, "speed_tokens": 4}))  # another timed length: timed again
    assert len(calls) == 6
    assert json.loads((out / "eval.json").read_text())["models"]["teacher"]["speed_tokens_per_sequence"] == 4
    assert sorted(p.stat().st_mtime_ns for p in (out / "teacher" / "data").glob("*.parquet")) == shards


def test_eval_speed_stops_timing_passes_at_its_budget_but_always_times_one(monkeypatch):
    """A slow CPU gets fewer passes of the same work, not minutes per model (eval.speed_budget_s)."""
    from seqdistill import evaluate, sampling
    from seqdistill.backends.base import Completion, Params

    def slow_sample(backend, prompts, params):  # every pass takes 0.2 s; the warm-up nothing
        if params.max_tokens > 8:
            time.sleep(0.2)
        return [[Completion("x", "length", params.max_tokens, 1)] for _ in prompts]

    monkeypatch.setattr(sampling, "sample", slow_sample)
    params = Params(n=1, temperature=0.0, max_tokens=16)
    assert len(evaluate.measure_speed(None, ["a", "b"], params, 5, "m", 16, budget_s=0.3)["runs"]) == 2
    assert len(evaluate.measure_speed(None, ["a", "b"], params, 5, "m", 16, budget_s=0.01)["runs"]) == 1
    full = evaluate.measure_speed(None, ["a", "b"], params, 3, "m", 16)
    assert len(full["runs"]) == 3 and full["fixed_length"] and full["tokens_per_sequence"] == 16


def test_train_eval_overlap_counts_what_reached_the_student_not_what_the_filter_removed(tmp_path):
    """A generated prompt that overlaps the benchmark and that filter's decontamination removed never reached a
    student: eval's overlap check is against filter's kept traces once the filter has run (issue 15's GSM8K run:
    8 of 500 test items overlapped the 1,600 generated prompts, none the kept ones)."""
    from fakes import rec, write_generate_output

    from seqdistill.config import validate
    from seqdistill.errors import DataError
    from seqdistill.evaluate import overlap_report
    from seqdistill.filter import run_filter

    leaked = "Ava buys seven red apples at the market and gives three of them to her little brother Tom."
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"question": leaked, "answer": "4"}) + "\n")
    ok = "<think>\nseven minus three is four\n</think>\nSo \\boxed{4}."
    write_generate_output(tmp_path / "run" / "generate",
                          [rec("p1", 0, ok, gold="4", question=leaked), rec("p2", 0, ok, gold="4")])
    recipe = {"run_dir": str(tmp_path / "run"), "eval": {"data": {"path": str(bench)}},
              "filter": {"num_workers": 1, "min_tokens": None, "decontaminate": [{"path": str(bench)}]}}
    cfg = validate(recipe)
    items = [{"id": "b0", "question": leaked, "answer": "4"}]
    with pytest.raises(DataError, match="1 of 1 eval items"):  # before the filter: every generated prompt
        overlap_report(cfg, items)
    run_filter(cfg)
    assert overlap_report(cfg, items)["overlapping"] == 0
    custom = validate({**recipe, "sft": {"dataset": str(tmp_path / "run" / "generate")}})
    with pytest.raises(DataError, match="1 of 1 eval items"):  # a recipe that trains on something else
        overlap_report(custom, items)


def test_report_says_when_a_speed_was_timed_on_free_length_answers():
    from seqdistill.report import eval_markdown

    ci = {"mean": 0.5, "ci95": [0.4, 0.6]}
    model = {"params": 1e9, "accuracy": ci, "strict": {"pass@1": ci}, "format": ci, "no_answer_rate": 0.0,
             "truncation_rate": 0.0, "mean_output_tokens": 10, "latency_per_problem_s": 1.0, "tokens_per_s": 50.0,
             "tokens_per_s_spread": [49.0, 51.0]}
    report = {"k": 1, "benchmark": "b", "task": "math", "backend": "openai", "paired": [],
              "models": {"teacher": {**model, "speed_fixed_length": False},
                         "student": {**model, "speed_fixed_length": True, "speed_tokens_per_sequence": 256}}}
    report["summary"] = distillation_summary(report["models"])
    md = eval_markdown(report)
    assert "tok/s of teacher was timed on answers of free length" in md and "no speed-up is given" in md
    assert md.splitlines()[5].startswith("| student |") and md.splitlines()[5].endswith("| - |")  # no speed-up
