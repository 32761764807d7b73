"""The token-level distillation loss: one function for full-vocabulary and stored top-K teachers.

Top-K teachers (offline KD) know only K probabilities per position. The missing mass is handled explicitly:
- tail="bucket" (default): both distributions are coarse-grained to K+1 categories, the teacher's top-K
  tokens plus one "everything else" bucket holding 1 - sum(top-K). At T=1 this is the exact divergence
  between the coarse-grained distributions, a lower bound on the full one (data processing inequality),
  and it still pushes down student mass outside the teacher's support. With K = vocab it is the full KL.
- tail="renorm": teacher and student both renormalised over the teacher's top-K support; whatever the student
  puts outside the support is ignored. (DistillKit renormalises only the teacher's top-K and keeps the student's
  full softmax: not this.)
Temperature T softens both sides: the student as softmax(z/T); the teacher as p^(1/T) renormalised over its
categories (exact for a full-vocabulary teacher). The tail bucket needs T = 1: tempering the teacher's tail
needs how its mass is spread over the tokens we did not store, which we do not know (treating it as one token
gave 0.31 nats/token with student == teacher at K=5, T=2), so bucket with T != 1 is refused; renorm is exact
on the support at any T.
A teacher temperature T' (kd.teacher_temperature) tempers the teacher's target alone, after T: p^(1/T')
renormalised over its categories (T' < 1 sharpens it). Distilling from a teacher at T 1 pulls a student that is
sharper than the teacher toward the teacher's entropy; a sharpened target pulls it toward the teacher's choices
instead. Like T, it needs tail="renorm" (or a full-vocabulary teacher)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


def _kl(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) over the last axis, with 0 * log 0 = 0 (K = vocab gives a zero tail bucket)."""
    p = log_p.exp()
    diff = torch.where(p > 0, log_p - log_q, torch.zeros_like(log_p))
    return (p * diff).sum(-1)


