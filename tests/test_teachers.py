"""Several teachers, one dataset (`teachers:`): traces carry their teacher's name and their own sample-index
range, resume is per teacher, filter counts per teacher, and sft.per_teacher + eval answer which teacher makes
the better student."""

import json

import pytest

from seqdistill.errors import SeqdistillError
from seqdistill.evaluate import run_eval
from seqdistill.filter import run_filter
from seqdistill.generate import run_generate
from seqdistill.sft import run_sft
from seqdistill.store import Store


def _cfg(make_cfg, tiny, **extra):
    teachers = [{"name": "big", "path": str(tiny["teacher"]), "dtype": "float32"},
                {"name": "small", "path": str(tiny["student"]), "dtype": "float32",
                 "sampling": {"n": 1, "max_tokens": 8, "temperature": 1.0}}]
    return make_cfg(teacher=None, teachers=teachers, data={"synthetic": {"n": 4}, "task": "arithmetic"}, **extra)


def test_generate_records_teacher_and_resumes_per_teacher(make_cfg, tiny):
    cfg = _cfg(make_cfg, tiny)
    out = run_generate(cfg)
    recs = list(Store(out).records())
    by = {(r["prompt_id"], r["sample_index"]): r["teacher"] for r in recs}
    assert len(recs) == 4 * 3 and set(by.values()) == {"big", "small"}
    assert {i for (_, i), t in by.items() if t == "big"} == {0, 1}
    assert {i for (_, i), t in by.items() if t == "small"} == {2}
    assert all(r["completion_tokens"] <= 8 for r in recs if r["teacher"] == "small")  # its own sampling
    # lose the second teacher's shards (a crash before it finished): only its part is redone
    big_files = {f: f.stat().st_mtime_ns for f in Store(out).shard_files() if "-small" not in f.name}
    for f in Store(out).shard_files():
        if "-small" in f.name:
            f.unlink()
    Store(out).update_manifest(complete=False)
    run_generate(cfg)
    assert {f: f.stat().st_mtime_ns for f in Store(out).shard_files() if "-small" not in f.name} == big_files
    again = list(Store(out).records())
    assert len(again) == 12 and len({(r["prompt_id"], r["sample_index"]) for r in again}) == 12


def test_filter_per_teacher_then_one_student_per_teacher_ranked_by_eval(make_cfg, tiny):
    cfg = _cfg(make_cfg, tiny,
               filter={"require_correct": False, "drop_truncated": False, "require_boxed": False,
                       "drop_garbage": False, "near_dup_threshold": None, "select": "shortest_k", "k": 2},
               sft={"max_steps": 1, "per_device_train_batch_size": 2, "save_steps": 100, "per_teacher": True,
                    "max_length": 256},
               eval={"data": {"synthetic": {"n": 3, "split": "test"}, "task": "arithmetic"},
                     "models": ["teacher:small", "sft", "sft:big", "sft:small"],
                     "sampling": {"n": 1, "max_tokens": 6}})
    run_generate(cfg)
    stats = json.loads((run_filter(cfg) / "stats.json").read_text())
    per = stats["per_teacher"]
    assert per["big"]["input"] == 8 and per["small"]["input"] == 4
    assert per["big"]["kept"] + per["small"]["kept"] == stats["kept"] == 8  # shortest 2 per prompt, across teachers
    run_sft(cfg)
    for name in ("big", "small"):
        assert (cfg.per_teacher_dir(name) / "model" / "config.json").is_file()
    report = json.loads((run_eval(cfg) / "eval.json").read_text())
    ranking = report["teacher_ranking"]
    assert {row["teacher"] for row in ranking} == {"big", "small", "(all teachers)"}
    assert [row["accuracy"] for row in ranking] == sorted((row["accuracy"] for row in ranking), reverse=True)
    assert "Which teacher makes the better student" in (cfg.stage_dir("eval") / "report.md").read_text()
    # `teacher:NAME` evaluates that teacher (here the small one, which has the student's size) and is the
    # reference for retention when no plain `teacher` is evaluated
    small = report["models"]["teacher:small"]
    assert small["params"] == report["models"]["sft:small"]["params"]
    assert set(report["summary"]) == {"sft", "sft:big", "sft:small"}
    assert report["summary"]["sft"]["size_ratio"] == 1.0
    acc = small["accuracy"]["mean"]
    assert report["summary"]["sft"]["retention"] == (report["models"]["sft"]["accuracy"]["mean"] / acc if acc else None)


def test_teacher_names_must_be_unique_and_per_teacher_needs_teachers(make_cfg, tiny):
    with pytest.raises(SeqdistillError, match="teachers: .*name 'x' is used twice"):
        make_cfg(teachers=[{"name": "x", "path": str(tiny["teacher"])}, {"name": "x", "path": str(tiny["student"])}])
    # refused when the recipe loads, not after the main student has trained
    with pytest.raises(SeqdistillError, match="sft.per_teacher: needs `teachers:`"):
        make_cfg(sft={"per_teacher": True})
    with pytest.raises(SeqdistillError, match="eval.models: 'sft:nobody'"):
        run_eval(make_cfg(eval={"data": {"synthetic": {"n": 2, "split": "test"}, "task": "arithmetic"},
                                "models": ["sft:nobody"]}))


def test_eval_teacher_with_several_teachers_must_name_one(make_cfg, tiny):
    """With `teachers:`, a bare `teacher` in eval.models would be a guess at which one: refused at load."""
    ev = {"data": {"synthetic": {"n": 2, "split": "test"}, "task": "arithmetic"}}
    with pytest.raises(SeqdistillError, match="eval.models: 'teacher' is ambiguous with `teachers:`.*big, small"):
        _cfg(make_cfg, tiny, eval={**ev, "models": ["teacher", "sft"]})
    with pytest.raises(SeqdistillError, match="eval.models: 'teacher:nobody' names no teacher"):
        _cfg(make_cfg, tiny, eval={**ev, "models": ["teacher:nobody"]})
    with pytest.raises(SeqdistillError, match="eval.models: 'teacher:big' names no teacher"):
        make_cfg(eval={**ev, "models": ["teacher:big"]})
    # left unset, eval.models names every teacher (retention against the first), then student and final
    assert _cfg(make_cfg, tiny, eval=ev).eval.models == ["teacher:big", "teacher:small", "student", "final"]


def test_teacher_and_teachers_together_and_budget_with_logprobs_per_teacher_are_refused(make_cfg, tiny):
    from seqdistill.errors import SeqdistillError

    t = {"name": "a", "path": str(tiny["teacher"])}
    with pytest.raises(SeqdistillError, match="teacher and teachers: both set"):
        make_cfg(teachers=[t])  # make_cfg's recipe already has `teacher:`
    with pytest.raises(SeqdistillError, match=r"teachers\[b\].sampling.thinking_budget with generate.logprobs"):
        make_cfg(teacher=None, teachers=[t, {"name": "b", "path": str(tiny["teacher"]),
                                             "sampling": {"max_tokens": 20, "thinking_budget": 8}}],
                 generate={"logprobs": 4})
