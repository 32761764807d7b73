import collections
import json
import math

import pytest
import torch
from conftest import build_model, build_tokenizer
from test_sft import kept_dir
from transformers import AutoModelForCausalLM

from seqdistill.errors import ConfigError, SeqdistillError
from seqdistill.generate import run_generate
from seqdistill.kd import check_vocab, run_kd
from seqdistill.train import build_trainer

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
    import functools

    from seqdistill.kd import _load_teacher
    from seqdistill.kd_trainer import make_kd_trainer

    vals = []
    for chunk in (7, 10_000):
        cfg = make_cfg(kd={**TRAIN, "mode": "online", "chunk_size": chunk})
        _, teacher = _load_teacher(cfg)
        trainer, _, _ = build_trainer(cfg, cfg.kd, "kd", tmp_path / f"o{chunk}", cfg.stage_dir("filter") / "kept",
                                      trainer_cls=functools.partial(make_kd_trainer(), kd=cfg.kd, teacher=teacher))
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
        model = trainer.model
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        vals.append((loss.item(), model.model.layers[0].mlp.up_proj.weight.grad.clone()))
    assert vals[0][0] == pytest.approx(vals[1][0], rel=1e-5)
    torch.testing.assert_close(vals[0][1], vals[1][1], atol=1e-6, rtol=1e-4)


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


# ------------------------------------------------------------------ issue 8: loss scale under accumulation
def _first_step(cfg, out):
    cfg.kd.output_dir = str(out)
    final = run_kd(cfg)
    log = json.loads((final.parent / "train_log.json").read_text())
    return log[0]


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_batch4_equals_batch1_times_accum4(make_cfg, tiny, tmp_path, mode):
    gen = {"logprobs": 8, "batch_size": 4, "sampling": {"n": 1, "max_tokens": 16, "temperature": 1.0}}
    base = {**TRAIN, "mode": mode, "max_steps": 1, "learning_rate": 1e-6, "alpha": 0.5, "packing": False}
    cfg = make_cfg(data={"synthetic": {"n": 4}, "task": "arithmetic"}, generate=gen, kd=base)
    dataset = str(run_generate(cfg))  # exactly 4 rows: one optimizer step sees all of them either way
    got = {}
    for bs, ga in [(4, 1), (1, 4)]:
        cfg = make_cfg(data={"synthetic": {"n": 4}, "task": "arithmetic"}, generate=gen,
                       kd={**base, "dataset": dataset, "per_device_train_batch_size": bs,
                           "gradient_accumulation_steps": ga})
        got[(bs, ga)] = _first_step(cfg, tmp_path / f"kd{bs}x{ga}")
    a, b = got[(4, 1)], got[(1, 4)]
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)  # was exactly 4x before the fix
    assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-3)


def test_loss_scales_with_the_world_size_when_tokens_are_averaged_across_devices(make_cfg, tiny, tmp_path,
                                                                                  monkeypatch):
    """DDP averages gradients over W processes while each process divided its token sum by the global
    count: the loss must be multiplied by W (what Trainer.compute_loss does for a model's own loss)."""
    import functools

    from seqdistill.kd import _load_teacher
    from seqdistill.kd_trainer import make_kd_trainer

    kept_dir(tmp_path / "run" / "filter")
    cfg = make_cfg(kd={**TRAIN, "mode": "online"})
    _, teacher = _load_teacher(cfg)
    trainer, _, _ = build_trainer(cfg, cfg.kd, "kd", tmp_path / "o", cfg.stage_dir("filter") / "kept",
                                  trainer_cls=functools.partial(make_kd_trainer(), kd=cfg.kd, teacher=teacher))
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(2)])
    n = int((batch["labels"][:, 1:] != -100).sum())
    mean = trainer.compute_loss(trainer.model, batch).item()
    one = trainer.compute_loss(trainer.model, batch, num_items_in_batch=torch.tensor(4 * n)).item()
    assert one == pytest.approx(mean / 4, rel=1e-5)
    monkeypatch.setattr(type(trainer.accelerator), "num_processes", property(lambda self: 2))  # world size 2
    two = trainer.compute_loss(trainer.model, batch, num_items_in_batch=torch.tensor(4 * n)).item()
    trainer.args.average_tokens_across_devices = False
    off = trainer.compute_loss(trainer.model, batch, num_items_in_batch=torch.tensor(4 * n)).item()
    assert two == pytest.approx(2 * one, rel=1e-5)
    assert off == pytest.approx(one, rel=1e-5)


