import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM

from seqdistill.errors import ConfigError
from seqdistill.generate import run_generate
from seqdistill.kd import check_vocab, run_kd
from seqdistill.shrink import parse_layers, shrink_model
from seqdistill.sft import build_trainer

from conftest import build_model, build_tokenizer
from test_sft import kept_dir

TRAIN = {"max_steps": 8, "learning_rate": 5e-3, "max_length": 256, "per_device_train_batch_size": 4,
         "warmup_ratio": 0.0, "lr_scheduler_type": "constant", "save_steps": 1000}


def losses(final, key):
    log = json.loads((final.parent / "train_log.json").read_text())
    return [e[key] for e in log if key in e and "train_runtime" not in e]


def changed_params(before_dir, final):
    before = AutoModelForCausalLM.from_pretrained(before_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(final).state_dict()
    return [k for k in before if not torch.equal(before[k], after[k])], list(before)


def sharp_teacher(tiny, out):
    """A random teacher is near-uniform; scaling its final norm gives it confident, learnable preferences."""
    model = AutoModelForCausalLM.from_pretrained(tiny["teacher"])
    with torch.no_grad():
        model.model.norm.weight.mul_(30.0)
    model.save_pretrained(out)
    tiny["tok"].save_pretrained(out)
    return str(out)


def test_offline_kd_from_captured_logprobs(make_cfg, tiny, tmp_path):
    gen = {"logprobs": 8, "batch_size": 8, "sampling": {"n": 2, "max_tokens": 24, "temperature": 1.0}}
    cfg = make_cfg(data={"synthetic": {"n": 8}, "task": "arithmetic"}, generate=gen,
                   teacher={"path": sharp_teacher(tiny, tmp_path / "sharp")},
                   kd={**TRAIN, "alpha": 0.9, "temperature": 1.0})
    cfg.kd.dataset = str(run_generate(cfg))  # the teacher's own traces with their top-8 logprobs
    final = run_kd(cfg)
    kd, ce, total = losses(final, "kd_loss"), losses(final, "ce_loss"), losses(final, "loss")
    assert len(kd) == len(ce) == len(total) >= 8
    assert all(math.isfinite(x) for x in kd + ce + total)
    assert kd[-1] < kd[0] * 0.8
    changed, names = changed_params(tiny["student"], final)
    assert sorted(changed) == sorted(names)
    from seqdistill.store import Store

    assert Store(final.parent).manifest()["stage"] == "kd"


def test_online_kd_with_padded_teacher_vocab(make_cfg, tiny, tmp_path):
    # same tokenizer, teacher embedding rows padded like Qwen2.5 7B (152,064) vs 1.5B (151,936)
    padded = build_model(tmp_path / "t_pad", tiny["tok"], hidden=96, layers=2, vocab=len(tiny["tok"]) + 24,
                         seed=3)
    with torch.no_grad():
        m = AutoModelForCausalLM.from_pretrained(padded)
        m.model.norm.weight.mul_(30.0)
        m.save_pretrained(padded)
    kept_dir(tmp_path / "run" / "filter")
    cfg = make_cfg(teacher={"path": str(padded)}, kd={**TRAIN, "mode": "online", "chunk_size": 16})
    final = run_kd(cfg)
    kd = losses(final, "kd_loss")
    assert len(kd) >= 8 and kd[-1] < kd[0]
    assert losses(final, "ce_loss")


def test_online_chunked_loss_equals_unchunked(make_cfg, tiny, tmp_path):
    kept_dir(tmp_path / "run" / "filter")
    from seqdistill.kd import _load_teacher, _make_kd_trainer
    import functools

    vals = []
    for chunk in (7, 10_000):
        cfg = make_cfg(kd={**TRAIN, "mode": "online", "chunk_size": chunk})
        _, teacher = _load_teacher(cfg)
        trainer, _, _ = build_trainer(cfg, cfg.kd, "kd", tmp_path / f"o{chunk}", cfg.stage_dir("filter") / "kept",
                                      trainer_cls=functools.partial(_make_kd_trainer(), kd=cfg.kd, teacher=teacher))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
        model = trainer.model
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        vals.append((loss.item(), model.model.layers[0].mlp.up_proj.weight.grad.clone()))
    assert vals[0][0] == pytest.approx(vals[1][0], rel=1e-5)
    torch.testing.assert_close(vals[0][1], vals[1][1], atol=1e-6, rtol=1e-4)


def test_on_policy_mode_runs(make_cfg, tiny, tmp_path):
    kept_dir(tmp_path / "run" / "filter")
    cfg = make_cfg(kd={**TRAIN, "mode": "on-policy", "max_steps": 3, "max_new_tokens": 8,
                       "per_device_train_batch_size": 2})
    final = run_kd(cfg)
    assert len(losses(final, "loss")) >= 3
    changed, _ = changed_params(tiny["student"], final)
    assert changed


def test_mismatched_tokenizers_are_refused(tiny, tmp_path, monkeypatch):
    import conftest

    monkeypatch.setattr(conftest, "_corpus", lambda: ["completely different words here zebra yak"] * 50)
    other = build_tokenizer(tmp_path / "other")
    with pytest.raises(ConfigError, match="first at id") as e:
        check_vocab(other, tiny["tok"])
    assert "teacher" in str(e.value) and "student" in str(e.value)
    check_vocab(tiny["tok"], tiny["tok"])


def test_kd_online_refuses_mismatched_teacher_before_training(make_cfg, tiny, tmp_path, monkeypatch):
    import conftest

    monkeypatch.setattr(conftest, "_corpus", lambda: ["completely different words here zebra yak"] * 50)
    other_tok = build_tokenizer(tmp_path / "other")
    teacher = build_model(tmp_path / "other_teacher", other_tok)
    kept_dir(tmp_path / "run" / "filter")
    cfg = make_cfg(teacher={"path": str(teacher)}, kd={**TRAIN, "mode": "online"})
    with pytest.raises(ConfigError, match="tokenizers differ"):
        run_kd(cfg)
    assert not (tmp_path / "run" / "kd").exists()


def test_shrink_copies_chosen_layers_exactly(tiny, tmp_path):
    out = shrink_model(str(tiny["teacher"]), "every:2", tmp_path / "small")
    src = AutoModelForCausalLM.from_pretrained(tiny["teacher"]).state_dict()
    small = AutoModelForCausalLM.from_pretrained(out)
    assert small.config.num_hidden_layers == 2
    sd = small.state_dict()
    for new, old in [(0, 0), (1, 2)]:
        for suffix in ("self_attn.q_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"):
            assert torch.equal(sd[f"model.layers.{new}.{suffix}"], src[f"model.layers.{old}.{suffix}"])
    assert torch.equal(sd["model.embed_tokens.weight"], src["model.embed_tokens.weight"])
    assert torch.equal(sd["model.norm.weight"], src["model.norm.weight"])
    with torch.no_grad():
        logits = small(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, small.config.vocab_size) and torch.isfinite(logits).all()
    assert parse_layers("0, 3", 4) == [0, 3]
    for bad in ("0,9", "a,b", "1,1", ""):
        with pytest.raises(ConfigError):
            parse_layers(bad, 4)
    from seqdistill.errors import SeqdistillError

    with pytest.raises(SeqdistillError, match="refusing to overwrite"):
        shrink_model(str(tiny["teacher"]), "0", tmp_path / "small")
