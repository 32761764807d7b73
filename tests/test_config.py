import json
from pathlib import Path

import pytest
from conftest import schema_fields

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


# ------------------------------------------------------------------ issue 8: every schema key acts
def test_every_schema_key_is_read_by_some_code():
    import re
    from pathlib import Path

    from seqdistill.config import RecipeConfig

    pkg = Path(__file__).resolve().parent.parent / "seqdistill"
    src = "\n".join(p.read_text() for p in pkg.rglob("*.py") if p.name != "config.py")
    leaf = {path: path.rsplit(".", 1)[-1] for path, _ in schema_fields(RecipeConfig)}
    unread = sorted(path for path, name in leaf.items() if not re.search(rf"\.{name}\b|[\"']{name}[\"']", src))
    assert unread == [], f"schema keys no code reads: {unread}"


def test_revision_trust_remote_code_and_dtype_reach_every_load(make_cfg, tiny, monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seqdistill.backends.hf import HFBackend
    from seqdistill.models import load_options
    from seqdistill.train import load_inputs, load_student

    seen = []
    real_tok, real_model = AutoTokenizer.from_pretrained, AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(AutoTokenizer, "from_pretrained",
                        lambda *a, **k: seen.append(("tok", k)) or real_tok(*a, **k))
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained",
                        lambda *a, **k: seen.append(("model", k)) or real_model(*a, **k))
    student = {"path": str(tiny["student"]), "revision": "main", "trust_remote_code": True, "dtype": "bfloat16"}
    cfg = make_cfg(student=student)
    from test_sft import kept_dir

    kept_dir(__import__("pathlib").Path(cfg.run_dir) / "filter")
    path, tok, _, _ = load_inputs(cfg, cfg.sft, "sft", cfg.stage_dir("filter") / "kept")
    model = load_student(path, cfg.sft, "sft", cfg.student)
    assert model.dtype == torch.bfloat16
    HFBackend(path, tok, load_options=load_options(cfg.student))
    kinds = [k for k, _ in seen]
    assert "tok" in kinds and kinds.count("model") == 2
    for _, kw in seen:
        assert kw.get("revision") == "main" and kw.get("trust_remote_code") is True


def test_a_key_added_with_a_default_leaves_the_identity_unchanged():
    """Stage identity hashes sections at their non-default values: a later seqdistill that adds a key with a
    default (here a subclass with one more field) computes the same identity for every existing recipe."""
    from pydantic import Field, create_model

    from seqdistill.config import SamplingConfig
    from seqdistill.store import identity

    Newer = create_model("Newer", __base__=SamplingConfig, new_knob=(int, Field(7, description="added later")))
    assert identity(SamplingConfig(n=2, temperature=0.7)) == identity(Newer(n=2, temperature=0.7))
    assert identity(SamplingConfig(n=2)) != identity(SamplingConfig(n=3))
    assert identity(Newer(n=2, new_knob=8)) != identity(SamplingConfig(n=2))  # set, it counts


def test_manifests_of_the_earlier_identity_are_adopted_not_refused(make_cfg):
    """A finished generate written by seqdistill <= 0.1 (its hash covered every key) resumes under the new
    identity, without --overwrite and without regenerating anything."""
    import json

    from seqdistill.generate import run_generate
    from seqdistill.legacy import stage_hash as legacy_stage_hash
    from seqdistill.store import Store

    cfg = make_cfg()
    out = run_generate(cfg)
    drop = ("generate.output_dir", "generate.batch_size", "generate.shard", "generate.openai",
            "generate.max_in_flight", "generate.flush_seconds", "generate.ray")
    m = json.loads((out / "manifest.json").read_text())
    new = m["config_hash"]
    m["config_hash"] = legacy_stage_hash(cfg, "teacher", "data", "prompt", "generate", drop=drop)
    (out / "manifest.json").write_text(json.dumps(m))
    before = sorted(p.stat().st_mtime_ns for p in Store(out).shard_files())
    run_generate(cfg)
    m = json.loads((out / "manifest.json").read_text())
    assert m["config_hash"] == new and m["identity_migrated_from"]
    assert sorted(p.stat().st_mtime_ns for p in Store(out).shard_files()) == before


def test_filter_select_and_k_go_together(make_cfg):
    from seqdistill.errors import SeqdistillError

    with pytest.raises(SeqdistillError, match="select: shortest_k needs k"):
        make_cfg(filter={"select": "shortest_k"})
    with pytest.raises(SeqdistillError, match="k is only read with select"):
        make_cfg(filter={"k": 2})
    assert make_cfg(filter={"select": "first_k", "k": 1}).filter.k == 1