def test_offline_kd_refuses_a_teacher_with_another_tokenizer(make_cfg, tiny, tmp_path, monkeypatch):
    gen = {"logprobs": 4, "batch_size": 4, "sampling": {"n": 1, "max_tokens": 8, "temperature": 1.0}}
    cfg = make_cfg(data={"synthetic": {"n": 2}, "task": "arithmetic"}, generate=gen, kd={**TRAIN, "mode": "offline"})
    dataset = str(run_generate(cfg))
    import conftest

    monkeypatch.setattr(conftest, "_corpus", lambda: ["completely different words here zebra yak"] * 50)
    other = build_model(tmp_path / "other_teacher", build_tokenizer(tmp_path / "other"))
    cfg = make_cfg(teacher={"path": str(other)}, kd={**TRAIN, "mode": "offline", "dataset": dataset})
    with pytest.raises(ConfigError, match="first at id"):
        run_kd(cfg)
    assert not (tmp_path / "run" / "kd").exists()


def test_offline_kd_renders_the_prompt_with_the_students_template(tiny, tmp_path):
    import numpy as np

    from seqdistill.kd_trainer import topk_dataset

    teacher_tok = tiny["tok"]
    student_tok = build_tokenizer(tmp_path / "stok")
    student_tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>"
                                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant: {% endif %}")
    msgs = [{"role": "user", "content": "What is 2 + 3?"}]
    prefill = "<think>\n"
    t_prompt = teacher_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) + prefill
    completion = "2 + 3 = 5\n</think>\n\\boxed{5}"
    c_ids = teacher_tok(completion, add_special_tokens=False)["input_ids"]
    k = 3
    topk = np.arange(len(c_ids) * k, dtype="<i4").reshape(-1, k) % 50
    rec = {"prompt_id": "p", "sample_index": 0, "messages": msgs + [{"role": "assistant",
                                                                      "content": prefill + completion}],
           "completion": completion, "prompt_ids": teacher_tok(t_prompt, add_special_tokens=False)["input_ids"],
           "completion_ids": c_ids, "logprobs_k": k, "teacher_topk_ids": topk.tobytes(),
           "teacher_topk_logprobs": np.full(topk.shape, -1.0, "<f2").tobytes()}
    row = topk_dataset([rec], 512, len(student_tok), student_tok)[0]
    s_prompt = student_tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) + prefill
    want = student_tok(s_prompt, add_special_tokens=False)["input_ids"]
    assert want != rec["prompt_ids"]  # the two templates really differ
    ((offset, count),) = row["segments"]
    assert row["input_ids"][:offset] == want and offset == len(want) and count == len(c_ids)
    assert row["input_ids"][offset:] == c_ids  # the teacher's exact completion tokens
    assert row["labels"][:offset] == [-100] * len(want) and row["labels"][offset:] == c_ids
    assert row["topk_ids"] == topk.tolist()  # one stored row per completion token, in order


@pytest.mark.parametrize("mode,key,value", [("on-policy", "chunk_size", 64), ("offline", "onpolicy", {"rounds": 2}),
                                            ("online", "tail", "renorm"), ("auto", "onpolicy", {"rounds": 2})])
def test_keys_a_kd_mode_does_not_read_are_refused(make_cfg, mode, key, value):
    """A key the mode does not read would be silently ignored: refused, naming the key."""
    with pytest.raises(SeqdistillError, match=f"kd: .*{key} is not used in kd.mode {mode}"):
        make_cfg(kd={"mode": mode, key: value})


