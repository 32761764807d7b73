"""Hand-made stage outputs for tests that should not depend on a model's random text."""

import json
from http.server import ThreadingHTTPServer

from seqdistill.records import RECORD_SCHEMA
from seqdistill.store import Store


def rec(pid, j, completion, gold="42", question=None, finish="stop", tokens=None, task="arithmetic"):
    question = question or f"Problem {pid}: Ava has some apples. How many apples does Ava have now?"
    return {"prompt_id": pid, "sample_index": j, "question": question, "gold": gold, "task": task,
            "messages": [{"role": "user", "content": question}, {"role": "assistant", "content": completion}],
            "completion": completion, "reasoning": "", "answer": "", "think_closed": True,
            "finish_reason": finish, "prompt_tokens": 10,
            "completion_tokens": tokens if tokens is not None else len(completion.split()),
            "prompt_ids": None, "completion_ids": None, "logprobs_k": None, "teacher_topk_ids": None,
            "teacher_topk_logprobs": None, "model": "fake", "backend": "hf", "created": 0.0}


def write_generate_output(root, records):
    store = Store(root)
    store.prepare("generate", "fakehash", {"backend": "hf"})
    store.write_shard(records, "s0of1", RECORD_SCHEMA)
    store.update_manifest(complete=True, records=len(records))
    return root


class QuietServer(ThreadingHTTPServer):
    # a handler thread printing a traceback (a client that hung up) formats it with ast.parse while the main
    # thread may be compiling: CPython 3.11's AST recursion counter is not thread-safe ("AST constructor
    # recursion depth mismatch" later in the session)
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass


def send_json(handler, code: int, payload, headers: dict | None = None) -> None:
    """Answer an HTTP request of a fake server with a JSON body (a client that hung up is not an error)."""
    try:
        data = json.dumps(payload).encode()
        handler.send_response(code)
        for k, v in (headers or {}).items():
            handler.send_header(k, v)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
    except (BrokenPipeError, ConnectionResetError):
        pass
