"""transformers `generate` backend: batched, left padding, CPU or GPU. Used on CPU and in tests."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..models import default_device, pick_dtype
from . import Completion, Params, PromptIn, prompt_seed, truncate_at_stop

log = logging.getLogger(__name__)


class _TopKCapture:
    """Forward hook on the LM head: keeps the top-K raw (temperature-1) logprobs of each decode step.

    A hook instead of `output_logits=True`, which would hold steps x batch x vocab floats (GBs for a 150k
    vocab); this keeps steps x batch x K."""

    def __init__(self, k: int):
        self.k, self.ids, self.logprobs = k, [], []

    def __call__(self, module, inputs, output):
        last = output[:, -1, :].float()
        lp = torch.log_softmax(last, dim=-1)
        vals, idx = lp.topk(self.k, dim=-1)
        self.ids.append(idx.to(torch.int32).cpu())
        self.logprobs.append(vals.to(torch.float16).cpu())


class HFBackend:
    name = "hf"

    def __init__(self, model_path: str, tokenizer, dtype: str = "auto", device: str | None = None,
                 model=None, load_options: dict | None = None, **_):
        from transformers import AutoModelForCausalLM

        self.device = device or default_device()
        self.tok = tokenizer
        self.model = model or AutoModelForCausalLM.from_pretrained(
            model_path, dtype=pick_dtype(dtype, self.device), **(load_options or {})).to(self.device)
        self.model.eval()
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.eos_ids = sorted({*eos, self.tok.eos_token_id} - {None})

    @torch.inference_mode()
    def generate(self, prompts: list[PromptIn], p: Params) -> list[list[Completion]]:
        self.tok.padding_side = "left"  # not saved with tokenizers; decoder-only generation needs it
        ids = [pr.token_ids or self.tok(pr.text, add_special_tokens=False)["input_ids"] for pr in prompts]
        enc = self.tok.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
        width = enc["input_ids"].shape[1]
        kwargs = dict(
            max_new_tokens=p.max_tokens, num_return_sequences=p.n, do_sample=p.temperature > 0,
            pad_token_id=self.tok.pad_token_id, eos_token_id=self.eos_ids,
            return_dict_in_generate=True)
        if p.temperature > 0:
            kwargs.update(temperature=p.temperature, top_p=p.top_p, top_k=p.top_k or 0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if p.stop:
            kwargs.update(stop_strings=p.stop, tokenizer=self.tok)
        torch.manual_seed(prompt_seed(p.seed, prompts[0].id))
        capture = hook = None
        if p.logprobs:
            capture = _TopKCapture(p.logprobs)
            hook = self.model.get_output_embeddings().register_forward_hook(capture)
        try:
            out = self.model.generate(**enc, **kwargs)
        finally:
            if hook is not None:
                hook.remove()
        seqs = out.sequences[:, width:].cpu()
        if capture is not None:
            cap_ids = torch.stack(capture.ids, 1).numpy()  # (B*n, steps, K)
            cap_lp = torch.stack(capture.logprobs, 1).numpy()
        results: list[list[Completion]] = []
        for b, pr in enumerate(prompts):
            row = []
            for j in range(p.n):
                r = b * p.n + j
                gen = seqs[r].tolist()
                end, reason = len(gen), "length"
                for t, tid in enumerate(gen):
                    if tid in self.eos_ids:
                        end, reason = t + 1, "stop"
                        break
                else:
                    while end and gen[end - 1] == self.tok.pad_token_id:  # rows that stopped on a stop string
                        end -= 1
                gen = gen[:end]
                text = self.tok.decode(gen, skip_special_tokens=True)
                text, hit = truncate_at_stop(text, p.stop)
                if hit:
                    reason = "stop"
                c = Completion(text=text, finish_reason=reason, completion_tokens=len(gen),
                               prompt_tokens=len(ids[b]), token_ids=gen)
                if capture is not None:
                    c.topk_ids = np.ascontiguousarray(cap_ids[r, :end])
                    c.topk_logprobs = np.ascontiguousarray(cap_lp[r, :end])
                row.append(c)
            results.append(row)
        return results

    def close(self) -> None:
        del self.model
