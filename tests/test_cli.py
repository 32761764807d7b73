"""The CLI is a thin layer: flags become config overrides, user errors exit 2 with a message naming the
file / key / flag, and nothing else is written."""

from typer.testing import CliRunner

from seqdistill.cli import app

runner = CliRunner()


def test_unknown_recipe_key_exits_2_naming_it(tmp_path):
    r = tmp_path / "r.yaml"
    r.write_text("generate:\n  sampling:\n    temprature: 0.7\n")
    res = runner.invoke(app, ["generate", "-r", str(r)])
    assert res.exit_code == 2
    assert "generate.sampling.temprature: unknown key" in res.output and str(r) in res.output


def test_missing_teacher_and_bad_flag_values(tmp_path):
    res = runner.invoke(app, ["generate", "--set", f"run_dir={tmp_path}"])
    assert res.exit_code == 2 and "teacher: required" in res.output
    res = runner.invoke(app, ["generate", "--shard", "2of3", "--set", f"run_dir={tmp_path}"])
    assert res.exit_code == 2 and "generate.shard" in res.output
    assert list(tmp_path.iterdir()) == []


def test_filter_on_missing_input_names_the_flag(tmp_path):
    res = runner.invoke(app, ["filter", "--input-dir", str(tmp_path / "nope"), "--set", f"run_dir={tmp_path}"])
    assert res.exit_code == 2 and "not a generate output dir" in res.output and "filter.input_dir" in res.output


def test_shrink_bad_layers(tiny, tmp_path):
    res = runner.invoke(app, ["shrink", "--teacher", str(tiny["teacher"]), "--layers", "0,99",
                              "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "out of range" in res.output and not (tmp_path / "s").exists()


def test_check_explains_a_verdict(tmp_path):
    res = runner.invoke(app, ["check", "<think>x</think> She pays \\boxed{18 \\text{ dollars}}.", "#### 18",
                              "--task", "gsm8k"])
    assert res.exit_code == 0
    lines = dict(line.split(None, 1) for line in res.output.strip().splitlines())
    assert lines["strict_answer"] == "18 \\text{ dollars}" and lines["gold"] == "18"
    assert lines["path"] == "fast-path" and lines["verdict"] == "correct" and "18 == 18" in lines["detail"]
    f = tmp_path / "out.txt"
    f.write_text("The answer is \\boxed{357}")
    res = runner.invoke(app, ["check", f"@{f}", "3, 5, 7"])
    assert "verdict          wrong" in res.output and "math-verify" in res.output
    res = runner.invoke(app, ["check", "x", "y", "--task", "nope"])
    assert res.exit_code == 2 and "--task" in res.output


def test_eval_and_filter_commands_print_their_reports(tmp_path, tiny):
    import yaml
    from conftest import recipe

    data = recipe(tmp_path, tiny, eval={"data": {"synthetic": {"n": 2, "split": "test"}, "task": "arithmetic"},
                                        "models": ["student"], "sampling": {"n": 1, "max_tokens": 4}})
    r = tmp_path / "r.yaml"
    r.write_text(yaml.safe_dump(data))
    res = runner.invoke(app, ["eval", "-r", str(r)])
    assert res.exit_code == 0, res.output
    assert "| student |" in res.output and "accuracy [95% CI]" in res.output
