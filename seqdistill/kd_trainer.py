"""Offline-KD rows and the KD trainer, shared by kd's modes: rows of a sequence's tokens with the teacher's top-K
at each completion token (from generate's capture, or the on-policy rounds' teacher pass), packing, the collator,
and the SFTTrainer subclass whose loss is (1 - alpha) CE + alpha T^2 divergence."""

from __future__ import annotations

import bisect
import functools
import logging

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .config import RecipeConfig
from .errors import ConfigError, DataError
from .kd_loss import IGNORE_INDEX, kd_and_ce_sums, kd_loss
from .records import decode_topk, has_topk
from .train import cpu_packed_micro_batches, dataset_files

log = logging.getLogger(__name__)
FUSED_BUCKET = True  # kd_loss.kd_and_ce_sums for the tail bucket at T 1; bench/kd_step.py times the reference too


# ------------------------------------------------------------------ offline data
def student_prompt_ids(record: dict, tok) -> list[int]:
    """The prompt as the *student* will see it: its own chat template, plus the prefill the teacher was
    given (the assistant text before the generated completion). The teacher's prompt_ids were rendered with
    the teacher's template; training the student on those teaches it a prompt format it never meets."""
    msgs = [m for m in record["messages"] if m["role"] != "assistant"]
    full = record["messages"][-1]["content"]
    prefill = full[:len(full) - len(record["completion"])] if full.endswith(record["completion"]) else ""
    text = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) + prefill
    return tok(text, add_special_tokens=False)["input_ids"]


def topk_dataset(records: list[dict], max_length: int, vocab: int, tok, packing: bool = False):
    """Rows of the student-template prompt + the teacher's exact completion tokens. `segments` lists
    [offset, count] per sequence in the row: where its stored top-K rows (one per completion token) go.
    With `packing`, sequences are packed into rows of <= max_length tokens (`pack_rows`)."""
    import datasets

    rows = []
    for r in records:
        p, c = student_prompt_ids(r, tok), r["completion_ids"]
        ids, lps = decode_topk(r)
        if len(ids) != len(c):
            raise DataError(f"record {r['prompt_id']}/{r['sample_index']}: {len(ids)} logprob rows for "
                            f"{len(c)} completion tokens")
        if ids.max(initial=0) >= vocab:
            raise ConfigError(f"teacher top-K ids reach {ids.max()} but the student has {vocab} logits")
        n = min(len(p) + len(c), max_length)
        m = max(0, n - len(p))  # completion tokens that fit
        rows.append({"input_ids": (list(p) + list(c))[:n], "labels": ([IGNORE_INDEX] * len(p) + list(c))[:n],
                     "position_ids": list(range(n)), "segments": [[len(p), m]],
                     "topk_ids": ids[:m].tolist(), "topk_logprobs": lps[:m].tolist()})
    return datasets.Dataset.from_list(pack_rows(rows, max_length) if packing else rows)


def pack_rows(rows: list[dict], max_length: int) -> list[dict]:
    """Best-fit decreasing (TRL's "bfd"): each sequence, longest first, goes into the fullest row it still fits
    in. A packed row concatenates its sequences; position ids restart at 0 for each, which is how the model
    (transformers' mask from position ids, with no attention mask) keeps them from attending to each other.
    A sequence's first token has no label (it is a prompt token), so no loss crosses a boundary."""
    bins: list[list[dict]] = []
    free: list[tuple[int, int]] = []  # (room left, bin), sorted: the best fit is the first with room >= n
    for r in sorted(rows, key=lambda r: -len(r["input_ids"])):
        n = len(r["input_ids"])
        j = bisect.bisect_left(free, (n, -1))
        if j < len(free):
            room, i = free.pop(j)
            bins[i].append(r)
        else:
            room, i = max_length, len(bins)
            bins.append([r])
        bisect.insort(free, (room - n, i))
    packed = []
    for members in bins:
        row = {"input_ids": [], "labels": [], "position_ids": [], "segments": [], "topk_ids": [],
               "topk_logprobs": []}
        for r in members:
            start = len(row["input_ids"])
            for key in ("input_ids", "labels", "position_ids", "topk_ids", "topk_logprobs"):
                row[key] += r[key]
            row["segments"] += [[start + o, m] for o, m in r["segments"]]
        packed.append(row)
    return packed


