"""The record layout every stage reads and writes: one row per teacher sample, `messages` ready for TRL, plus
the teacher's top-K logprobs. The top-K encoding lives here and only here (generate encodes, kd decodes)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from .think import split_reasoning

if TYPE_CHECKING:  # the record schema does not depend on the backends; only make_record's types name them
    from .backends import Completion, PromptIn

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
RECORD_SCHEMA = pa.schema([
    ("prompt_id", pa.string()), ("sample_index", pa.int32()), ("question", pa.string()),
    ("gold", pa.string()), ("task", pa.string()), ("messages", pa.list_(MESSAGE)),
    ("completion", pa.string()), ("reasoning", pa.string()), ("answer", pa.string()),
    ("think_closed", pa.bool_()), ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()),
    ("prompt_ids", pa.list_(pa.int32())), ("completion_ids", pa.list_(pa.int32())),
    # top-K teacher logprobs, row-major (completion_tokens, K): int32 ids and float16 logprobs as raw bytes
    ("logprobs_k", pa.int32()), ("teacher_topk_ids", pa.binary()), ("teacher_topk_logprobs", pa.binary()),
    ("model", pa.string()), ("backend", pa.string()), ("created", pa.float64()),
    ("budget_forced", pa.bool_()),  # sampling.thinking_budget ran out: budget_close was forced in
    ("teacher", pa.string()),  # the teacher's name (`teachers:`), "teacher" for a single teacher
])

# filter adds its verdict and decision to every record (kept/ and rejected/ share this layout)
FILTER_SCHEMA = RECORD_SCHEMA
for _name, _type in [("verdict", pa.string()), ("pred", pa.string()), ("verify_reason", pa.string()),
                     ("verify_detail", pa.string()), ("pass_rate", pa.float32()), ("reject_reason", pa.string()),
                     # "gold" (the data's answer), "majority" (the teacher's majority vote), None (no label)
                     ("label_source", pa.string()),
                     ("student_pass_rate", pa.float32())]:  # filter.student_probe's pass rate (else null)
    FILTER_SCHEMA = FILTER_SCHEMA.append(pa.field(_name, _type))

_IDS, _LOGPROBS = "<i4", "<f2"  # little-endian int32 ids, float16 logprobs: ~6 bytes per (token, k)


def encode_topk(ids: np.ndarray, logprobs: np.ndarray) -> dict:
    """The three record columns for a (completion_tokens, K) top-K capture."""
    return {"logprobs_k": int(ids.shape[1]), "teacher_topk_ids": ids.astype(_IDS).tobytes(),
            "teacher_topk_logprobs": logprobs.astype(_LOGPROBS).tobytes()}


def decode_topk(record: dict) -> tuple[np.ndarray, np.ndarray]:
    """(ids int32, logprobs float32), both (completion_tokens, K), from a record's top-K columns."""
    k = record["logprobs_k"]
    ids = np.frombuffer(record["teacher_topk_ids"], _IDS).reshape(-1, k)
    lps = np.frombuffer(record["teacher_topk_logprobs"], _LOGPROBS).reshape(-1, k).astype(np.float32)
    return ids, lps


def has_topk(record: dict) -> bool:
    return bool(record.get("logprobs_k") and record.get("completion_ids") and record.get("prompt_ids"))


def answer_text(record: dict) -> str:
    """The text a record is judged on: the whole assistant turn, prefill + completion (a `<think>` prefill opens
    the reasoning that the completion closes). filter, eval and the student probe all verify this, never the bare
    completion."""
    return record["messages"][-1]["content"]


def make_record(item: dict, pin: PromptIn, j: int, c: Completion, task: str, model: str, backend: str,
                teacher: str = "teacher") -> dict:
    full = (pin.prefill or "") + c.text  # the assistant turn as the student should learn it
    reasoning, answer, closed = split_reasoning(full)
    rec = {
        "prompt_id": item["id"], "sample_index": j, "question": item["question"], "gold": item["answer"],
        "task": task, "messages": pin.messages + [{"role": "assistant", "content": full}],
        "completion": c.text, "reasoning": reasoning, "answer": answer, "think_closed": closed,
        "finish_reason": c.finish_reason, "prompt_tokens": c.prompt_tokens,
        "completion_tokens": c.completion_tokens, "prompt_ids": pin.token_ids,
        "completion_ids": c.token_ids or None, "logprobs_k": None, "teacher_topk_ids": None,
        "teacher_topk_logprobs": None, "model": model, "backend": backend, "created": time.time(),
        "budget_forced": c.budget_forced, "teacher": teacher,
    }
    if c.topk_ids is not None:
        rec.update(encode_topk(c.topk_ids, c.topk_logprobs))
    return rec
