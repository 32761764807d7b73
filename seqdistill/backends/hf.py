"""transformers `generate` backend: batched, left padding, CPU or GPU. Used on CPU and in tests."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..models import default_device, load_causal_lm, pick_dtype
from .base import Completion, Params, PromptIn, prompt_seed, truncate_at_stop

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


class _RowSampler:
    """Sampling with one random stream per sequence, as a logits processor for greedy `generate`.

    transformers samples the whole batch from one generator, so a sample would depend on which prompts share
    its batch (and the batches are sorted by length). Here row r (prompt b, sample j) draws from its own
    generator seeded by (seed, prompt id, j): it applies temperature, top-k and top-p to that row, draws one token
    and leaves only that token possible, so greedy decoding takes it. The t-th token of a sample is the t-th draw
    of its own stream, whatever else is in the batch."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, top_k: int | None):
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k

    def __call__(self, input_ids, scores):
        logits = scores.float() / self.temperature
        if self.top_k:
            kth = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            drop = cum - sorted_logits.softmax(-1) >= self.top_p  # keep the smallest prefix reaching top_p
            logits = logits.scatter(1, order, sorted_logits.masked_fill(drop, float("-inf")))
        probs = logits.softmax(-1).cpu()
        picks = torch.stack([torch.multinomial(probs[r], 1, generator=g) for r, g in enumerate(self.gens)])
        out = torch.full_like(scores, float("-inf"))
        return out.scatter(1, picks.to(scores.device), 0.0)


class _Progress:
    """A transformers streamer (put / end) that counts the tokens a batch has decoded so far, so a caller can show
    movement while a batch decodes: on a slow CPU one static batch takes minutes."""

    def __init__(self, callback, pad_id: int | None):
        self.callback, self.pad_id, self.tokens, self.prompt_seen = callback, pad_id, 0, False

    def put(self, value):
        if not self.prompt_seen:  # the first call carries the prompt
            self.prompt_seen = True
            return
        self.tokens += int((value != self.pad_id).sum()) if self.pad_id is not None else int(value.numel())
        self.callback(self.tokens)

    def end(self):
        pass


class HFBackend:
    name = "hf"
    can_score = True  # score(): the model's top-K at given completion positions (kd on-policy's teacher pass)
    reports_progress = True  # progress(tokens decoded so far in this batch) is called while a batch decodes
    local_weights = True  # loads the model from a folder here
    can_continue = True  # continues a given token sequence (budget forcing)
    static_batches = True  # one batch decodes until its longest row ends: callers sort prompts by length
    context_key = None  # the context is the model's max_position_embeddings
    max_logprobs_default = None  # no cap on top-K logprobs

    def __init__(self, model_path: str, tokenizer, dtype: str = "auto", device: str | None = None,
                 model=None, load_options: dict | None = None, **_):

        self.device = device or default_device()
        self.tok = tokenizer
        self.model = model or load_causal_lm(
            model_path, dtype=pick_dtype(dtype, self.device), **(load_options or {})).to(self.device)
        self.model.eval()
        self.progress = None
        log.info("hf backend: %s in %s on %s", model_path, self.model.dtype, self.device)
        eos = self.model.generation_config.eos_token_id
        eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
        self.eos_ids = sorted({*eos, self.tok.eos_token_id} - {None})

    @torch.inference_mode()
    def generate(self, prompts: list[PromptIn], p: Params) -> list[list[Completion]]:
        self.tok.padding_side = "left"  # not saved with tokenizers; decoder-only generation needs it
        ids = [pr.token_ids or self.tok(pr.text, add_special_tokens=False)["input_ids"] for pr in prompts]
        # each prompt repeated n times (row b * n + j is prompt b's sample j): greedy generate, which the per-row
        # sampler drives, takes one sequence per input row
        rows = [x for x in ids for _ in range(p.n)]
        enc = self.tok.pad({"input_ids": rows}, return_tensors="pt").to(self.device)
        width = enc["input_ids"].shape[1]
        from transformers import LogitsProcessorList

        # greedy decoding; sampling is _RowSampler's, one random stream per sequence (batch-independent)
        kwargs = dict(
            max_new_tokens=p.max_tokens, num_return_sequences=1, do_sample=False,
            temperature=None, top_p=None, top_k=None,
            pad_token_id=self.tok.pad_token_id, eos_token_id=self.eos_ids,
            return_dict_in_generate=True)
        if p.temperature > 0:
            seeds = [prompt_seed(p.seed, pr.id) + j for pr in prompts for j in range(p.n)]
            kwargs["logits_processor"] = LogitsProcessorList([_RowSampler(seeds, p.temperature, p.top_p, p.top_k)])
        if p.ignore_eos:  # every end-of-sequence id is masked until max_tokens
            kwargs["min_new_tokens"] = p.max_tokens
        elif p.stop:
            kwargs.update(stop_strings=p.stop, tokenizer=self.tok)
        capture = hook = None
        if p.logprobs:
            capture = _TopKCapture(p.logprobs)
            hook = self.model.get_output_embeddings().register_forward_hook(capture)
        if self.progress is not None:
            kwargs["streamer"] = _Progress(self.progress, self.tok.pad_token_id)
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
                text, hit = truncate_at_stop(text, [] if p.ignore_eos else p.stop)
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

    @torch.inference_mode()
    def score(self, seqs: list[tuple[list[int], list[int]]], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For each (prompt ids, completion ids): the model's raw (temperature-1) top-K (ids int32, logprobs
        float16), one row per completion token: the distribution that token was drawn from. One forward pass
        per sequence, the LM head only over the completion positions (logits_to_keep)."""
        out = []
        for p, c in seqs:
            ids = torch.tensor([list(p) + list(c)], device=self.device)
            # the last len(c) + 1 positions: the prompt's last token predicts c[0], ..., c[-2] predicts c[-1]
            logits = self.model(input_ids=ids, logits_to_keep=len(c) + 1, use_cache=False).logits[0, :len(c)]
            vals, idx = torch.log_softmax(logits.float(), -1).topk(k, -1)
            out.append((idx.to(torch.int32).cpu().numpy(), vals.to(torch.float16).cpu().numpy()))
        return out

    def close(self) -> None:
        del self.model