# ------------------------------------------------------------------ issue 19: one engine section
@pytest.mark.parametrize("section", ["generate", "eval", "probe"])
def test_every_engine_key_reaches_the_backend_it_configures(section, monkeypatch, tmp_path):
    """generate, eval and filter.student_probe share EngineConfig's keys; each key set to a sentinel arrives
    where sample_into uses it (open_backend, generate_into), through Engine.of, the one constructor."""
    from seqdistill import sampling
    from seqdistill.config import EngineConfig, EvalConfig, GenerateConfig, LocalEngineConfig, StudentProbe
    from seqdistill.engine import Engine, sample_into
    from seqdistill.store import Store

    cls = {"generate": GenerateConfig, "eval": EvalConfig, "probe": StudentProbe}[section]
    assert issubclass(cls, LocalEngineConfig) and (section == "probe") != issubclass(cls, EngineConfig)
    sec = cls(backend="vllm", batch_size=37, vllm={"sentinel": 41},
              **({"openai": {"base_url": "http://sentinel:1/v1"}} if section != "probe" else {}))
    seen = {}

    class FakeBackend:
        tok = None

        def close(self):
            seen["closed"] = True

    def fake_open(kind, model_cfg, openai, vllm_kwargs, seed):
        seen.update(kind=kind, openai=openai.base_url, vllm=vllm_kwargs, seed=seed)
        return FakeBackend(), None, "m"

    def fake_generate_into(store, items, prompts, backend, params, *, batch_size, **kw):
        seen.update(batch_size=batch_size, max_in_flight=kw["max_in_flight"])
        return {}

    from seqdistill import engine as eng

    monkeypatch.setattr(eng, "open_backend", fake_open)
    monkeypatch.setattr(eng, "generate_into", fake_generate_into)
    monkeypatch.setattr(sampling, "build_prompts", lambda *a, **k: [])
    monkeypatch.setattr(sampling, "context_limit", lambda *a, **k: None)
    extra = {"max_in_flight": 5} if section == "generate" else {}
    engine = Engine.of(sec, 3, **extra)
    sample_into(Store(tmp_path / "s"), [], engine, None, None, None, task="gsm8k", label="m", tag="t", desc="d",
                seed=11)
    want_openai = "http://sentinel:1/v1" if section != "probe" else EngineConfig().openai.base_url
    assert seen == {"kind": "vllm", "openai": want_openai, "vllm": {"sentinel": 41}, "seed": 11, "batch_size": 37,
                    "max_in_flight": extra.get("max_in_flight"), "closed": True}
    assert engine.threads == 3 and engine.ray is None


def test_the_probe_refuses_engine_keys_it_cannot_honour():
    from pydantic import ValidationError

    from seqdistill.config import StudentProbe

    with pytest.raises(ValueError, match="openai is not supported for the probe"):
        StudentProbe(backend="openai")
    for key in ("ray", "openai"):  # not in its schema at all: an unknown key, named
        with pytest.raises(ValidationError, match=key):
            StudentProbe(**{key: {}})


# ------------------------------------------------------------------ issue 19: sentinel per training key
TRL_ARG_OF = {"max_length": "max_length", "packing": "packing", "num_train_epochs": "num_train_epochs",
              "max_steps": "max_steps", "learning_rate": "learning_rate", "lr_scheduler_type": "lr_scheduler_type",
              "warmup_ratio": "warmup_steps", "weight_decay": "weight_decay",
              "per_device_train_batch_size": "per_device_train_batch_size",
              "gradient_accumulation_steps": "gradient_accumulation_steps",
              "gradient_checkpointing": "gradient_checkpointing", "bf16": "bf16", "logging_steps": "logging_steps",
              "save_steps": "save_steps", "save_total_limit": "save_total_limit", "report_to": "report_to",
              "seed": "seed"}
# keys read elsewhere, each with the test that shows it acts
TRAIN_KEYS_TESTED_ELSEWHERE = {
    "dataset": "test_sft.py::test_labels_mask_everything_but_assistant_turns",
    "output_dir": "test_config.py::test_stage_dirs_and_hash",
    "init_from": "test_sft.py::test_init_from_is_the_model_training_starts_from",
    "training_template": "test_sft.py::test_bad_inputs",
    "reasoning_format": "test_sft.py::test_reasoning_format_strip_trains_the_answer_without_the_think_block",
    "lora": "test_sft.py::test_lora_trains_only_adapters_and_merges",
    "use_liger_kernel": "test_config.py::test_every_training_key_reaches_trls_arguments_or_is_accounted_for",
    "compile": "test_sft.py::test_compiled_layers_train_like_eager_ones",
    "lr_scheduler_kwargs": "test_config.py::test_scheduler_kwargs_reach_the_trainer"}


