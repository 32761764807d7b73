"""kd.mode on-policy: rounds through the engine (sample -> teacher scores -> train), on tiny models with the hf
backend: what each round writes, that the teacher's rows are its real distribution at the student's tokens,
that rounds chain (the next samples come from the updated student), resume and refusal."""

import json
import math

import pytest
import torch
from conftest import build_model
from test_kd import sharp_teacher
from test_sft import kept_dir
from transformers import AutoModelForCausalLM

from seqdistill.errors import DataError, SeqdistillError
from seqdistill.kd import run_kd
from seqdistill.records import decode_topk
from seqdistill.store import Store

LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": "all-linear", "merge": True}
ONPOLICY = {"backend": "hf", "prompts_per_round": 4, "batch_size": 2, "teacher_topk": 5,
            "sampling": {"n": 1, "temperature": 1.0, "top_p": 1.0, "max_tokens": 10}}
KD = {"mode": "on-policy", "learning_rate": 5e-3, "max_length": 256, "per_device_train_batch_size": 2,
      "warmup_ratio": 0.0, "lr_scheduler_type": "constant", "save_steps": 1000, "lora": LORA}


def onpolicy_cfg(make_cfg, tiny, tmp_path, rounds=2, **kd):
    kept_dir(tmp_path / "run" / "filter", n=6)
    return make_cfg(teacher={"path": sharp_teacher(tiny, tmp_path / "sharp"), "dtype": "float32"},
                    kd={**KD, "onpolicy": {**ONPOLICY, "rounds": rounds}, **kd})


def rows(store_dir):
    return list(Store(store_dir).records())


def test_on_policy_defaults_are_reverse_kl_without_ce(make_cfg):
    k = make_cfg(kd={"mode": "on-policy"}).kd
    assert (k.divergence, k.alpha) == ("reverse", 1.0)
    k = make_cfg(kd={"mode": "on-policy", "divergence": "jsd", "alpha": 0.9}).kd
    assert (k.divergence, k.alpha) == ("jsd", 0.9)
    assert make_cfg(kd={"mode": "offline"}).kd.divergence == "forward"  # other modes keep their defaults


@pytest.mark.parametrize("kd,match", [
    ({"max_length": 64, "onpolicy": {"sampling": {"max_tokens": 64}}}, "max_tokens 64 must be below max_length 64"),
    ({"onpolicy": {"backend": "openai"}}, "onpolicy.backend: openai cannot score"),
    ({"lora": {"merge": False}}, "lora.merge: false with mode on-policy"),
    ({"onpolicy": {"sampling": {"thinking_budget": 4, "max_tokens": 8}}}, "thinking_budget"),
])
def test_on_policy_contradictions_are_refused_at_load(make_cfg, kd, match):
    with pytest.raises(SeqdistillError, match=match):
        make_cfg(kd={"mode": "on-policy", **kd})


def test_round_prompts_walk_every_prompt_once_per_pass():
    from seqdistill.onpolicy import round_items

    items = [{"id": f"p{i}"} for i in range(10)]
    seen = [x["id"] for r in range(5) for x in round_items(items, r, 4, seed=3)]  # 20 = two passes
    assert sorted(seen[:10]) == sorted(x["id"] for x in items) == sorted(seen[10:])
    assert seen[:10] != seen[10:]  # reshuffled each pass
    assert round_items(items, 2, 4, 3) == round_items(items, 2, 4, 3)  # a round's prompts are fixed


def test_hf_score_is_the_models_distribution_at_each_completion_token(tiny):
    from seqdistill.backends.hf import HFBackend

    model = AutoModelForCausalLM.from_pretrained(tiny["teacher"]).eval()
    backend = HFBackend(str(tiny["teacher"]), tiny["tok"], model=model, device="cpu")
    p, c = [5, 9, 11, 3], [7, 2, 8]
    ((ids, lps),) = backend.score([(p, c)], k=4)
    with torch.no_grad():
        full = torch.log_softmax(model(torch.tensor([p + c])).logits[0].float(), -1)
    want = full[len(p) - 1:len(p) + len(c) - 1].topk(4, -1)  # position t predicts token t + 1
    assert ids.shape == (3, 4) and ids.tolist() == want.indices.tolist()
    torch.testing.assert_close(torch.tensor(lps, dtype=torch.float32), want.values, atol=2e-3, rtol=0)