def divergence(teacher_lp: torch.Tensor, student_lp: torch.Tensor, kind: str = "forward",
               beta: float = 0.5) -> torch.Tensor:
    """Per-position divergence between two log-distributions over the same categories."""
    if kind == "forward":
        return _kl(teacher_lp, student_lp)
    if kind == "reverse":
        return _kl(student_lp, teacher_lp)
    if kind == "jsd":  # generalized JSD as in TRL's GKD: beta*KL(t||m) + (1-beta)*KL(s||m)
        mix = torch.logsumexp(torch.stack([teacher_lp + math.log(beta), student_lp + math.log(1 - beta)]), 0)
        return beta * _kl(teacher_lp, mix) + (1 - beta) * _kl(student_lp, mix)
    raise ValueError(f"unknown divergence {kind!r}")


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, stable; exactly -inf at x == 0."""
    x = x.clamp(max=0.0)
    return torch.where(x > -0.693, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


class _BucketTerms(torch.autograd.Function):
    """(student log-probs at the teacher's top-K ids, student tail log-prob, student log-prob of the label) from
    one fp32 copy of the logits and two reductions, with the gradient written in one pass over the vocabulary.

    The reference (topk_categories + cross_entropy) makes a temperature copy, a scattered copy for the tail, and
    a third pass for CE, each with its own backward: on CPU that vocabulary-sized fp32 work made an offline-KD
    step 0.7x an SFT step. Here: z = logits in fp32 (one copy), lse = logsumexp(z); the K ids and the label are
    gathered; z is then masked in place at the K ids and its logsumexp is the tail (exact, as the reference).
    Backward, with p = softmax(z), G = sum of the K and tail gradients:
      d/dz_v = p_v (g_tail / P_tail - G - g_ce)  for v outside the K ids,  g_k - p_k (G + g_ce)  at the K ids,
    plus g_ce at the label: the same values as autograd through the reference (tests/test_kd_loss.py)."""

    @staticmethod
    def forward(ctx, logits, ids, labels):
        z = logits.float()
        if z.data_ptr() == logits.data_ptr():
            z = z.clone()  # fp32 logits: never mask the caller's tensor
        lse = torch.logsumexp(z, -1, keepdim=True)
        s_k = z.gather(-1, ids) - lse
        safe = labels.clamp(min=0).unsqueeze(-1)
        s_label = (z.gather(-1, safe) - lse).squeeze(-1)
        z.scatter_(-1, ids, float("-inf"))
        tail_lse = torch.logsumexp(z, -1, keepdim=True)
        s_tail = tail_lse - lse
        ctx.save_for_backward(z, lse, tail_lse, s_k, ids, safe)
        ctx.logits_dtype = logits.dtype
        return s_k, s_tail, s_label

    @staticmethod
    def backward(ctx, g_k, g_tail, g_label):
        z, lse, tail_lse, s_k, ids, safe = ctx.saved_tensors
        g_k = torch.zeros_like(s_k) if g_k is None else g_k.float()
        g_tail = torch.zeros_like(lse) if g_tail is None else g_tail.float()
        g_label = torch.zeros_like(lse) if g_label is None else g_label.float().unsqueeze(-1)
        total = g_k.sum(-1, keepdim=True) + g_tail + g_label
        # outside the K ids: p_v * (g_tail / P_tail - total); z is -inf at the K ids, so exp gives 0 there
        coef = torch.where(torch.isfinite(tail_lse), g_tail * torch.exp(lse - tail_lse), torch.zeros_like(lse))
        grad = torch.exp(z - lse).mul_(coef - total)
        grad.scatter_(-1, ids, g_k - torch.exp(s_k) * total)
        grad.scatter_add_(-1, safe, g_label)
        return grad.to(ctx.logits_dtype), None, None


def bucket_terms(student_logits: torch.Tensor, topk_ids: torch.Tensor, labels: torch.Tensor):
    """(s_k, s_tail, s_label) at temperature 1: see _BucketTerms."""
    return _BucketTerms.apply(student_logits, topk_ids.long(), labels)


def kd_and_ce_sums(student_logits: torch.Tensor, labels: torch.Tensor, topk_ids: torch.Tensor,
                   topk_logprobs: torch.Tensor, kind: str = "forward", beta: float = 0.5,
                   with_ce: bool = True, ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE sum, divergence sum) over labelled positions for a stored top-K teacher with the tail bucket at T 1:
    the same values as cross_entropy + kd_loss(tail="bucket"), in one vocabulary pass each way."""
    mask = labels != ignore_index
    s_k, s_tail, s_label = bucket_terms(student_logits, topk_ids, labels)
    t_k = topk_logprobs.float()
    t_tail = _log1mexp(torch.logsumexp(t_k, -1, keepdim=True)).clamp(min=-30.0)
    if topk_ids.shape[-1] >= student_logits.shape[-1]:
        t, s = t_k, s_k
    else:
        t, s = torch.cat([t_k, t_tail], -1), torch.cat([s_k, s_tail.clamp(min=-30.0)], -1)
    kd = (divergence(t, s, kind, beta) * mask).sum()
    ce = -(s_label * mask).sum() if with_ce else s_label.new_zeros(())
    return ce, kd


def topk_categories(student_logits: torch.Tensor, topk_ids: torch.Tensor, topk_logprobs: torch.Tensor,
                    temperature: float = 1.0, tail: str = "bucket",
                    teacher_temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(teacher_lp, student_lp) over the teacher's top-K support (+ the tail bucket)."""
    tempered = temperature != 1.0 or teacher_temperature != 1.0
    if tail == "bucket" and tempered and topk_ids.shape[-1] < student_logits.shape[-1]:
        raise ValueError("tail='bucket' is exact only at temperature 1 (the teacher's tempered tail mass is "
                         "unknown); use temperature 1 or tail='renorm'")
    z = student_logits.float() / temperature
    lse = torch.logsumexp(z, -1, keepdim=True)
    ids = topk_ids.long()
    s_k = z.gather(-1, ids) - lse
    t_k = topk_logprobs.float()
    if tail == "bucket" and ids.shape[-1] >= z.shape[-1]:
        t, s = t_k, s_k  # the support is the whole vocabulary: no tail, exact full divergence
    elif tail == "bucket":
        # student tail = logsumexp over the tokens outside the support: exact, and its gradient stays finite
        # even when the support holds ~all the mass (log(1 - sum p) would give 0 * inf = nan in backward)
        s_tail = torch.logsumexp(z.scatter(-1, ids, float("-inf")), -1, keepdim=True) - lse
        # teacher tail from its stored top-K (no grad); floored at e^-30 since float16 logprobs can sum to >= 1
        t_tail = _log1mexp(torch.logsumexp(t_k, -1, keepdim=True)).clamp(min=-30.0)
        t = torch.cat([t_k, t_tail], -1)
        s = torch.cat([s_k, s_tail.clamp(min=-30.0)], -1)
    elif tail == "renorm":
        t, s = t_k, s_k - torch.logsumexp(s_k, -1, keepdim=True)
    else:
        raise ValueError(f"unknown tail mode {tail!r}")
    if tempered or tail == "renorm":
        t = F.log_softmax(t / (temperature * teacher_temperature), -1)  # p^(1/T), renormalised over the categories
    return t, s


def kd_loss(student_logits: torch.Tensor, labels: torch.Tensor, *, teacher_logits: torch.Tensor | None = None,
            topk_ids: torch.Tensor | None = None, topk_logprobs: torch.Tensor | None = None,
            temperature: float = 1.0, kind: str = "forward", beta: float = 0.5, tail: str = "bucket",
            reduction: str = "mean", ignore_index: int = IGNORE_INDEX,
            teacher_temperature: float = 1.0) -> torch.Tensor:
    """Divergence between teacher and student at every position whose label is not ignore_index.

    Inputs are aligned position by position (shift for next-token prediction before calling).
    Give either teacher_logits (..., V) or topk_ids + topk_logprobs (..., K). Returns a scalar for
    reduction "mean" (over unmasked positions; 0 when all are masked) or "sum", a (...) tensor for "none"."""
    mask = labels != ignore_index
    if teacher_logits is not None:
        v = min(student_logits.shape[-1], teacher_logits.shape[-1])  # same tokenizer, padded embeddings
        t = F.log_softmax(teacher_logits[..., :v].float() / (temperature * teacher_temperature), -1)
        s = F.log_softmax(student_logits[..., :v].float() / temperature, -1)
    else:
        t, s = topk_categories(student_logits, topk_ids, topk_logprobs, temperature, tail, teacher_temperature)
    per_pos = divergence(t, s, kind, beta) * mask
    if reduction == "none":
        return per_pos
    if reduction == "sum":
        return per_pos.sum()
    return per_pos.sum() / mask.sum().clamp(min=1)
