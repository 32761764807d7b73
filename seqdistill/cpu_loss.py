"""SFT's loss on CPU: cross-entropy over the labelled positions' logits only.

TRL's SFTTrainer computes the loss with a chunked, fused LM head (never materialising the [tokens, vocab]
logits) that saves GPU memory. On CPU it projects every position, prompt tokens included, folds each vocabulary
tile with fp32 elementwise ops and accumulates the backward GEMMs in fp32, where this CPU's fp32 matmuls run at
a seventh of bf16's: measured with torch.profiler (bench/sft_step.py --profile) it was half of a training step
on the 0.5B student. Memory is not the constraint here (a 1,024-token row's labelled logits are ~0.4 GB in fp32),
so the plain way is faster: the model's own forward with `logits_to_keep` = the positions whose next token has a
label, the LM head in the autocast dtype, and F.cross_entropy in fp32. Same loss, same normalisation
(num_items_in_batch), same token accounting; the entropy metric is not computed."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from .kd_loss import IGNORE_INDEX


def labelled_ce(model, inputs: dict, num_items_in_batch=None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, labelled-token count, correct top-1 count). Goes through `model`'s forward (a DDP or PEFT wrapper
    included), asking it for the logits of the positions any row has a label after."""
    labels = inputs["labels"][:, 1:]
    keep = (labels != IGNORE_INDEX).any(0).nonzero().squeeze(1)
    kwargs = {k: v for k, v in inputs.items() if k != "labels"}
    out = model(**kwargs, use_cache=False, logits_to_keep=keep)
    target = labels[:, keep]
    logits = out.logits.float()
    total = F.cross_entropy(logits.flatten(0, 1), target.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
    valid = target != IGNORE_INDEX
    n = num_items_in_batch if num_items_in_batch is not None else valid.sum().clamp(min=1)
    with torch.no_grad():
        correct = ((logits.argmax(-1) == target) & valid).sum()
    return total / n, valid.sum(), correct


class LabelledLossSFTTrainer(SFTTrainer):
    """SFTTrainer whose training and eval loss is `labelled_ce` (the CPU path, see the module docstring)."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if return_outputs:  # logits for compute_metrics: TRL's path
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        loss, valid, correct = labelled_ce(model, inputs, num_items_in_batch)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())  # as TRL: DDP averages grads
        gather = self.accelerator.gather_for_metrics
        num_valid, num_correct = gather(valid).sum(), gather(correct).sum()
        self._metrics[mode]["mean_token_accuracy"].append((num_correct / num_valid).item() if num_valid else 0.0)
        if mode == "train":  # TRL's token count: every position of the row, padding-free or padded
            if "attention_mask" in inputs:
                n_tok = gather(inputs["attention_mask"].sum()).sum().item()
            else:
                n_tok = gather(torch.tensor(inputs["position_ids"].size(1))).sum().item()
            self._total_train_tokens += n_tok // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        return loss