def test_rounds_sample_score_train_and_chain(make_cfg, tiny, tmp_path):
    cfg = onpolicy_cfg(make_cfg, tiny, tmp_path)
    final = run_kd(cfg)
    out = final.parent
    table = json.loads((out / "rounds.json").read_text())
    assert [r["round"] for r in table] == [0, 1]
    teacher = AutoModelForCausalLM.from_pretrained(cfg.teacher.path).eval()
    for r in (0, 1):
        rd = out / "rounds" / f"{r:03d}"
        samples, scored = rows(rd / "samples"), rows(rd / "scored")
        assert len(samples) == 4 and {s["model"] for s in samples} == {f"student-round-{r}"}
        assert sorted(s["prompt_id"] for s in scored) == sorted(s["prompt_id"] for s in samples if s["completion_ids"])
        for s in scored:  # the teacher's top-K at exactly the student's tokens
            ids, lps = decode_topk(s)
            assert ids.shape == (len(s["completion_ids"]), 5)
            p = s["prompt_ids"]  # same template here: the teacher's prompt ids are the student's
            with torch.no_grad():
                full = torch.log_softmax(teacher(torch.tensor([p + s["completion_ids"]])).logits[0], -1)
            want = full[len(p) - 1:len(p) + len(s["completion_ids"]) - 1].topk(5, -1).values
            torch.testing.assert_close(torch.tensor(lps), want, atol=0, rtol=1e-3)  # float16 storage
        log = json.loads((rd / "train" / "train_log.json").read_text())
        kd = [e["kd_loss"] for e in log if "kd_loss" in e]
        assert kd and all(math.isfinite(x) for x in kd)
        assert not any("ce_loss" in e for e in log)  # alpha 1: no CE term computed or logged
        assert table[r]["student_tokens"] == sum(s["completion_tokens"] for s in samples)
        assert table[r]["optimizer_steps"] >= 1
        assert all(isinstance(v, float) and v >= 0 for v in table[r]["seconds"].values()), table[r]["seconds"]
    # round 1 continued round 0's adapter: its start adapter is round 0's output, not a fresh one
    a0 = (out / "rounds" / "000" / "train" / "adapter" / "adapter_model.safetensors").read_bytes()
    a1 = (out / "rounds" / "001" / "train" / "adapter" / "adapter_model.safetensors").read_bytes()
    assert a0 != a1
    # round 0's merged weights were dropped once round 1 was done; the final model is round 1's
    assert not (out / "rounds" / "000" / "train" / "model").exists()
    assert (final / "config.json").is_file()
    m = Store(out).manifest()
    assert m["complete"] and m["rounds_done"] == 2 and m["optimizer_steps"] == sum(r["optimizer_steps"] for r in table)
    start = AutoModelForCausalLM.from_pretrained(tiny["student"]).state_dict()
    after = AutoModelForCausalLM.from_pretrained(final).state_dict()
    assert any(not torch.equal(start[k], after[k]) for k in start)

    # more rounds: the finished ones are kept as they are, only the new one runs
    stamp = {r: (out / "rounds" / f"{r:03d}" / "round.json").stat().st_mtime_ns for r in (0, 1)}
    cfg.kd.onpolicy.rounds = 3
    run_kd(cfg)
    assert {r: (out / "rounds" / f"{r:03d}" / "round.json").stat().st_mtime_ns for r in (0, 1)} == stamp
    assert [r["round"] for r in json.loads((out / "rounds.json").read_text())] == [0, 1, 2]
    assert Store(out).manifest()["rounds_done"] == 3
    # the same config again: nothing to do
    assert run_kd(cfg) == final