def collate_topk(rows: list[dict], pad_id: int) -> dict:
    """Right-padded rows with an attention mask; rows that hold packed sequences (more than one segment) are
    laid end to end in one row instead, with position ids and no attention mask (padding-free)."""
    if any(len(r["segments"]) > 1 for r in rows) and len(rows) > 1:
        rows = pack_rows(rows, sum(len(r["input_ids"]) for r in rows))
    packed = any(len(r["segments"]) > 1 for r in rows)
    width = max(len(r["input_ids"]) for r in rows)
    k = max(len(r["topk_ids"][0]) if r["topk_ids"] else 1 for r in rows)
    b = len(rows)
    batch = {"input_ids": torch.full((b, width), pad_id), "attention_mask": torch.zeros((b, width), dtype=torch.long),
             "position_ids": torch.zeros((b, width), dtype=torch.long),
             "labels": torch.full((b, width), IGNORE_INDEX), "topk_ids": torch.zeros((b, width, k), dtype=torch.long),
             "topk_logprobs": torch.zeros((b, width, k))}
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        batch["input_ids"][i, :n] = torch.tensor(r["input_ids"])
        batch["attention_mask"][i, :n] = 1
        batch["position_ids"][i, :n] = torch.tensor(r["position_ids"])
        batch["labels"][i, :n] = torch.tensor(r["labels"])
        done = 0
        for o, m in r["segments"]:
            if m:
                batch["topk_ids"][i, o:o + m] = torch.tensor(r["topk_ids"][done:done + m])
                batch["topk_logprobs"][i, o:o + m] = torch.tensor(r["topk_logprobs"][done:done + m])
            done += m
    if packed:
        del batch["attention_mask"]
    return batch


def load_kd_records(source: str) -> list[dict]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = [f for f in dataset_files(source) if f.endswith(".parquet")]
    if not files:
        raise DataError(f"kd.dataset: {source}: no parquet shards from generate/filter")
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
    return table.to_pylist()


def has_logprobs(records: list[dict]) -> bool:
    return bool(records) and all(has_topk(r) for r in records)


