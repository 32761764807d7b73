"""Sentinel tests for recipe keys no behaviour test followed: each key is set to a value no default has and is
seen arriving where the code uses it (issue 19: a key that is read nowhere, or read under another name, fails
here, which a grep for the key's name cannot tell)."""

import json

import pytest
from fakes import rec, write_generate_output

from seqdistill import evaluate
from seqdistill import filter as filter_stage
from seqdistill.config import DataConfig, validate
from seqdistill.data import load_prompts
from seqdistill.store import Store


def spy(monkeypatch, module, name, seen, key):
    real = getattr(module, name)

    def wrapper(*args, **kwargs):
        seen.setdefault(key, []).append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def test_filter_ngram_sizes_length_floor_and_verifier_settings_reach_their_use(tmp_path, monkeypatch):
    bench = tmp_path / "bench.jsonl"
    bench.write_text(json.dumps({"question": "a question that is not among the training ones at all", "answer": "1"})
                     + "\n")
    text = "<think>\nforty and two make forty two in this small sum we do\n</think>\nSo \\boxed{42}."
    write_generate_output(tmp_path / "run" / "generate",
                          [rec("p1", 0, text, tokens=30), rec("p1", 1, text.replace("small", "tiny"), tokens=30),
                           rec("p2", 0, text, tokens=3)])
    cfg = validate({"run_dir": str(tmp_path / "run"), "filter": {
        "near_dup_ngram": 3, "decontam_ngram": 11, "min_tokens": 4, "num_workers": 1, "timeout_s": 7.5,
        "decontaminate": [{"path": str(bench), "name": "bench"}]}})
    seen = {}
    spy(monkeypatch, filter_stage, "OverlapIndex", seen, "index")
    spy(monkeypatch, filter_stage, "ngrams", seen, "ngrams")
    spy(monkeypatch, filter_stage, "check_many", seen, "check")
    out = filter_stage.run_filter(cfg)
    assert {args[1] for args, _ in seen["index"]} == {11}  # decontam_ngram
    assert {args[1] for args, _ in seen["ngrams"]} == {3}  # near_dup_ngram
    assert {(kw["workers"], kw["timeout"]) for _, kw in seen["check"]} == {(1, 7.5)}
    rejected = {r["prompt_id"]: r["reject_reason"] for r in Store(out, "rejected").records()}
    assert rejected.get("p2") == "too_short"  # min_tokens: 3 tokens < 4


def test_eval_overlap_ngram_and_verifier_settings_reach_their_use(monkeypatch, tmp_path):
    cfg = validate({"run_dir": str(tmp_path), "data": {"synthetic": {"n": 4}},
                    "eval": {"data": {"synthetic": {"n": 3, "split": "test"}}, "overlap_ngram": 5,
                             "num_workers": 1, "timeout_s": 3.25}})
    seen = {}
    spy(monkeypatch, evaluate, "OverlapIndex", seen, "index")
    report = evaluate.overlap_report(cfg, load_prompts(cfg.eval.data, where="eval.data"))
    assert {args[1] for args, _ in seen["index"]} == {5} and report["ngram"] == 5
    store = Store(tmp_path / "s")
    store.prepare("eval-generate", "h", {})
    store.write_shard([rec("q1", 0, "So \\boxed{42}.")], "part")
    spy(monkeypatch, evaluate, "check_many", seen, "check")
    evaluate.score_model(store, cfg)
    assert seen["check"] and {(kw["workers"], kw["timeout"]) for _, kw in seen["check"]} == {(1, 3.25)}


def test_eval_output_dir_is_where_eval_writes():
    cfg = validate({"run_dir": "r", "eval": {"output_dir": "/elsewhere/eval-1319"}})
    assert str(cfg.stage_dir("eval")) == "/elsewhere/eval-1319"


def test_synthetic_seed_draws_other_problems():
    a = load_prompts(DataConfig(synthetic={"n": 6, "seed": 0}))
    b = load_prompts(DataConfig(synthetic={"n": 6, "seed": 1}))
    assert [x["question"] for x in a] != [x["question"] for x in b]
    assert a == load_prompts(DataConfig(synthetic={"n": 6, "seed": 0}))


def test_hub_and_hub_config_reach_load_dataset(monkeypatch):
    import datasets

    seen = {}

    class Rows:
        def to_list(self):
            return [{"question": "q", "answer": "1"}]

    monkeypatch.setattr(datasets, "load_dataset",
                        lambda name, config, split: seen.update(name=name, config=config, split=split) or Rows())
    items = load_prompts(DataConfig(hub="org/sentinel", hub_config="main-cfg", split="val"))
    assert seen == {"name": "org/sentinel", "config": "main-cfg", "split": "val"} and items[0]["question"] == "q"