def test_every_training_key_reaches_trls_arguments_or_is_accounted_for(tmp_path, monkeypatch):
    """Each TrainSection key set to a sentinel value arrives in the SFTConfig that TRL trains with (or is in
    the list of keys another test follows). A key added without either fails here."""
    from seqdistill.config import TrainSection
    from seqdistill.train import peft_config, trl_args

    assert set(TrainSection.model_fields) == set(TRL_ARG_OF) | set(TRAIN_KEYS_TESTED_ELSEWHERE)
    sentinel = {"max_length": 777, "packing": False, "num_train_epochs": 3.5, "max_steps": 123,
                "learning_rate": 3.3e-4, "lr_scheduler_type": "polynomial", "warmup_ratio": 0.07,
                "weight_decay": 0.013, "per_device_train_batch_size": 3, "gradient_accumulation_steps": 5,
                "gradient_checkpointing": True, "bf16": False, "logging_steps": 9, "save_steps": 11,
                "save_total_limit": 4, "report_to": "tensorboard", "seed": 1234}
    assert set(sentinel) == set(TRL_ARG_OF)
    args = trl_args(TrainSection(**sentinel), tmp_path)
    got = {key: getattr(args, TRL_ARG_OF[key]) for key in sentinel}
    got["report_to"] = got["report_to"][0] if isinstance(got["report_to"], list) else got["report_to"]
    assert got == sentinel
    lora = peft_config(TrainSection(lora={"r": 7, "alpha": 13, "dropout": 0.17, "target_modules": ["q_proj"]}))
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, set(lora.target_modules)) == (7, 13, 0.17, {"q_proj"})
    import importlib.util

    from seqdistill import train

    real_find_spec = importlib.util.find_spec
    for installed in (False, True):  # liger: passed on when installed, else warned and off
        monkeypatch.setattr(train.importlib.util, "find_spec", lambda name, installed=installed: (
            (object() if installed else None) if name == "liger_kernel" else real_find_spec(name)))
        assert trl_args(TrainSection(use_liger_kernel=True), tmp_path).use_liger_kernel is installed
    for where in TRAIN_KEYS_TESTED_ELSEWHERE.values():  # every named test exists
        file, _, name = where.partition("::")
        assert f"def {name}(" in (Path(__file__).parent / file).read_text(), where


def test_every_sampling_key_reaches_the_backends_params_and_defaults_agree():
    from dataclasses import asdict

    from seqdistill.backends import Params
    from seqdistill.config import SamplingConfig
    from seqdistill.sampling import to_params

    assert asdict(Params()) == asdict(to_params(SamplingConfig()))  # one set of defaults
    sentinel = dict(n=3, temperature=0.37, top_p=0.71, top_k=13, max_tokens=99, seed=5, stop=["##"],
                    thinking_budget=41, budget_close="</t>")
    assert set(sentinel) == set(SamplingConfig.model_fields)
    got = asdict(to_params(SamplingConfig(**sentinel), logprobs=7))
    assert got == {**sentinel, "logprobs": 7, "ignore_eos": False}  # ignore_eos: eval's speed timing sets it


@pytest.mark.parametrize("data,match", [
    ({"kd": {"mode": "offline", "temperature": 2.0}}, "tail: bucket with temperature: 2.0"),
    ({"kd": {"mode": "on-policy", "temperature": 0.5}}, "tail: bucket with temperature: 0.5"),
    ({"filter": {"min_tokens": 10, "max_tokens": 5}}, "min_tokens 10 > max_tokens 5"),
    ({"filter": {"min_tokens": -1}}, "filter.min_tokens"),
    ({"sft": {"lr_scheduler_type": "cosine_with_min_lr"}}, "needs lr_scheduler_kwargs with min_lr or min_lr_rate"),
    ({"kd": {"lr_scheduler_type": "warmup_stable_decay"}}, "needs lr_scheduler_kwargs with num_decay_steps"),
    ({"sft": {"lr_scheduler_type": "cosine", "lr_scheduler_kwargs": {"min_lr": 1e-6}}}, "'min_lr' is not read"),
])
def test_recipe_contradictions_are_refused_at_load(data, match):
    """Each used to load and then fail inside a stage (after earlier stages ran) or be silently wrong."""
    from seqdistill.config import validate

    with pytest.raises(ConfigError, match=match):
        validate(data)


def test_scheduler_kwargs_reach_the_trainer(make_cfg, tmp_path):
    from test_sft import kept_dir

    from seqdistill.sft import run_sft

    kept_dir(tmp_path / "run" / "filter")
    cfg = make_cfg(sft={"max_steps": 4, "max_length": 256, "learning_rate": 1e-2, "warmup_ratio": 0.0,
                        "save_steps": 1000, "lr_scheduler_type": "cosine_with_min_lr",
                        "lr_scheduler_kwargs": {"min_lr_rate": 0.5}})
    final = run_sft(cfg)
    lrs = [e["learning_rate"] for e in json.loads((final.parent / "train_log.json").read_text())
           if "learning_rate" in e]
    assert min(lrs) >= 0.5 * 1e-2 - 1e-9 and max(lrs) == pytest.approx(1e-2)  # floored at min_lr_rate
