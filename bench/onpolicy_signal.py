"""What the teacher's scores say about the student's own samples: does the signal on-policy KD trains on tell
right samples from wrong ones?

Reads scored round dirs (the student's samples with the teacher's top-K at every sampled token) and, per round
and split by the verifier's verdict on each sample, reports: the teacher's mean log-prob of the tokens the
student wrote (a token outside the teacher's top-K counts at the K-th log-prob, an upper bound), the share of
tokens outside the teacher's top-K, the share the teacher gives under 1% ("surprising" tokens), and the share of
samples with at least one such token. If wrong samples carry no more surprise than right ones, per-token KL to
the teacher has little to say about what makes an answer wrong.

With `--student MODEL`, also the student's own side on the first `--limit` samples of each dir: its entropy and
the teacher's (top-K + tail bucket) at the same positions, and the reverse KL the trainer minimises. Reverse KL
= -H(student) - E_student[log teacher]: when the student is sharper than the teacher, minimising it raises the
student's entropy, which lowers the accuracy of its temperature-1 samples without touching the teacher's signal.

  python bench/onpolicy_signal.py recipes/gsm8k/results/onpolicy/kd/rounds/*/scored [--student RUN/sft/model]
"""
from __future__ import annotations

import argparse
import glob
import json
import math
from pathlib import Path

import numpy as np


def token_scores(record: dict) -> np.ndarray:
    """The teacher's log-prob of each sampled token (the K-th log-prob where the token is outside the top-K)."""
    from seqdistill.records import decode_topk

    ids, lps = decode_topk(record)
    c = np.asarray(record["completion_ids"])
    hit = ids == c[:, None]
    return np.where(hit.any(1), (lps * hit).sum(1), lps[:, -1]), ~hit.any(1)


def summarize(rows: list[tuple[np.ndarray, np.ndarray]]) -> dict:
    if not rows:
        return {"samples": 0}
    lp = np.concatenate([r[0] for r in rows])
    out = np.concatenate([r[1] for r in rows])
    low = math.log(0.01)
    return {"samples": len(rows), "tokens": int(lp.size), "mean_teacher_logprob": round(float(lp.mean()), 4),
            "outside_topk": round(float(out.mean()), 4), "under_1pct": round(float((lp < low).mean()), 4),
            "samples_with_under_1pct": round(float(np.mean([(r[0] < low).any() for r in rows])), 3),
            "under_1pct_per_sample": round(float(np.mean([(r[0] < low).sum() for r in rows])), 2)}


def student_side(model_path: str, records: list[dict]) -> dict:
    """Mean per-token student entropy, teacher entropy (top-K + bucket) and bucketed reverse KL."""
    import torch
    from transformers import AutoModelForCausalLM

    from seqdistill.kd_loss import divergence, topk_categories
    from seqdistill.records import decode_topk

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    h_s, h_t, kl, n = 0.0, 0.0, 0.0, 0
    with torch.no_grad():
        for r in records:
            p, c = list(r["prompt_ids"]), list(r["completion_ids"])
            logits = model(torch.tensor([p + c])).logits[0, len(p) - 1:-1].float()
            ids, lps = (torch.from_numpy(x.copy()) for x in decode_topk(r))
            s_lp = torch.log_softmax(logits, -1)
            h_s += float(-(s_lp.exp() * s_lp).sum())
            t, s = topk_categories(logits, ids, lps)
            h_t += float(-(t.exp() * torch.where(t.exp() > 0, t, torch.zeros_like(t))).sum())
            kl += float(divergence(t, s, "reverse").sum())
            n += len(c)
    return {"samples": len(records), "tokens": n, "student_entropy": round(h_s / n, 4),
            "teacher_entropy_bucketed": round(h_t / n, 4), "reverse_kl_bucketed": round(kl / n, 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="scored round dirs (Parquet shards under data/)")
    ap.add_argument("--student", help="a student model folder: also measure its entropy and the reverse KL")
    ap.add_argument("--limit", type=int, default=32, help="samples per dir for --student")
    args = ap.parse_args()

    import pyarrow.parquet as pq

    from seqdistill.records import answer_text
    from seqdistill.verify import CORRECT, check_many

    report = {}
    for d in args.dirs:
        records = [r for f in sorted(glob.glob(str(d / "data" / "*.parquet"))) for r in pq.read_table(f).to_pylist()
                   if r["completion_ids"]]
        verdicts = check_many([(answer_text(r), r["gold"], r["task"]) for r in records], workers=1, timeout=5,
                              lenient=True)
        split = {"right": [], "wrong": []}
        for r, v in zip(records, verdicts):
            split["right" if v.status == CORRECT else "wrong"].append(token_scores(r))
        report[str(d)] = {k: summarize(v) for k, v in split.items()}
        if args.student:
            report[str(d)]["student"] = student_side(args.student, records[:args.limit])
        print(d, json.dumps(report[str(d)], indent=1))


if __name__ == "__main__":
    main()
