"""transformers `generate` backend: batched, left padding, CPU or GPU. Used on CPU and in tests."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import torch

from ..models import default_device, load_causal_lm, pick_dtype
from .base import Completion, Params, PromptIn, prompt_seed, truncate_at_stop

log = logging.getLogger(__name__)


class _RowSampler:
    """Sampling with one random stream per sequence. transformers samples a whole batch from one generator, so a
    sample would depend on which prompts share its batch (and the batches are sorted by length). Here row r
    (prompt b, sample j) draws from its own generator seeded by (seed, prompt id, j) after temperature, top-k and
    top-p: the t-th token of a sample is the t-th draw of its own stream, whatever else is in the batch."""

    def __init__(self, seeds: list[int], temperature: float, top_p: float, top_k: int | None):
        self.gens = [torch.Generator().manual_seed(s) for s in seeds]
        self.temperature, self.top_p, self.top_k = temperature, top_p, top_k

    def __call__(self, logits: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """logits (len(rows), vocab) for the sequences `rows` (indices into the seeds); one token id per row."""
        logits = logits / self.temperature
        if self.top_k:
            kth = logits.topk(min(self.top_k, logits.shape[-1]), dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1.0:
            sorted_logits, order = logits.sort(dim=-1, descending=True)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            drop = cum - sorted_logits.softmax(-1) >= self.top_p  # keep the smallest prefix reaching top_p
            logits = logits.scatter(1, order, sorted_logits.masked_fill(drop, float("-inf")))
        probs = logits.softmax(-1).cpu()
        return torch.cat([torch.multinomial(probs[i], 1, generator=self.gens[r]) for i, r in enumerate(rows)])


class HFBackend:
    name = "hf"
    can_score = True  # score(): the model's top-K at given completion positions (kd on-policy's teacher pass)
    reports_progress = True  # progress(tokens decoded so far in this batch) is called while a batch decodes
    local_weights = True  # loads the model from a folder here
    can_continue = True  # continues a given token sequence (budget forcing)
    static_batches = True  # a batch's rows start together (finished ones leave): callers sort prompts by length
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
        # transformers renamed the forward's KV-cache argument (past_key_values -> cache, 5.2x)
        self._cache_arg = "cache" if "cache" in inspect.signature(self.model.forward).parameters \
            else "past_key_values"

    @torch.inference_mode()
    def generate(self, prompts: list[PromptIn], p: Params) -> list[list[Completion]]:
        ids = [pr.token_ids or self.tok(pr.text, add_special_tokens=False)["input_ids"] for pr in prompts]
        # each prompt repeated n times: row b * n + j is prompt b's sample j
        rows = [x for x in ids for _ in range(p.n)]
        sampler = None
        if p.temperature > 0:
            seeds = [prompt_seed(p.seed, pr.id) + j for pr in prompts for j in range(p.n)]
            sampler = _RowSampler(seeds, p.temperature, p.top_p, p.top_k)
        gens, topk = self._decode(rows, p, sampler)
        results: list[list[Completion]] = []
        for b, pr in enumerate(prompts):
            row = []
            for j in range(p.n):
                r = b * p.n + j
                gen = gens[r]
                reason = "stop" if gen and gen[-1] in self.eos_ids and not p.ignore_eos else "length"
                text = self.tok.decode(gen, skip_special_tokens=True)
                text, hit = truncate_at_stop(text, [] if p.ignore_eos else p.stop)
                c = Completion(text=text, finish_reason="stop" if hit else reason, completion_tokens=len(gen),
                               prompt_tokens=len(ids[b]), token_ids=gen)
                if topk is not None:
                    c.topk_ids = torch.stack(topk[r][0]).numpy() if gen else np.zeros((0, p.logprobs), np.int32)
                    c.topk_logprobs = torch.stack(topk[r][1]).numpy() if gen else np.zeros((0, p.logprobs),
                                                                                             np.float16)
                row.append(c)
            results.append(row)
        return results

    def _decode(self, rows: list[list[int]], p: Params, sampler) -> tuple[list[list[int]], list | None]:
        """Decode every row until it ends, dropping finished rows from the batch (and the KV cache) as they end:
        transformers' static `generate` keeps computing a finished row until the batch's longest one ends, and
        on CPU a step's cost grows with its rows (bench/hf_refill.py measures the two in one run). Returns each
        row's token ids (through its end-of-sequence token) and, with p.logprobs, its raw (temperature-1) top-K
        at every step: (ids int32, logprobs float16) per token."""
        from transformers import DynamicCache

        self.tok.padding_side = "left"  # not saved with tokenizers; decoder-only batches need it
        enc = self.tok.pad({"input_ids": rows}, return_tensors="pt").to(self.device)
        mask = enc["attention_mask"]
        eos = torch.tensor(self.eos_ids, device=self.device)
        stops = [] if p.ignore_eos else [x for x in p.stop if x]
        tail = max((len(x) for x in stops), default=0) + 4  # tokens enough to hold any stop string
        gens: list[list[int]] = [[] for _ in rows]
        topk = [([], []) for _ in rows] if p.logprobs else None
        active = list(range(len(rows)))  # rows still decoding, in batch order
        cache, decoded = DynamicCache(), 0
        kv = {self._cache_arg: cache, "use_cache": True}
        out = self.model(input_ids=enc["input_ids"], attention_mask=mask,
                         position_ids=(mask.cumsum(-1) - 1).clamp(min=0), logits_to_keep=1, **kv)
        for step in range(p.max_tokens):
            logits = out.logits[:, -1, :].float()
            if topk is not None:  # the raw distribution, before any masking or temperature
                vals, idx = torch.log_softmax(logits, -1).topk(p.logprobs, -1)
                idx, vals = idx.to(torch.int32).cpu(), vals.to(torch.float16).cpu()
                for i, r in enumerate(active):
                    topk[r][0].append(idx[i])
                    topk[r][1].append(vals[i])
            if p.ignore_eos:
                logits[:, eos] = float("-inf")
            nxt = sampler(logits, active) if sampler else logits.argmax(-1).cpu()
            keep = []
            for i, r in enumerate(active):
                tid = int(nxt[i])
                gens[r].append(tid)
                ended = (tid in self.eos_ids and not p.ignore_eos) or step + 1 == p.max_tokens or (
                    stops and any(x in self.tok.decode(gens[r][-tail:], skip_special_tokens=True) for x in stops))
                if not ended:
                    keep.append(i)
            decoded += len(active)
            if self.progress is not None:
                self.progress(decoded)
            if not keep:
                break
            if len(keep) < len(active):  # drop the rows that ended, from the batch and the cache
                sel = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(sel)
                mask, nxt = mask[sel], nxt[keep]
                active = [active[i] for i in keep]
            mask = torch.cat([mask, mask.new_ones(len(active), 1)], dim=-1)
            out = self.model(input_ids=nxt.view(-1, 1).to(self.device), attention_mask=mask,
                             position_ids=mask.sum(-1, keepdim=True) - 1, **kv)
        return gens, topk

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
