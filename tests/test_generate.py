import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO, write_recipe

from seqdistill.errors import SeqdistillError
from seqdistill.generate import run_generate
from seqdistill.records import decode_topk, encode_topk
from seqdistill.store import Store


def records(out):
    return sorted(Store(out).records(), key=lambda r: (r["prompt_id"], r["sample_index"]))


def test_hf_generate_end_to_end_records_are_trl_ready(make_cfg, tiny):
    cfg = make_cfg()
    out = run_generate(cfg)
    recs = records(out)
    assert len(recs) == 6 * 2
    assert {r["sample_index"] for r in recs} == {0, 1}
    r = recs[0]
    assert [m["role"] for m in r["messages"]] == ["user", "assistant"]
    assert r["messages"][1]["content"] == r["completion"]
    assert r["completion_tokens"] == len(r["completion_ids"]) <= 12
    assert r["finish_reason"] in ("stop", "length")
    assert r["prompt_tokens"] == len(r["prompt_ids"])
    assert r["gold"] is not None and r["task"] == "arithmetic"
    m = Store(out).manifest()
    assert m["complete"] and m["records"] == 12 and m["backend"] == "hf" and "torch" in m["versions"]
    # the messages column loads with datasets as TRL will read it
    import datasets

    ds = datasets.load_dataset("parquet", data_files=str(out / "data" / "*.parquet"), split="train")
    assert ds[0]["messages"][0]["role"] == "user" and len(ds) == 12


def test_token_counts_match_tokenizer_and_finish_reasons(make_cfg, tiny):
    tok = tiny["tok"]
    greedy = {"batch_size": 3, "sampling": {"n": 1, "max_tokens": 16, "temperature": 1.0}}
    out = run_generate(make_cfg(generate=greedy))
    recs = records(out)
    for r in recs:
        assert r["finish_reason"] == "length" and r["completion_tokens"] == 16
        assert tok.decode(r["completion_ids"], skip_special_tokens=True) == r["completion"]
    # pick a stop string from the middle of a seeded output: the same rerun must stop there
    def first_new_piece(r):  # a token, after the first, whose text did not occur before it
        for k in range(1, len(r["completion_ids"])):
            piece = tok.decode(r["completion_ids"][k:k + 1])
            if piece.strip() and piece not in tok.decode(r["completion_ids"][:k]):
                return piece
    rec, stop = next((r, s) for r in recs if (s := first_new_piece(r)))
    text = rec["completion"]
    cfg = make_cfg(generate={**greedy, "output_dir": str(out) + "-stop", "sampling": {**greedy["sampling"],
                                                                                   "stop": [stop]}})
    stopped = {r["prompt_id"]: r for r in records(run_generate(cfg))}[rec["prompt_id"]]
    assert stopped["finish_reason"] == "stop"
    assert stop not in stopped["completion"] and text.startswith(stopped["completion"])


def test_sampling_is_reproducible_with_seed(make_cfg, tmp_path):
    a = records(run_generate(make_cfg(generate={"output_dir": str(tmp_path / "a")})))
    b = records(run_generate(make_cfg(generate={"output_dir": str(tmp_path / "b")})))
    assert [r["completion_ids"] for r in a] == [r["completion_ids"] for r in b]


def test_logprob_capture_shape_and_size(make_cfg):
    k = 5
    cfg = make_cfg(generate={"logprobs": k, "sampling": {"n": 1, "max_tokens": 10, "temperature": 0.0}})
    for r in records(run_generate(cfg)):
        ids, lps = decode_topk(r)
        assert ids.shape == (r["completion_tokens"], k) == lps.shape and r["logprobs_k"] == k
        assert len(r["teacher_topk_ids"]) + len(r["teacher_topk_logprobs"]) == 6 * k * r["completion_tokens"]
        assert (np.diff(lps, axis=1) <= 1e-3).all() and (lps <= 0).all()
        assert (ids[:, 0] == np.array(r["completion_ids"])).all()  # greedy picks the top-1 token


def test_refuses_other_config_without_overwrite(make_cfg):
    out = run_generate(make_cfg())
    before = sorted(p.name for p in (out / "data").iterdir())
    other = make_cfg(generate={"sampling": {"n": 1, "max_tokens": 12}})
    with pytest.raises(SeqdistillError, match="refusing to overwrite"):
        run_generate(other)
    assert sorted(p.name for p in (out / "data").iterdir()) == before
    run_generate(other, overwrite=True)
    assert len(records(out)) == 6


def test_rerun_of_finished_config_generates_nothing(make_cfg):
    cfg = make_cfg()
    out = run_generate(cfg)
    files = sorted((out / "data").iterdir())
    run_generate(cfg)
    assert sorted((out / "data").iterdir()) == files


