"""vLLM on CPU: generated tokens/s in float32 against bfloat16 for one model, greedy, in one run (one engine per
dtype). Answers whether `dtype: auto` (the checkpoint's dtype, bf16 for the merged students) is the right choice
for the engine on this CPU: on a CPU without native bf16 (AVX2 only) vLLM's bf16 path converts every weight.

    .venv-vllm/bin/python bench/vllm_cpu_dtype.py MODEL [--prompts 32] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")


def tokens_per_s(model: str, dtype: str, prompts: list[list[int]], max_tokens: int) -> tuple[float, list]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, dtype=dtype, enforce_eager=True, max_model_len=1024, seed=0)
    sp = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True)
    llm.generate([{"prompt_token_ids": prompts[0]}], SamplingParams(max_tokens=4), use_tqdm=False)  # warm-up
    t0 = time.perf_counter()
    outs = llm.generate([{"prompt_token_ids": p} for p in prompts], sp, use_tqdm=False)
    wall = time.perf_counter() - t0
    ids = [list(o.outputs[0].token_ids) for o in outs]
    llm.llm_engine.engine_core.shutdown()
    del llm
    return sum(map(len, ids)) / wall, ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    from transformers import AutoTokenizer

    from seqdistill.hardware import cpu_class

    tok = AutoTokenizer.from_pretrained(args.model)
    prompts = [tok.apply_chat_template([{"role": "user", "content": f"Add {i} and {3 * i + 7}, then explain."}],
                                       add_generation_prompt=True, tokenize=True, return_dict=False)
               for i in range(args.prompts)]
    speed, ids = {}, {}
    for dtype in ("float32", "bfloat16"):
        speed[dtype], ids[dtype] = tokens_per_s(args.model, dtype, prompts, args.max_tokens)
        print(f"{dtype}: {speed[dtype]:.1f} generated tok/s ({args.prompts} prompts x {args.max_tokens} tokens)",
              flush=True)
    same = sum(a[:16] == b[:16] for a, b in zip(ids["float32"], ids["bfloat16"]))
    print(f"cpu: {cpu_class()}; fp32/bf16 speed: {speed['float32'] / speed['bfloat16']:.2f}x; "
          f"first 16 greedy tokens identical in {same}/{args.prompts} prompts")


if __name__ == "__main__":
    main()