def test_logged_ce_and_kd_are_token_weighted_under_accumulation(make_cfg, tiny, tmp_path):
    """Two micro-batches of 1 and 3 target tokens with per-token CE 1.0 and 3.0: the logged value is the token
    mean 2.5 (the loss's own weighting), not the mean of micro-batch means 2.0."""
    from seqdistill.kd_trainer import make_kd_trainer

    trainer = object.__new__(make_kd_trainer())
    trainer._kd_sums, trainer._metrics = {}, {"train": collections.defaultdict(list)}
    trainer.kd = make_cfg(kd={"alpha": 0.5}).kd
    trainer._log_token_weighted("train", ce_sum=1.0, kd_sum=0.5, tokens=1)
    trainer._log_token_weighted("train", ce_sum=9.0, kd_sum=1.5, tokens=3)
    assert trainer._metrics["train"]["ce_loss"] == [2.5] and trainer._metrics["train"]["kd_loss"] == [0.5]
    trainer._metrics["train"].clear()  # what the Trainer does after logging: a new window starts
    trainer._log_token_weighted("train", ce_sum=4.0, kd_sum=0.0, tokens=2)
    assert trainer._metrics["train"]["ce_loss"] == [2.0]


def test_student_load_options_reach_every_load(make_cfg, tiny, monkeypatch):
    """trust_remote_code / dtype of the student reach the KD-from-SFT load (a trained folder: no hub revision)
    and eval's parameter count of a trained student."""
    import transformers

    from seqdistill.evaluate import param_options
    from seqdistill.train import load_student

    cfg = make_cfg(student={"path": str(tiny["student"]), "trust_remote_code": True, "revision": "abc",
                            "dtype": "bfloat16"})
    seen = {}
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        lambda path, **kw: seen.update(kw) or "model")
    load_student("/some/sft/model", cfg.sft, "kd", cfg.student, from_folder=True)
    assert seen["trust_remote_code"] is True and "revision" not in seen and seen["dtype"] == torch.bfloat16
    load_student(str(tiny["student"]), cfg.sft, "sft", cfg.student)
    assert seen["revision"] == "abc"
    assert param_options(cfg, "sft", None) == {"trust_remote_code": True}
    assert param_options(cfg, "teacher", cfg.teacher)["trust_remote_code"] is False


def test_offline_kd_does_not_need_generation_markers(make_cfg, tiny):
    """Offline KD builds its own labels from the stored completion ids: a student template TRL has no training
    version of is refused for SFT (assistant-only loss needs the markers) but not for offline KD."""
    from transformers import AutoTokenizer

    from seqdistill.train import prepare_tokenizer

    tok = AutoTokenizer.from_pretrained(tiny["student"])
    tok.chat_template = ("{% for m in messages %}<|im_start|>{{ m['role'] }}: {{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant: {% endif %}")
    cfg = make_cfg()
    with pytest.raises(ConfigError, match="no \\{% generation %\\} markers"):
        prepare_tokenizer(tok, cfg.sft, "sft")
    assert prepare_tokenizer(tok, cfg.sft, "kd", markers=False).eos_token == "<|im_end|>"


def test_jsd_beta_and_temperature_reach_the_kd_loss(make_cfg, tiny, tmp_path, monkeypatch):
    """Sentinel (issue 19): kd.jsd_beta and kd.temperature set to values no default has arrive in every
    kd_loss call of a run."""
    from seqdistill import kd_trainer as kd_stage

    seen = []
    real = kd_stage.kd_loss
    monkeypatch.setattr(kd_stage, "kd_loss", lambda *a, **kw: seen.append((kw["beta"], kw["temperature"],
                                                                            kw["kind"])) or real(*a, **kw))
    kept_dir(tmp_path / "run" / "filter")
    cfg = make_cfg(teacher={"path": str(tiny["teacher"])},
                   kd={**TRAIN, "max_steps": 1, "mode": "online", "divergence": "jsd", "jsd_beta": 0.23,
                       "temperature": 1.7})
    run_kd(cfg)
    assert seen and set(seen) == {(0.23, 1.7, "jsd")}