def test_a_kill_mid_round_resumes_without_resampling(make_cfg, tiny, tmp_path, monkeypatch):
    from seqdistill import onpolicy

    cfg = onpolicy_cfg(make_cfg, tiny, tmp_path, rounds=1)
    real_train = onpolicy.train_round

    def killed(*a, **kw):
        raise KeyboardInterrupt  # a kill after the samples and the teacher's scores were written

    monkeypatch.setattr(onpolicy, "train_round", killed)
    with pytest.raises(KeyboardInterrupt):
        run_kd(cfg)
    rd = tmp_path / "run" / "kd" / "rounds" / "000"
    before = {f.name: f.stat().st_mtime_ns for d in ("samples", "scored") for f in (rd / d / "data").iterdir()}
    calls = []
    monkeypatch.setattr(onpolicy, "train_round", real_train)
    monkeypatch.setattr(onpolicy, "sample_into", lambda *a, **kw: calls.append(a))
    final = run_kd(cfg)
    assert calls == []  # the round's samples were on disk: not drawn again
    assert {f.name: f.stat().st_mtime_ns for d in ("samples", "scored") for f in (rd / d / "data").iterdir()} == before
    assert (final / "config.json").is_file() and Store(final.parent).manifest()["complete"]


def test_a_changed_setting_is_refused_without_overwrite(make_cfg, tiny, tmp_path):
    cfg = onpolicy_cfg(make_cfg, tiny, tmp_path, rounds=1)
    run_kd(cfg)
    cfg.kd.onpolicy.teacher_topk = 3
    with pytest.raises(DataError, match="another config"):
        run_kd(cfg)
    final = run_kd(cfg, overwrite=True)
    (s,) = rows(final.parent / "rounds" / "000" / "scored")[:1]
    assert decode_topk(s)[0].shape[1] == 3


def test_mismatched_teacher_vocab_is_refused_before_any_round(make_cfg, tiny, tmp_path):
    import conftest

    other_tok = conftest.build_tokenizer(tmp_path / "other_tok")
    other_tok.add_tokens(["zzzextra"])
    teacher = build_model(tmp_path / "other", other_tok, hidden=32, layers=1)
    kept_dir(tmp_path / "run" / "filter", n=4)
    cfg = make_cfg(teacher={"path": str(teacher)}, kd={**KD, "onpolicy": ONPOLICY})
    try:
        run_kd(cfg)
    except SeqdistillError as exc:
        assert "tokenizers differ" in str(exc)
    else:  # the extra token landed beyond the shared ids only: still refused by vocab equality
        pytest.fail("a teacher with another vocabulary was accepted")
    assert not (tmp_path / "run" / "kd" / "rounds").exists()


def test_finished_rounds_resume_on_another_machine(make_cfg, tiny, tmp_path, monkeypatch):
    """The stage's identity is by content (the kept prompts, the start model's weights), not by file times: a run
    dir copied elsewhere (new mtimes, as a fresh machine rebuilding it from committed files) keeps its rounds."""
    import shutil

    from seqdistill import onpolicy

    cfg = onpolicy_cfg(make_cfg, tiny, tmp_path, rounds=1)
    run_kd(cfg)
    other = tmp_path / "elsewhere"
    shutil.copytree(tmp_path / "run", other, copy_function=shutil.copy)  # same bytes, new mtimes
    monkeypatch.setattr(onpolicy, "sample_into", lambda *a, **kw: pytest.fail("a finished round was sampled again"))
    monkeypatch.setattr(onpolicy, "train_round", lambda *a, **kw: pytest.fail("a finished round was trained again"))
    cfg2 = cfg.model_copy(deep=True)
    cfg2.run_dir = str(other)
    final = run_kd(cfg2)
    assert final == other / "kd" / "model" and Store(other / "kd").manifest()["complete"]


def test_an_unfinished_run_of_another_config_is_refused_not_wiped(make_cfg, tiny, tmp_path, monkeypatch):
    """A run killed mid-way (its manifest not complete) keeps its rounds when a changed setting meets it: refused
    without --overwrite. Its rounds sit below the stage dir, which the refusal check did not see at first."""
    from seqdistill import onpolicy

    cfg = onpolicy_cfg(make_cfg, tiny, tmp_path, rounds=2)
    real = onpolicy.train_round
    calls = []

    def second_killed(*a, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(onpolicy, "train_round", second_killed)
    with pytest.raises(KeyboardInterrupt):
        run_kd(cfg)
    rounds = tmp_path / "run" / "kd" / "rounds"
    before = sorted(p.relative_to(rounds) for p in rounds.rglob("*") if p.is_file())
    cfg.kd.learning_rate = 1e-3
    with pytest.raises(DataError, match="another config"):
        run_kd(cfg)
    assert sorted(p.relative_to(rounds) for p in rounds.rglob("*") if p.is_file()) == before
