"""The hf backend's decode loop (finished rows leave the batch and its KV cache) against transformers' static
`generate` (every row decodes until the batch's longest ends), in one run, on the demo's eval workload: the demo
recipe's 48 held-out problems and prompt, batches of 16 sorted by prompt length as the sampling layer sorts them,
greedy, 128 tokens. Prints tokens/s of each, their ratio and how many completions are identical.

    python bench/hf_refill.py [--model packaged:qwen2.5-coder-0.5b-instruct] [--prompts 48] [--batch 16] [--reps 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from seqdistill.backends import Params
from seqdistill.backends.hf import HFBackend
from seqdistill.config import load_recipe
from seqdistill.data import load_prompts
from seqdistill.models import load_tokenizer, resolve, set_threads
from seqdistill.sampling import build_prompts

DEMO = load_recipe(Path(__file__).resolve().parent.parent / "recipes/demo/cpu.yaml")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="packaged:qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=1, help="timed passes of each, alternated; the best is kept")
    args = ap.parse_args()
    set_threads(args.threads)
    path = resolve(args.model)
    tok = load_tokenizer(path)
    data = DEMO.eval.data.model_copy(update={"synthetic": DEMO.eval.data.synthetic.model_copy(
        update={"n": args.prompts})})
    prompts = sorted(build_prompts(DEMO.prompt, load_prompts(data), tok), key=lambda p: len(p.token_ids))
    batches = [prompts[i:i + args.batch] for i in range(0, len(prompts), args.batch)]
    be = HFBackend(path, tok)
    p = Params(n=1, temperature=0.0, max_tokens=args.max_tokens)

    def static(batch):  # what the backend did before: one transformers generate per batch
        tok.padding_side = "left"
        enc = tok.pad({"input_ids": [x.token_ids for x in batch]}, return_tensors="pt")
        out = be.model.generate(**enc, max_new_tokens=args.max_tokens, do_sample=False, temperature=None,
                                top_p=None, top_k=None, pad_token_id=tok.pad_token_id, eos_token_id=be.eos_ids)
        rows = out[:, enc["input_ids"].shape[1]:].tolist()
        return [r[:next((i + 1 for i, t in enumerate(r) if t in be.eos_ids), len(r))] for r in rows]

    def ours(batch):
        return [row[0].token_ids for row in be.generate(batch, p)]

    with torch.inference_mode():
        static(batches[0][:2]), ours(batches[0][:2])  # warm-up
        timing, outs = {}, {}
        for rep in range(args.reps):  # alternated, so drift on a shared machine hits both
            for name, fn in (("static", static), ("ours", ours)):
                t0 = time.perf_counter()
                outs[name] = [ids for b in batches for ids in fn(b)]
                timing.setdefault(name, []).append(time.perf_counter() - t0)
    tokens = sum(map(len, outs["ours"]))
    t_static, t_ours = min(timing["static"]), min(timing["ours"])
    same = sum(a == b for a, b in zip(outs["static"], outs["ours"]))
    print(f"{args.model}, {be.model.dtype}, {len(prompts)} prompts, batches of {args.batch}, {args.max_tokens} "
          f"tokens, greedy; {tokens} tokens generated (mean {tokens / len(prompts):.0f})")
    print(f"static transformers generate: {t_static:7.1f} s  {tokens / t_static:6.1f} tok/s")
    print(f"finished rows leave (ours)  : {t_ours:7.1f} s  {tokens / t_ours:6.1f} tok/s")
    print(f"speed-up ours/static: {t_static / t_ours:.2f}x; identical completions {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
