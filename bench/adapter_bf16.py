"""Write a bf16 copy of a trained LoRA adapter (half the bytes, for committing) and measure what it changes.

A LoRA r 32 adapter on all linear layers of the 0.5B student is 70 MB in fp32; the bf16 copy is 35 MB. This
loads the base model twice, applies the fp32 and the bf16 adapter, and on the first N questions of an eval set
reports the largest logit difference and whether the greedy next token agrees at every prompt position, so a
reader knows what the committed copy reproduces.

  python bench/adapter_bf16.py RUN/sft/adapter OUT_DIR --base PATH --data recipes/gsm8k/data/test.jsonl
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("adapter", type=Path, help="the trained adapter folder (adapter_config.json + safetensors)")
    ap.add_argument("out", type=Path, help="where the bf16 copy goes")
    ap.add_argument("--base", required=True, help="the base model folder the adapter was trained on")
    ap.add_argument("--data", type=Path, required=True, help="JSONL with a `question` field")
    ap.add_argument("-n", type=int, default=4, help="questions to compare on")
    args = ap.parse_args()

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from seqdistill.store import file_sha256

    src = args.adapter / "adapter_model.safetensors"
    weights = load_file(src)
    args.out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.bfloat16) for k, v in weights.items()}, args.out / "adapter_model.safetensors")
    shutil.copy(args.adapter / "adapter_config.json", args.out / "adapter_config.json")

    tok = AutoTokenizer.from_pretrained(args.base)
    questions = [json.loads(line)["question"] for line in args.data.open()][: args.n]
    logits = {}
    for name, folder in (("fp32", args.adapter), ("bf16", args.out)):
        base = AutoModelForCausalLM.from_pretrained(args.base, dtype=torch.float32)
        model = PeftModel.from_pretrained(base, folder).eval()
        with torch.no_grad():
            logits[name] = [model(**tok(q, return_tensors="pt")).logits[0] for q in questions]
    diff = max((a - b).abs().max().item() for a, b in zip(logits["fp32"], logits["bf16"]))
    agree = sum(int((a.argmax(-1) == b.argmax(-1)).sum()) for a, b in zip(logits["fp32"], logits["bf16"]))
    total = sum(a.shape[0] for a in logits["fp32"])
    report = {"source": str(src), "source_sha256": file_sha256(src), "source_bytes": src.stat().st_size,
              "bf16_bytes": (args.out / "adapter_model.safetensors").stat().st_size, "questions": len(questions),
              "max_abs_logit_diff": round(diff, 5), "greedy_agree": f"{agree}/{total}"}
    (args.out / "bf16_copy.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