# ------------------------------------------------------------------ trainer
def make_kd_trainer():
    from trl import SFTTrainer

    class KDTrainer(SFTTrainer):
        """SFTTrainer whose loss is (1 - alpha) * CE + alpha * T^2 * divergence(teacher, student)."""

        def __init__(self, *args, kd, teacher=None, **kwargs):
            self.kd, self.teacher, self._kd_sums = kd, teacher, {}
            super().__init__(*args, **kwargs)
            if teacher is not None:
                self.teacher = teacher.to(self.args.device).eval()

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            """Token sums divided by the number of target tokens in the whole optimizer step.

            The Trainer passes `num_items_in_batch` (target tokens over all accumulated micro-batches, and over
            all processes when `average_tokens_across_devices`) and then does NOT divide by the accumulation
            steps itself, because it expects a loss normalised by that count, as a model's own loss is. So:
            sum / num_items_in_batch per micro-batch adds up to the token mean of the whole step, the same as
            one big batch. Under DDP each process's gradient is averaged over the world size W, while its
            sum was divided by the global count: multiply by W, as Trainer.compute_loss does for models.
            Without `num_items_in_batch` the Trainer divides by the accumulation steps: return a token mean."""
            k = self.kd
            labels = inputs["labels"][:, 1:]
            count = (labels != IGNORE_INDEX).sum()
            if "topk_ids" in inputs:
                # the LM head only where some row has a label (the prompt's logits would be masked anyway)
                keep = (labels != IGNORE_INDEX).any(0).nonzero().squeeze(1)
                # packed rows come without an attention mask: their position ids keep the sequences apart
                out = model(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"),
                            position_ids=inputs.get("position_ids"), use_cache=False, logits_to_keep=keep)
                logits, kept = out.logits, labels[:, keep]
                t_ids, t_lps = inputs["topk_ids"][:, 1:][:, keep], inputs["topk_logprobs"][:, 1:][:, keep]
                if FUSED_BUCKET and k.tail == "bucket" and k.temperature == 1.0 == k.teacher_temperature:
                    # one vocabulary pass each way for CE and KD together (kd_loss.kd_and_ce_sums); alpha 1
                    # (on-policy's default) computes no CE term at all
                    ce_sum, kd_sum = kd_and_ce_sums(logits, kept, t_ids, t_lps, kind=k.divergence, beta=k.jsd_beta,
                                                    with_ce=k.alpha < 1)
                else:
                    ce_sum = logits.new_zeros((), dtype=torch.float32) if k.alpha == 1 else F.cross_entropy(
                        logits.flatten(0, 1).float(), kept.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
                    kd_sum = kd_loss(logits, kept, topk_ids=t_ids, topk_logprobs=t_lps, temperature=k.temperature,
                                     kind=k.divergence, beta=k.jsd_beta, tail=k.tail, reduction="sum",
                                     teacher_temperature=k.teacher_temperature)
            else:
                out = None
                ce_sum, kd_sum = self._online(model, inputs, labels)
            total = (1 - k.alpha) * ce_sum + k.alpha * k.temperature ** 2 * kd_sum
            if num_items_in_batch is not None:
                loss = total / num_items_in_batch
                if self.args.average_tokens_across_devices:
                    loss = loss * self.accelerator.num_processes
            else:
                loss = total / count.clamp(min=1)
            n = count.clamp(min=1)
            if not torch.isfinite(loss):  # stop instead of silently training a broken student
                raise FloatingPointError(f"kd: loss is {loss.item()} at step {self.state.global_step} "
                                         f"(ce {(ce_sum / n).item()}, kd {(kd_sum / n).item()}); lower "
                                         "kd.learning_rate or check the data")
            mode = "train" if model.training else "eval"
            self._log_token_weighted(mode, ce_sum.item(), kd_sum.item(), count.item())
            if mode == "train":  # as SFTTrainer counts them: the logs' num_tokens, and tokens/s from it
                mask = inputs.get("attention_mask")
                real = mask.sum() if mask is not None else torch.tensor(inputs["input_ids"].numel())
                seen = self.accelerator.gather_for_metrics(real).sum().item()
                self._total_train_tokens += seen  # SFTTrainer's counter (train.ResumedTokenCount resumes it)
                self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return (loss, out) if return_outputs else loss

        def _log_token_weighted(self, mode: str, ce_sum: float, kd_sum: float, tokens: int) -> None:
            """ce_loss / kd_loss as the loss weighs them: token sums over every micro-batch since the last log,
            divided by their tokens (the mean of per-micro-batch means would over-weight short micro-batches).
            The Trainer averages each metric list at log time and then clears it: keep one running value."""
            acc = self._kd_sums.get(mode) if "kd_loss" in self._metrics[mode] else None
            if acc is None:  # cleared by the last log: start a new window
                acc = self._kd_sums[mode] = [0.0, 0.0, 0]
            acc[0], acc[1], acc[2] = acc[0] + ce_sum, acc[1] + kd_sum, acc[2] + tokens
            if self.kd.alpha < 1:  # not computed at alpha 1
                self._metrics[mode]["ce_loss"] = [acc[0] / max(acc[2], 1)]
            self._metrics[mode]["kd_loss"] = [acc[1] / max(acc[2], 1)]

        def _online(self, model, inputs, labels):
            """Token sums (ce, kd), chunked over positions; each chunk's logits are recomputed in backward."""
            k = self.kd
            fwd = {key: inputs[key] for key in ("input_ids", "attention_mask", "position_ids") if key in inputs}
            # through the (DDP / FSDP) wrapper's own forward, so its gradient hooks see this step; the head runs
            # on one position there (logits_to_keep) and on every position below, in chunks
            out = model(**fwd, output_hidden_states=True, logits_to_keep=1, use_cache=False)
            hs = out.hidden_states[-1][:, :-1]  # the decoder's final (normed) hidden states
            with torch.no_grad():
                ht = self.teacher.get_decoder()(**fwd).last_hidden_state[:, :-1]
            s_head = self.accelerator.unwrap_model(model).get_output_embeddings()
            t_head = self.teacher.get_output_embeddings()

            def chunk(h_s, h_t, lab):
                s_logits = s_head(h_s)
                with torch.no_grad():
                    t_logits = t_head(h_t)
                ce = F.cross_entropy(s_logits.flatten(0, 1).float(), lab.flatten(), ignore_index=IGNORE_INDEX,
                                     reduction="sum")
                kd = kd_loss(s_logits, lab, teacher_logits=t_logits, temperature=k.temperature,
                             kind=k.divergence, beta=k.jsd_beta, reduction="sum",
                             teacher_temperature=k.teacher_temperature)
                return ce, kd

            ce_sum = kd_sum = hs.new_zeros((), dtype=torch.float32)
            for a in range(0, hs.shape[1], k.chunk_size):
                sl = slice(a, a + k.chunk_size)
                ce_c, kd_c = checkpoint(chunk, hs[:, sl], ht[:, sl], labels[:, sl], use_reentrant=False)
                ce_sum, kd_sum = ce_sum + ce_c, kd_sum + kd_c
            return ce_sum, kd_sum

    return KDTrainer


def offline_trainer(cfg: RecipeConfig, records: list[dict], student_path: str, student_tok):
    """(trainer class, dataset, trainer args) of offline KD: rows of the teacher's tokens with their top-K rows,
    packed when kd.packing (on CPU one packed row per micro-batch, as sft: CPU attention is quadratic in a row)."""
    from transformers import AutoConfig

    k = cfg.kd
    opts = {} if cfg.student is None else {"trust_remote_code": cfg.student.trust_remote_code}
    if cfg.student is not None and not k.init_from and cfg.student.revision:
        opts["revision"] = cfg.student.revision  # the hub student itself, not a trained folder
    vocab = AutoConfig.from_pretrained(student_path, **opts).vocab_size
    ds = topk_dataset(records, k.max_length, vocab, student_tok, packing=k.packing)
    extra = {"packing": False, "assistant_only_loss": False, "dataset_kwargs": {"skip_prepare_dataset": True}}
    if k.packing:
        log.info("kd: %d sequences packed into %d rows of <= %d tokens", len(records), len(ds), k.max_length)
        if not torch.cuda.is_available() and k.per_device_train_batch_size > 1:
            extra.update(cpu_packed_micro_batches(k.per_device_train_batch_size, k.gradient_accumulation_steps))
    trainer_cls = functools.partial(make_kd_trainer(), kd=k, data_collator=functools.partial(
        collate_topk, pad_id=student_tok.pad_token_id))
    return trainer_cls, ds, extra