def test_offline_loss_on_labelled_logits_equals_the_full_logits_reference(tiny):
    """Offline KD projects the LM head only at positions some row has a label after (logits_to_keep). Two
    padded rows whose labelled spans differ: CE and KD sums equal the reference computed on the full logits."""
    import types

    import torch.nn.functional as F

    from seqdistill.config import KDSection
    from seqdistill.kd_loss import kd_loss
    from seqdistill.kd_trainer import make_kd_trainer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny["student"]).eval()
    V, L, K = model.config.vocab_size, 12, 4
    ids = torch.randint(0, V, (2, L))
    attn = torch.ones(2, L, dtype=torch.long)
    attn[1, 9:] = 0  # row 1 is padded
    labels = torch.full((2, L), -100)
    labels[0, 4:10], labels[1, 6:9] = ids[0, 4:10], ids[1, 6:9]
    topk_ids = torch.randint(0, V, (2, L, K))
    topk_lp = torch.log_softmax(torch.randn(2, L, K), -1) - 0.1
    batch = {"input_ids": ids, "attention_mask": attn, "labels": labels, "topk_ids": topk_ids,
             "topk_logprobs": topk_lp}
    k = KDSection(mode="offline", alpha=0.5)
    trainer = object.__new__(make_kd_trainer())
    trainer.kd, trainer._kd_sums, trainer._metrics = k, {}, {"eval": collections.defaultdict(list)}
    trainer.args = types.SimpleNamespace(average_tokens_across_devices=False)
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=torch.tensor(9))
        full = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        lab = labels[:, 1:]
        ce = F.cross_entropy(full.flatten(0, 1).float(), lab.flatten(), ignore_index=-100, reduction="sum")
        kd = kd_loss(full, lab, topk_ids=topk_ids[:, 1:], topk_logprobs=topk_lp[:, 1:], temperature=1.0,
                     kind="forward", beta=0.5, tail="bucket", reduction="sum")
    assert loss.item() == pytest.approx(((0.5 * ce + 0.5 * kd) / 9).item(), rel=1e-5)


# ------------------------------------------------------------------ offline KD packing
def _topk_rows(n_rows, vocab, k=4, seed=0):
    """Unpacked offline rows of random lengths: a prompt (no labels) then a completion with a top-K row per
    token (what topk_dataset builds from generate's records)."""
    import random

    rng = random.Random(seed)
    rows = []
    for _ in range(n_rows):
        p, c = rng.randint(2, 9), rng.randint(1, 14)
        ids = [rng.randrange(vocab) for _ in range(p + c)]
        topk = [[rng.randrange(vocab) for _ in range(k)] for _ in range(c)]
        lps = [sorted((math.log(rng.uniform(0.01, 0.2)) for _ in range(k)), reverse=True) for _ in range(c)]
        rows.append({"input_ids": ids, "labels": [-100] * p + ids[p:], "position_ids": list(range(p + c)),
                     "segments": [[p, c]], "topk_ids": topk, "topk_logprobs": lps})
    return rows