@pytest.mark.slow  # a subprocess run, killed or timed: the full suite (.ci/run) runs it
def test_resume_after_kill_loses_nothing_and_duplicates_nothing(tmp_path, tiny):
    path = write_recipe(tmp_path, tiny, data={"synthetic": {"n": 40}, "task": "arithmetic"},
                        generate={"batch_size": 1, "sampling": {"n": 2, "max_tokens": 48, "temperature": 1.0}})
    cmd = [sys.executable, "-m", "seqdistill.cli", "generate", "-r", str(path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = tmp_path / "run" / "generate" / "data"
    deadline = time.time() + 120
    while time.time() < deadline and len(Store(shards.parent).shard_files()) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    partial = Store(shards.parent).count()
    assert 0 < partial < 80, "the kill must land mid-run"
    assert not Store(shards.parent).is_complete()
    first_files = set(Store(shards.parent).shard_files())  # data shards (pathlib's glob also sees .tmp-*)
    subprocess.run(cmd, cwd=REPO, env=env, check=True, capture_output=True)
    recs = records(shards.parent)
    keys = [(r["prompt_id"], r["sample_index"]) for r in recs]
    assert len(keys) == len(set(keys)) == 80
    assert first_files <= set(Store(shards.parent).shard_files())  # earlier shards kept, not regenerated
    assert Store(shards.parent).is_complete()


def test_two_shard_processes_fill_one_dir(make_cfg, tmp_path):
    out = tmp_path / "shared"
    a = make_cfg(generate={"output_dir": str(out), "shard": "0/2"})
    b = make_cfg(generate={"output_dir": str(out), "shard": "1/2"})
    run_generate(a)
    assert not Store(out).is_complete()
    run_generate(b)
    recs = records(out)
    assert Store(out).is_complete() and len({r["prompt_id"] for r in recs}) == 6 and len(recs) == 12


def test_topk_encoding_round_trips():
    ids = np.array([[5, 3, 1], [2, 9, 4]], dtype=np.int64)
    lps = np.array([[-0.1, -2.5, -3.0], [-0.7, -0.9, -5.25]], dtype=np.float64)
    cols = encode_topk(ids, lps)
    assert cols["logprobs_k"] == 3 and len(cols["teacher_topk_ids"]) == 4 * 6
    assert len(cols["teacher_topk_logprobs"]) == 2 * 6
    got_ids, got_lps = decode_topk(cols)
    assert got_ids.dtype == np.int32 and (got_ids == ids).all()
    np.testing.assert_allclose(got_lps, lps, atol=2e-3)  # float16 storage


def test_hf_samples_do_not_depend_on_their_batch(tiny):
    """The hf backend used to seed a whole batch with its first prompt's id: a prompt's samples changed with the
    prompts batched beside it. Each sequence now has its own random stream."""
    from seqdistill.backends import Params, PromptIn
    from seqdistill.backends.hf import HFBackend

    be = HFBackend(str(tiny["student"]), tiny["tok"], dtype="float32")
    tok = tiny["tok"]

    def pin(i, text):
        return PromptIn(id=i, messages=[], token_ids=tok(text, add_special_tokens=False)["input_ids"])

    p = Params(n=2, temperature=1.0, top_p=0.9, top_k=50, max_tokens=12, seed=3)
    alone = be.generate([pin("a", "Ava has three apples")], p)[0]
    batched = be.generate([pin("z", "Zed"), pin("a", "Ava has three apples"), pin("q", "a much longer prompt here")],
                          p)[1]
    assert [c.token_ids for c in alone] == [c.token_ids for c in batched]
    assert alone[0].token_ids != alone[1].token_ids  # two samples of one prompt differ
    other = be.generate([pin("a", "Ava has three apples")], Params(**{**p.__dict__, "seed": 4}))[0]
    assert [c.token_ids for c in other] != [c.token_ids for c in alone]


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_hf_ignore_eos_decodes_exactly_max_tokens(tiny, temperature):
    """Speed timing decodes the same number of tokens with every model (Params.ignore_eos): a sequence that would
    end at its first token still decodes max_tokens, greedy or sampled, and a stop string does not cut it."""
    from seqdistill.backends import Params, PromptIn
    from seqdistill.backends.hf import HFBackend

    be = HFBackend(str(tiny["student"]), tiny["tok"], dtype="float32")
    tok = tiny["tok"]
    prompts = [PromptIn(id=str(i), messages=[], token_ids=tok(t, add_special_tokens=False)["input_ids"])
               for i, t in enumerate(["Ava has three apples", "Zed"])]
    p = Params(n=2, temperature=temperature, max_tokens=7, seed=0)
    first = {c.token_ids[0] for row in be.generate(prompts, p) for c in row}
    be.eos_ids = sorted(set(be.eos_ids) | first)  # every sequence would now end at its first token
    assert {c.completion_tokens for row in be.generate(prompts, p) for c in row} == {1}
    fixed = be.generate(prompts, Params(**{**p.__dict__, "ignore_eos": True, "stop": ["a", " "]}))
    assert [[c.completion_tokens for c in row] for row in fixed] == [[7, 7], [7, 7]]
    assert all(c.finish_reason == "length" for row in fixed for c in row)
