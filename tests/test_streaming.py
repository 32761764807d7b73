"""Streaming generation (issue 12): prompts are written as they complete, not per batch; in-flight work is
bounded; a crash loses only unfinished prompts and a rerun writes each prompt exactly once. The openai backend
is driven against a local server whose answer time depends on the prompt (a long-tailed workload)."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

import pyarrow.parquet as pq
import pytest
from fakes import QuietServer, send_json

from seqdistill.errors import SeqdistillError
from seqdistill.generate import run_generate
from seqdistill.store import Store


class SlowServer(BaseHTTPRequestHandler):
    """Answers a question containing SLOW after `slow_s`; everything else at once. Counts concurrency."""
    slow_s, fail_marker = 1.5, None
    lock = threading.Lock()
    now = peak = 0
    seen: list = []

    def log_message(self, *a):
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        user = [m for m in body["messages"] if m["role"] == "user"][-1]["content"]
        with SlowServer.lock:
            SlowServer.now += 1
            SlowServer.peak = max(SlowServer.peak, SlowServer.now)
            SlowServer.seen.append(user)
        try:
            if SlowServer.fail_marker and SlowServer.fail_marker in user:
                return self._send(400, {"error": "bad"})
            if "SLOW" in user:
                time.sleep(SlowServer.slow_s)
            self._send(200, {"choices": [{"message": {"content": f"seed={body['seed']}"}, "finish_reason": "stop"}],
                             "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
        finally:
            with SlowServer.lock:
                SlowServer.now -= 1

    def _send(self, code, payload):
        send_json(self, code, payload)



@pytest.fixture
def server():
    SlowServer.now = SlowServer.peak = 0
    SlowServer.seen, SlowServer.fail_marker = [], None
    srv = QuietServer(("127.0.0.1", 0), SlowServer)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    srv.shutdown()


def _cfg(make_cfg, tmp_path, url, **gen):
    questions = [{"id": f"q{i}", "question": f"question {i} {'SLOW' if i == 0 else ''}", "answer": "1"}
                 for i in range(12)]
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps(q) + "\n" for q in questions))
    return make_cfg(data={"path": str(data), "synthetic": None, "fields": {"id": "id"}, "task": "arithmetic"},
                    generate={"backend": "openai", "batch_size": 4, "sampling": {"n": 2, "max_tokens": 8},
                              "openai": {"base_url": url, "model": "m", "api_key_env": None, "concurrency": 8,
                                         "timeout_s": 10.0}, **gen})


def _shards(out):
    files = sorted(Store(out).shard_files(), key=lambda f: f.stat().st_mtime_ns)
    return [sorted(set(pq.read_table(f, columns=["prompt_id"]).column(0).to_pylist())) for f in files]


def test_fast_prompts_are_written_before_a_straggler_finishes(make_cfg, tmp_path, server):
    # batch_size 4 with q0 slow: a batch loop would hold q1-q3 back until q0 is done
    out = run_generate(_cfg(make_cfg, tmp_path, server, max_in_flight=6))
    shards = _shards(out)
    assert "q0" in shards[-1] and all("q0" not in s for s in shards[:-1])
    assert sorted(p for s in shards for p in s) == sorted(f"q{i}" for i in range(12))  # each prompt once
    assert all(len(s) <= 4 for s in shards)
    assert SlowServer.peak <= 8  # openai.concurrency bounds the requests in flight
    recs = list(Store(out).records())
    assert len(recs) == 24 and len({(r["prompt_id"], r["sample_index"]) for r in recs}) == 24


def test_in_flight_prompts_are_bounded(make_cfg, tmp_path, server):
    SlowServer.slow_s = 0.3
    run_generate(_cfg(make_cfg, tmp_path, server, max_in_flight=1))
    assert SlowServer.peak <= 2  # one prompt at a time: its n=2 samples


def test_flush_seconds_writes_a_partial_shard(make_cfg, tmp_path, server):
    # batch_size 100 would never fill; the time limit flushes what is finished
    SlowServer.slow_s = 1.5
    out = run_generate(_cfg(make_cfg, tmp_path, server, batch_size=100, flush_seconds=0.5))
    assert len(_shards(out)) >= 2


def test_failure_mid_stream_keeps_finished_prompts_and_resume_is_exactly_once(make_cfg, tmp_path, server):
    SlowServer.fail_marker = "question 7 "
    cfg = _cfg(make_cfg, tmp_path, server, batch_size=1)
    with pytest.raises(SeqdistillError):
        run_generate(cfg)
    on_disk = {p for s in _shards(cfg.stage_dir("generate")) for p in s}
    assert on_disk and "q7" not in on_disk  # finished prompts were kept, the failed one is not half-written
    SlowServer.fail_marker, SlowServer.seen = None, []
    out = run_generate(cfg)
    assert {s.split()[1] for s in SlowServer.seen if s.startswith("question")} == \
        {p[1:] for p in {f"q{i}" for i in range(12)} - on_disk}  # only the missing prompts were asked again
    recs = list(Store(out).records())
    assert len(recs) == 24 and len({(r["prompt_id"], r["sample_index"]) for r in recs}) == 24