def test_load_in_4bit_is_refused_without_cuda_naming_the_key(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: QLoRA would load")
    from seqdistill.errors import ConfigError
    from seqdistill.train import load_student

    cfg = validate({"sft": {"lora": {"load_in_4bit": True}}})
    with pytest.raises(ConfigError, match=r"sft\.lora\.load_in_4bit"):
        load_student(str(tmp_path), cfg.sft, "sft")


def test_a_named_teachers_backend_and_sampling_override_generates():
    cfg = validate({"generate": {"backend": "hf", "sampling": {"n": 2}}, "teachers": [
        {"name": "a", "path": "m1", "backend": "openai", "sampling": {"n": 5}}, {"name": "b", "path": "m2"}]})
    specs = {name: (kind, s.n) for name, _, kind, s in cfg.teacher_specs()}
    assert specs == {"a": ("openai", 5), "b": ("hf", 2)}


def test_gguf_file_is_the_file_resolve_loads(tmp_path):
    from seqdistill.errors import ConfigError
    from seqdistill.models import resolve

    with pytest.raises(ConfigError, match=r"sentinel-q8\.gguf: GGUF file not found"):
        resolve(str(tmp_path), "sentinel-q8.gguf")  # without it the folder would be tried as an HF model


def test_the_probe_model_is_the_one_that_answers(monkeypatch, tmp_path, make_cfg, tiny):
    from seqdistill import probe

    seen = []
    monkeypatch.setattr(probe, "sample_into", lambda store, items, engine, mcfg, *a, **k: seen.append(mcfg.path))
    monkeypatch.setattr(probe, "resolve", lambda path, gguf=None: path)
    cfg = make_cfg(filter={"student_probe": {"model": {"path": "sentinel-proxy"}}})
    probe.probe_pass_rates(cfg, [rec("p1", 0, "x")], tmp_path / "f")  # the fake sampler writes nothing
    assert seen == ["sentinel-proxy"]


def test_ray_keys_reach_ray_and_max_retries_bounds_redispatch(monkeypatch, tmp_path):
    """A stand-in `ray` module records what the driver asks of it: local_num_cpus reaches ray.init,
    num_cpus/num_gpus_per_replica the actor options, replicas the actor count; with every replica dying,
    a chunk is dispatched max_retries + 1 times and then refused, naming it."""
    import sys
    import types

    from seqdistill.config import ModelConfig, PromptConfig, RayConfig, SamplingConfig
    from seqdistill.distributed import ray_generate_into
    from seqdistill.engine import Engine
    from seqdistill.errors import SeqdistillError
    from seqdistill.sampling import to_params

    seen = {"init": None, "options": None, "actors": 0, "runs": 0}

    class ActorDied(Exception):
        pass

    class Ref:
        pass

    class Handle:
        def __init__(self):
            seen["actors"] += 1
            self.run = types.SimpleNamespace(remote=self._run)

        def _run(self, *args):
            seen["runs"] += 1
            return Ref()

    class ActorClass:
        def options(self, **kw):
            seen["options"] = kw
            return types.SimpleNamespace(remote=lambda *a: Handle())

    def get(ref):
        raise ActorDied()

    fake = types.SimpleNamespace(
        is_initialized=lambda: False, init=lambda **kw: seen.update(init=kw), remote=lambda cls: ActorClass(),
        wait=lambda refs, num_returns: (refs[:1], refs[1:]), get=get, kill=lambda h: None,
        exceptions=types.SimpleNamespace(RayActorError=ActorDied, WorkerCrashedError=ActorDied))
    monkeypatch.setitem(sys.modules, "ray", fake)
    ray_cfg = RayConfig(replicas=3, num_cpus_per_replica=0.5, num_gpus_per_replica=2.0, chunk_size=4,
                        max_retries=2, local_num_cpus=5)
    store = Store(tmp_path / "g")
    store.prepare("generate", "h", {})
    items = [{"id": f"p{i}", "question": "q", "answer": "1"} for i in range(3)]
    with pytest.raises(SeqdistillError, match="chunk 0 failed on 3 replicas"):
        ray_generate_into(store, items, Engine("hf", ray=ray_cfg), ModelConfig(path="m"), 0, PromptConfig(),
                          to_params(SamplingConfig()), task="arithmetic", model="m", tag="t")
    assert seen["init"]["num_cpus"] == 5 and seen["init"]["address"] is None
    assert seen["options"] == {"num_cpus": 0.5, "num_gpus": 2.0}
    assert seen["runs"] == 3  # max_retries 2: the first try and two re-dispatches
    assert seen["actors"] == 3 + 2  # three replicas, and one new replica for each death that was retried


def test_num_threads_reaches_every_stage_that_computes(make_cfg, monkeypatch):
    from seqdistill import generate, train
    from seqdistill.sft import run_sft

    seen = []
    for module in (generate, train, evaluate):
        monkeypatch.setattr(module, "set_threads", lambda n, module=module: seen.append((module.__name__, n)))
    cfg = make_cfg(num_threads=3, sft={"max_steps": 1, "save_steps": 100},
                   filter={"require_correct": False, "drop_truncated": False, "require_boxed": False,
                           "drop_unclosed_think": False, "drop_garbage": False, "min_tokens": None},
                   eval={"data": {"synthetic": {"n": 2, "split": "test"}}, "models": ["student"],
                         "sampling": {"max_tokens": 8}, "speed_prompts": 0})
    generate.run_generate(cfg)
    filter_stage.run_filter(cfg)
    run_sft(cfg)
    evaluate.run_eval(cfg)
    assert set(seen) == {("seqdistill.generate", 3), ("seqdistill.train", 3), ("seqdistill.evaluate", 3)}


def test_compile_on_a_model_without_decoder_layers_is_refused_naming_the_key():
    import torch

    from seqdistill.errors import ConfigError
    from seqdistill.train import compile_layers

    with pytest.raises(ConfigError, match=r"kd\.compile: Linear has no model\.layers"):
        compile_layers(torch.nn.Linear(2, 2), "kd")