def test_pack_rows_keeps_every_sequence_once_within_max_length_with_its_topk_at_its_tokens():
    from seqdistill.kd_trainer import collate_topk, pack_rows

    rows = _topk_rows(23, vocab=50)
    packed = pack_rows(rows, 32)
    assert all(len(r["input_ids"]) <= 32 for r in packed)
    assert len(packed) < len(rows)  # it packs
    # best-fit decreasing never leaves two rows that could have been one
    lens = sorted(len(r["input_ids"]) for r in packed)
    assert lens[0] + lens[1] > 32
    seen = []
    for r in packed:
        batch = collate_topk([r], pad_id=0)
        assert "attention_mask" not in batch or len(r["segments"]) == 1
        starts = [i for i, q in enumerate(r["position_ids"]) if q == 0]
        assert len(starts) == len(r["segments"])
        bounds = starts + [len(r["input_ids"])]
        for (a, b), (o, m) in zip(zip(bounds, bounds[1:]), r["segments"]):
            assert o + m == b and all(x == -100 for x in r["labels"][a:o])  # completion ends the sequence
            seq_topk = batch["topk_ids"][0, o:b].tolist()
            seen.append((tuple(r["input_ids"][a:b]), tuple(map(tuple, seq_topk))))
    want = [(tuple(r["input_ids"]), tuple(map(tuple, r["topk_ids"]))) for r in rows]
    assert sorted(seen) == sorted(want)


def test_packed_offline_loss_equals_the_unpacked_loss(tiny):
    """The same sequences packed into one row (position ids, no attention mask) or one row each: the same CE and
    KD token sums. Packed with an all-ones attention mask instead (sequences attending to each other) the loss
    differs, so the equality is the mask at work, not a coincidence."""
    import types

    from seqdistill.config import KDSection
    from seqdistill.kd_trainer import collate_topk, make_kd_trainer, pack_rows

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny["student"]).eval()
    rows = _topk_rows(5, vocab=model.config.vocab_size, seed=1)
    trainer = object.__new__(make_kd_trainer())
    trainer.kd, trainer._kd_sums = KDSection(mode="offline", alpha=0.5), {}
    trainer._metrics = {"eval": collections.defaultdict(list)}
    trainer.args = types.SimpleNamespace(average_tokens_across_devices=False)
    n = torch.tensor(sum(r["segments"][0][1] for r in rows))  # labelled targets (a prompt is >= 2 tokens)
    with torch.no_grad():
        unpacked = sum(trainer.compute_loss(model, collate_topk([r], 0), num_items_in_batch=n) for r in rows)
        (row,) = pack_rows(rows, 10_000)
        batch = collate_topk([row], 0)
        packed = trainer.compute_loss(model, dict(batch), num_items_in_batch=n)
        leaky = trainer.compute_loss(model, {**batch, "attention_mask": torch.ones_like(batch["input_ids"])},
                                     num_items_in_batch=n)
        # two packed rows in one batch are laid end to end: the same loss again
        halves = pack_rows(rows[:2], 10_000) + pack_rows(rows[2:], 10_000)
        two = trainer.compute_loss(model, collate_topk(halves, 0), num_items_in_batch=n)
    assert packed.item() == pytest.approx(unpacked.item(), rel=1e-4)
    assert two.item() == pytest.approx(unpacked.item(), rel=1e-4)
    assert abs(leaky.item() - unpacked.item()) > 1e-3


def test_offline_kd_trains_on_packed_rows(make_cfg, tiny, tmp_path, caplog):
    gen = {"logprobs": 8, "batch_size": 8, "sampling": {"n": 2, "max_tokens": 24, "temperature": 1.0}}
    cfg = make_cfg(data={"synthetic": {"n": 8}, "task": "arithmetic"}, generate=gen,
                   teacher={"path": sharp_teacher(tiny, tmp_path / "sharp")},
                   kd={**TRAIN, "alpha": 0.9, "packing": True, "per_device_train_batch_size": 2, "max_length": 1000})
    cfg.kd.dataset = str(run_generate(cfg))
    with caplog.at_level("INFO", logger="seqdistill.kd_trainer"):
        final = run_kd(cfg)
    (msg,) = [r.getMessage() for r in caplog.records if "packed into" in r.getMessage()]
    n_rows = int(msg.split(" packed into ")[1].split()[0])
    assert msg.startswith("kd: 16 sequences") and n_rows < 16
    kd = losses(final, "kd_loss")
    assert all(math.isfinite(x) for x in kd) and kd[-1] < kd[0] * 0.8


