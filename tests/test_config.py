import pytest

from seqdistill.config import RecipeConfig, load_recipe, stage_hash, validate
from seqdistill.errors import ConfigError


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_file_and_dotted_path(tmp_path):
    p = write(tmp_path, "generate:\n  sampling:\n    temprature: 0.7\n")
    with pytest.raises(ConfigError) as e:
        load_recipe(p)
    assert f"{p}: generate.sampling.temprature: unknown key" in str(e.value)


def test_wrong_type_and_missing_required(tmp_path):
    p = write(tmp_path, "generate:\n  batch_size: lots\nteacher: {revision: main}\n")
    msg = str(pytest.raises(ConfigError, load_recipe, p).value)
    assert "generate.batch_size" in msg and "lots" in msg
    assert "teacher.path: required field missing" in msg


def test_data_needs_exactly_one_source(tmp_path):
    p = write(tmp_path, "data: {path: a.jsonl, hub: openai/gsm8k}\n")
    assert "exactly one of path / hub / synthetic" in str(pytest.raises(ConfigError, load_recipe, p).value)


def test_overrides_and_flags_apply_before_validation(tmp_path):
    p = write(tmp_path, "generate:\n  sampling: {n: 2}\n")
    cfg = load_recipe(p, ["generate.sampling.n=4", "generate.sampling.stop=['</s>', 'END']"],
                      flags={"generate.backend": "openai", "generate.output_dir": "123"})
    assert cfg.generate.sampling.n == 4 and cfg.generate.sampling.stop == ["</s>", "END"]
    assert cfg.generate.backend == "openai" and cfg.generate.output_dir == "123"
    with pytest.raises(ConfigError, match="generate.sampling.nn: unknown key"):
        load_recipe(p, ["generate.sampling.nn=4"])
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load_recipe(p, ["generate.sampling.n"])


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    p = write(tmp_path, "generate: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(p)


def test_need_names_missing_section():
    cfg = RecipeConfig()
    with pytest.raises(ConfigError, match="teacher: required"):
        cfg.need("teacher")


def test_stage_dirs_and_hash():
    cfg = validate({"run_dir": "r", "sft": {"output_dir": "elsewhere"}})
    assert str(cfg.stage_dir("generate")) == "r/generate" and str(cfg.stage_dir("sft")) == "elsewhere"
    a = stage_hash(cfg, "data", "generate", drop=("generate.batch_size",))
    b = stage_hash(validate({"run_dir": "r", "generate": {"batch_size": 99}}), "data", "generate",
                   drop=("generate.batch_size",))
    c = stage_hash(validate({"generate": {"sampling": {"n": 3}}}), "data", "generate",
                   drop=("generate.batch_size",))
    assert a == b != c
