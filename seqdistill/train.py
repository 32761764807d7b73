"""Trainer plumbing shared by the sft and kd stages: training data, the student's tokenizer and template checks,
TRL arguments, LoRA, the student model, throughput logging, resume, atomic saving, and the stage runner that
refuses stale or foreign output. Stages call `train_stage`; nothing here knows which stage it serves."""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import logging
import os
import re
import time
from pathlib import Path

from . import legacy
from .config import RecipeConfig, TrainSection, stage_hash
from .errors import ConfigError, DataError
from .models import load_causal_lm, load_options, load_tokenizer, resolve, set_threads, stop_at_end_of_turn
from .store import Store, atomic_write_text, identity, input_fingerprint, readable_by_umask, writer_scope

log = logging.getLogger(__name__)

THINK = re.compile(r"<think>.*?</think>\s*", re.DOTALL)


# ------------------------------------------------------------------ data
def dataset_files(path: str | Path) -> list[str]:
    p = Path(path)
    if p.is_dir():
        for sub in (p / "kept", p / "data", p):
            files = sorted(glob.glob(str(sub / "*.parquet")) + glob.glob(str(sub / "*.jsonl")))
            if files:
                return files
        raise DataError(f"{p}: no .parquet or .jsonl files (expected a filter output dir or a kept/ dir)")
    if p.is_file():
        return [str(p)]
    return []


def load_messages(source: str, reasoning_format: str = "keep", key: str = "sft.dataset"):
    """A `datasets.Dataset` with one `messages` column, from a local dir/file or a hub name."""
    import datasets

    files = dataset_files(source)
    if files and files[0].endswith(".parquet"):
        import pyarrow.parquet as pq

        files = [f for f in files if pq.ParquetFile(f).metadata.num_rows > 0]  # filter may write empty shards
        if not files:
            raise DataError(f"{key}: {source} is empty: nothing to train on (did filter keep anything? "
                            "see its stats.json)")
    if files:
        kind = "parquet" if files[0].endswith(".parquet") else "json"
        ds = datasets.load_dataset(kind, data_files=files, split="train")
    else:
        if Path(source).is_absolute() or source.startswith("."):
            raise DataError(f"{key}: {source} not found")
        try:
            ds = datasets.load_dataset(source, split="train")
        except Exception as exc:
            raise DataError(f"{key}: cannot load {source!r}: {exc}") from None
    if "messages" not in ds.column_names:
        raise DataError(f"{key}: {source} has no 'messages' column (columns: {ds.column_names})")
    if len(ds) == 0:
        raise DataError(f"{key}: {source} is empty: nothing to train on (did filter keep anything?)")
    ds = ds.select_columns(["messages"])
    if reasoning_format == "strip":
        def strip(ex):
            return {"messages": [{**m, "content": THINK.sub("", m["content"])} if m["role"] == "assistant"
                                 else m for m in ex["messages"]]}
        ds = ds.map(strip)
    return ds


# ------------------------------------------------------------------ template checks
def end_of_turn_token(tok) -> str:
    """The token the chat template puts right after an assistant turn (<|im_end|>, <|eot_id|>, ...), read from
    the template itself: render a turn, tokenize what follows its content, take the first control token.
    A control token is any added/special token, named as such or not (a tokenizer may carry <|im_end|>
    as an added token without listing it in its special tokens). Refuses when there is none: a student
    trained without a learnable end of turn never stops."""
    marker = "XyZzY"
    text = tok.apply_chat_template([{"role": "user", "content": "a"}, {"role": "assistant", "content": marker}],
                                   tokenize=False)
    after = text.split(marker, 1)[1] if marker in text else ""
    control = set(tok.all_special_ids) | set(getattr(tok, "added_tokens_decoder", {}) or {})
    for i in tok(after, add_special_tokens=False)["input_ids"]:
        if i in control:
            return tok.convert_ids_to_tokens(i)
        if tok.decode([i]).strip():
            break  # plain text closes the turn: no control token to learn
    raise ConfigError(f"the student's chat template closes an assistant turn with {after[:40]!r}, which holds no "
                      "special token to use as end of turn (EOS); a student trained on it would never stop. "
                      "Use a template whose assistant turn ends in a special token (student.chat_template)")


def prepare_tokenizer(tok, section: TrainSection, key: str, markers: bool = True):
    """Give the tokenizer a chat template with {% generation %} markers, or fail with the fix. `markers`: False
    for stages that build their own labels (offline KD) or generate their rows (on-policy): they need only the
    end-of-turn token."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if section.training_template:
        t = Path(section.training_template)
        if not t.is_file():
            raise ConfigError(f"{key}.training_template: {t} not found")
        tok.chat_template = t.read_text()
        if not has_generation_markers(tok.chat_template):
            raise ConfigError(f"{key}.training_template: {t} has no {{% generation %}} markers")
    elif markers and not has_generation_markers(tok.chat_template or ""):
        try:
            patched = get_training_chat_template(tok)
        except Exception as exc:
            raise ConfigError(
                f"{key}: the student's chat template has no {{% generation %}} markers and TRL knows no training "
                f"version of it ({exc}); set {key}.training_template to a jinja file that wraps assistant "
                "content in {% generation %}...{% endgeneration %} (loss on prompt tokens is never the fallback)"
            ) from None
        if patched:
            tok.chat_template = patched
    eot = end_of_turn_token(tok)
    if tok.eos_token != eot:
        log.info("%s: EOS set to the end-of-turn token %s (was %s)", key, eot, tok.eos_token)
        tok.eos_token = eot
    if tok.pad_token is None or tok.pad_token == eot:
        # a collator that masks pad ids in the labels would mask every end of turn too: the student never
        # learns to stop. Pad with another special token (pads are never attended to nor trained on).
        alt = next((t for t in tok.all_special_tokens if t not in (eot, None)), None)
        if alt is None:
            raise ConfigError(f"{key}: the student's pad token is its end-of-turn token {eot} and it has no other "
                              "special token to pad with; set a pad token in the student's tokenizer")
        log.info("%s: pad token set to %s (was %s, the end-of-turn token)", key, alt, tok.pad_token)
        tok.pad_token = alt
    return tok


def check_reasoning_kept(tok, ds, key: str) -> None:
    ex = ds[0]["messages"]
    reasoning = [m["content"] for m in ex if m["role"] == "assistant" and "<think>" in m["content"]]
    if not reasoning:
        return
    body = reasoning[-1].split("<think>", 1)[1].split("</think>", 1)[0].strip()
    rendered = tok.apply_chat_template(ex, tokenize=False)
    if body and body[:200] not in rendered:
        raise ConfigError(f"{key}: the chat template drops the <think> reasoning from assistant turns; set "
                          f"{key}.training_template to one that keeps it, or {key}.reasoning_format: strip")


# ------------------------------------------------------------------ trainer
def _bf16(section: TrainSection, key: str = "train") -> bool:
    """bf16 training where the hardware has it natively (hardware.train_bf16: the one place it is chosen)."""
    from .hardware import train_bf16

    return train_bf16(section.bf16, key)


def trl_args(section: TrainSection, out: Path, args_cls=None, key: str = "train", **extra):
    import torch
    from trl import SFTConfig

    liger = section.use_liger_kernel
    if liger and importlib.util.find_spec("liger_kernel") is None:
        log.warning("use_liger_kernel: liger-kernel is not installed; training without it")
        liger = False
    kwargs = dict(
        output_dir=str(out / "checkpoints"), max_length=section.max_length, packing=section.packing,
        packing_strategy="bfd", assistant_only_loss=True, num_train_epochs=section.num_train_epochs,
        max_steps=section.max_steps, learning_rate=section.learning_rate,
        lr_scheduler_type=section.lr_scheduler_type, lr_scheduler_kwargs=dict(section.lr_scheduler_kwargs),
        warmup_steps=section.warmup_ratio,
        weight_decay=section.weight_decay, per_device_train_batch_size=section.per_device_train_batch_size,
        gradient_accumulation_steps=section.gradient_accumulation_steps,
        # gradient_checkpointing, not activation_checkpointing: the latter is missing in transformers 5.19
        gradient_checkpointing=section.gradient_checkpointing, bf16=_bf16(section, key),
        use_cpu=not torch.cuda.is_available(), use_liger_kernel=liger, logging_steps=section.logging_steps,
        logging_first_step=True, save_steps=section.save_steps, save_total_limit=section.save_total_limit,
        report_to=section.report_to, seed=section.seed, dataset_num_proc=None)
    kwargs.update(extra)  # stage-specific settings (kd: no packing, its own masks, GKD's knobs)
    if kwargs["packing"] and not torch.cuda.is_available() and kwargs["per_device_train_batch_size"] > 1:
        kwargs.update(cpu_packed_micro_batches(kwargs["per_device_train_batch_size"],
                                               kwargs["gradient_accumulation_steps"]))
    cls = args_cls or SFTConfig
    known = {f.name for f in dataclasses.fields(cls)}
    unused = sorted(k for k in kwargs if k not in known)
    if unused:  # e.g. packing / max_length for an on-policy trainer, which generates its own sequences
        log.debug("%s takes no %s; not passed", cls.__name__, ", ".join(unused))
    return cls(**{k: v for k, v in kwargs.items() if k in known})


def cpu_packed_micro_batches(batch: int, accumulation: int) -> dict:
    """On CPU, B packed rows per step run as B micro-batches of one row, accumulated.

    TRL's padding-free collator flattens a batch of packed rows into one row of B x max_length tokens. A GPU
    varlen kernel (flash attention) attends within each sequence; CPU SDPA has none, so it attends over the
    whole flattened row with a block-diagonal mask: quadratic in B x max_length (packed ran at 0.63x of
    padded on the 0.5B student, B 4). One row per micro-batch bounds that to max_length. Same rows per
    optimizer step, and the Trainer normalises the loss by the target tokens of the whole step
    (num_items_in_batch), so losses and gradients are the same up to float rounding (tests/test_sft.py)."""
    log.info("packing on CPU: %d packed rows per step run as %d accumulated micro-batches of one row (CPU "
             "attention is quadratic in the flattened row)", batch, batch)
    return {"per_device_train_batch_size": 1, "gradient_accumulation_steps": batch * accumulation}


def peft_config(section: TrainSection):
    if section.lora is None:
        return None
    from peft import LoraConfig

    lo = section.lora
    return LoraConfig(r=lo.r, lora_alpha=lo.alpha, lora_dropout=lo.dropout, target_modules=lo.target_modules,
                      task_type="CAUSAL_LM")


def load_student(path: str, section: TrainSection, key: str, mcfg=None, from_folder: bool = False):
    """`mcfg`: the student's ModelConfig: its trust_remote_code and an explicit dtype apply whether training starts
    from it or from a trained folder of it (`from_folder`: init_from, e.g. KD from the SFT student); its revision
    only when loading the student itself."""
    import torch

    opts = load_options(mcfg)
    if from_folder:
        opts.pop("revision", None)
    kwargs = {"dtype": torch.bfloat16 if _bf16(section, key) else torch.float32, **opts}
    if mcfg is not None and mcfg.dtype != "auto":
        kwargs["dtype"] = getattr(torch, mcfg.dtype)
    if section.lora is not None and section.lora.load_in_4bit:
        if not torch.cuda.is_available():
            raise ConfigError(f"{key}.lora.load_in_4bit: QLoRA needs a CUDA GPU (bitsandbytes)")
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                           bnb_4bit_compute_dtype=torch.bfloat16)
    return load_causal_lm(path, **kwargs)


class ThroughputCallback:
    """Adds tokens/s to the logs (TRL logs num_tokens; rate needs a clock)."""

    def __init__(self):
        self.t0 = self.tokens0 = None

    def on_log(self, args, state, control, logs=None, **kw):
        if logs is None or "num_tokens" not in logs:
            return
        now = time.perf_counter()
        if self.t0 is None:
            self.t0, self.tokens0 = now, logs["num_tokens"]
        elif now > self.t0:
            rate = round((logs["num_tokens"] - self.tokens0) / (now - self.t0), 1)
            logs["tokens_per_s"] = rate  # console
            if state.log_history and state.log_history[-1].get("num_tokens") == logs["num_tokens"]:
                state.log_history[-1]["tokens_per_s"] = rate  # saved history (appended before on_log)


class ResumedTokenCount:
    """TRL counts num_tokens from 0 in every process, so a resumed run's log restarted at 0 (the scaled GSM8K
    SFT arm's train_log.json: 610k tokens at step 100, 193k at step 125). At the start of training, after the
    Trainer loaded the checkpoint's state, the count continues from the last one logged."""

    def __init__(self, trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kw):
        last = next((e["num_tokens"] for e in reversed(state.log_history) if "num_tokens" in e), None)
        if last is not None:
            self.trainer._total_train_tokens = int(last)


def _as_callback(obj):
    from transformers import TrainerCallback

    class _CB(TrainerCallback):
        def on_log(self, *a, **kw):
            return obj.on_log(*a, **kw) if hasattr(obj, "on_log") else None

        def on_train_begin(self, *a, **kw):
            return obj.on_train_begin(*a, **kw) if hasattr(obj, "on_train_begin") else None

    return _CB()


def student_source(cfg: RecipeConfig, section: TrainSection) -> tuple[str, object]:
    """(path, tokenizer) of the model training starts from: `init_from` (a trained folder), else `student`
    with its gguf_file, revision and trust_remote_code. The one place this is resolved (sft and kd)."""
    mcfg = None if section.init_from else cfg.need("student")
    path = resolve(section.init_from or mcfg.path, mcfg.gguf_file if mcfg else None)
    tok = load_tokenizer(path, cfg.student.chat_template if cfg.student else None, **load_options(mcfg))
    return path, tok


def load_inputs(cfg: RecipeConfig, section: TrainSection, key: str, dataset_default: Path, train_dataset=None,
                source: tuple[str, object] | None = None):
    """Everything that can be wrong with the user's input, checked before any output is written.
    `source`: the (path, tokenizer) a stage already resolved with student_source."""
    set_threads(cfg.num_threads)
    path, tok = source or student_source(cfg, section)
    prepare_tokenizer(tok, section, key, markers=train_dataset is None)  # given rows carry their own labels
    notes = {}
    if train_dataset is None:
        train_dataset = load_messages(section.dataset or str(dataset_default), section.reasoning_format,
                                      f"{key}.dataset")
        check_reasoning_kept(tok, train_dataset, key)
        notes["prompt_only_rows"] = count_prompt_only(tok, train_dataset, section.max_length, key)
        train_dataset = tokenize_if_control_strings(tok, train_dataset, key)
        notes["pretokenized"] = "input_ids" in train_dataset.column_names
    return path, tok, train_dataset, notes


def tokenize_if_control_strings(tok, ds, key: str):
    """Rows whose message contents hold special-token strings are tokenised here, content as text
    (chat.tokenize_chat_as_text); TRL takes a tokenised dataset as it is. Other datasets go to TRL unchanged."""
    from datasets import Dataset

    from .chat import has_control_strings, tokenize_chat_as_text

    if not any(has_control_strings(tok, ex["messages"]) for ex in ds):
        return ds
    log.info("%s: message contents hold special-token strings: tokenising every row with contents as text "
             "(they must not become control tokens in training)", key)
    return Dataset.from_list([tokenize_chat_as_text(tok, ex["messages"], tok.eos_token) for ex in ds])


def count_prompt_only(tok, ds, max_length: int, key: str) -> int:
    """Rows whose prompt alone fills max_length train on nothing (truncation cuts the whole answer)."""
    n = 0
    for ex in ds:
        msgs = ex["messages"]
        prompt = msgs[:-1] if msgs and msgs[-1]["role"] == "assistant" else msgs
        ids = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
        n += len(ids) >= max_length
    if n and n == len(ds):
        raise DataError(f"{key}.max_length: {max_length} tokens: every one of the {n} rows has a prompt at least "
                        "that long, so no answer token would be trained; raise it")
    if n:
        log.warning("%s: %d of %d rows have a prompt of >= %d tokens (%s.max_length) and train on nothing",
                    key, n, len(ds), max_length, key)
    return n


def build_trainer(cfg: RecipeConfig, section: TrainSection, key: str, out: Path, dataset_default: Path,
                  trainer_cls=None, args_cls=None, model=None, inputs=None, adapter: str | Path | None = None,
                  **extra):
    """`inputs`: what load_inputs returned (train_stage checks them before writing anything). `adapter`: a LoRA
    adapter to keep training (kd on-policy rounds continue the previous round's), instead of a new one."""
    import torch
    from trl import SFTTrainer

    path, tok, train_dataset, notes = inputs or load_inputs(cfg, section, key, dataset_default)
    if notes.get("pretokenized"):  # labels built here (contents as text): TRL must not rebuild them
        extra["assistant_only_loss"] = False
    model = model or load_student(path, section, key, cfg.student, from_folder=bool(section.init_from))
    lora = peft_config(section)
    if adapter is not None:
        from peft import PeftModel

        model, lora = PeftModel.from_pretrained(model, str(adapter), is_trainable=True), None
    args = trl_args(section, out, args_cls, key=key, **extra)
    throughput = _as_callback(ThroughputCallback())
    if trainer_cls is None and not torch.cuda.is_available():
        from .cpu_loss import LabelledLossSFTTrainer  # ~1.5x a CPU step: see cpu_loss

        trainer_cls = LabelledLossSFTTrainer
    trainer = (trainer_cls or SFTTrainer)(model=model, args=args, train_dataset=train_dataset,
                                          processing_class=tok, peft_config=lora,
                                          callbacks=[throughput])
    # first in line: the trackers (report_to) run before user callbacks and would log without tokens/s
    trainer.callback_handler.callbacks.remove(throughput)
    trainer.callback_handler.callbacks.insert(0, throughput)
    if hasattr(trainer, "_total_train_tokens"):  # TRL's SFTTrainer and its subclasses (sft, kd offline/online)
        trainer.add_callback(_as_callback(ResumedTokenCount(trainer)))
    from .hardware import describe_training, train_compile

    compiled = train_compile(section.compile, key)
    log.info(describe_training(key, args.bf16, compiled, section.compile, cfg.num_threads))
    if compiled:
        compile_layers(trainer.model, key)
    return trainer, tok, path


def compile_layers(model, key: str = "sft") -> int:
    """Regional torch.compile: each decoder layer's forward (and through AOTAutograd its backward) compiled with
    dynamic shapes, so packed rows of every length share one graph. Layers are alike: the graph is compiled
    once and reused, where compiling the whole model would trace every layer. Returns how many were compiled."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    layers = getattr(getattr(base, "model", base), "layers", None)
    if layers is None:
        raise ConfigError(f"{key}.compile: {type(base).__name__} has no model.layers to compile; set it to false")
    for layer in layers:
        layer.compile(dynamic=True)
    log.info("compile: %d decoder layers compiled with torch.compile (regional, dynamic shapes)", len(layers))
    return len(layers)


def last_checkpoint(out: Path) -> str | None:
    """The newest complete checkpoint. A kill during saving leaves a checkpoint dir without its
    trainer_state.json (written last); resuming from it would fail, so it is skipped."""
    ck = out / "checkpoints"
    found = sorted((int(p.name.split("-")[1]), p) for p in ck.glob("checkpoint-*")
                   if p.name.split("-")[1].isdigit()) if ck.is_dir() else []
    for step, p in reversed(found):
        try:  # written last: missing, empty or cut off means the save did not finish
            json.loads((p / "trainer_state.json").read_text())
            return str(p)
        except (OSError, ValueError):
            log.warning("skipping incomplete checkpoint %s (interrupted while saving)", p)
    return None


def _finished(ckpt: str) -> bool:
    """The checkpoint was taken at the run's last optimizer step."""
    state = json.loads((Path(ckpt) / "trainer_state.json").read_text())
    return state.get("max_steps", 0) > 0 and state.get("global_step", 0) >= state["max_steps"]


def save_final(trainer, tok, section: TrainSection, out: Path) -> Path:
    """Save a model that loads with AutoModelForCausalLM and stops at the end of its turn.

    Full models go through trainer.save_model (gathers ZeRO-3 / FSDP shards); files are written aside and
    renamed by the main process, so a crash never leaves half a model."""
    import shutil

    main = trainer.accelerator.is_main_process
    model = trainer.model
    gen = stop_at_end_of_turn(model, tok)
    final, tmp = out / "model", out / "model.tmp"
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
    if section.lora is None:
        trainer.save_model(str(tmp))
    elif main:
        model.save_pretrained(out / "adapter")
        tok.save_pretrained(out / "adapter")
        readable_by_umask(out / "adapter")
        if not section.lora.merge:
            return out / "adapter"
        merged = model.merge_and_unload()
        merged.generation_config = gen
        merged.save_pretrained(tmp)
    trainer.accelerator.wait_for_everyone()
    if main:
        tok.save_pretrained(tmp)
        gen.save_pretrained(tmp)
        readable_by_umask(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    trainer.accelerator.wait_for_everyone()
    return final


@writer_scope
def train_stage(cfg: RecipeConfig, key: str, section: TrainSection, dataset_default: Path, resume: bool,
                overwrite: bool, hash_keys: tuple[str, ...], **build_kwargs) -> Path:
    """Shared by sft and kd: manifest, refuse/resume, train, save, log history."""
    out = cfg.stage_dir(key)
    store = Store(out)
    # compile changes how fast, not what is trained: a run may switch it and resume
    keys, drop = ("student", key, *hash_keys), (f"{key}.output_dir", f"{key}.compile")
    # chained by content: a changed upstream dataset (or start model) is a different stage identity
    upstream = [input_fingerprint(section.dataset or dataset_default)]
    if section.init_from and Path(section.init_from).exists():
        upstream.append(input_fingerprint(section.init_from))
    if build_kwargs.get("adapter") is not None:  # the adapter training continues is part of the start state
        upstream.append(input_fingerprint(build_kwargs["adapter"]))
    chash = identity(stage_hash(cfg, *keys, drop=drop), upstream)
    store.adopt(legacy.train_identity(cfg, keys, drop, upstream), chash)
    if store.is_complete(chash) and not overwrite:
        log.info("%s: %s already holds the trained model for this config", key, out)
        return out / "model"
    m = store.manifest()
    if m and m.get("complete") and m.get("config_hash") != chash and not overwrite:
        raise DataError(f"{out}: holds a finished {m.get('stage')} model of another config; "
                        "pass --overwrite to replace it or choose another output dir")
    # same config but its saved files disagree with the manifest (a truncated weight file): prepare()
    # marks it unfinished and training resumes from the last checkpoint to save it again
    store.check(key, chash, overwrite)  # fail before loading anything
    inputs = load_inputs(cfg, section, key, dataset_default, build_kwargs.pop("train_dataset", None),
                         build_kwargs.pop("student", None))
    resumed = store.prepare(key, chash, {"dataset": section.dataset or str(dataset_default)}, overwrite)
    trainer, tok, path = build_trainer(cfg, section, key, out, dataset_default, inputs=inputs, **build_kwargs)
    ckpt = last_checkpoint(out) if (resume or resumed) else None
    if ckpt:
        log.info("%s: resuming from %s", key, ckpt)
    log.info("%s: training %s on %d examples -> %s%s", key, path, len(trainer.train_dataset), out,
             f" ({inputs[3]['prompt_only_rows']} rows train on nothing: prompt >= max_length)"
             if inputs[3].get("prompt_only_rows") else "")
    if ckpt and _finished(ckpt):
        # killed while saving the final model after the last step: the checkpoint already holds every step.
        # Resuming would run one step past max_steps (transformers trains on from a finished state); load it
        # and save instead.
        from transformers.trainer_callback import TrainerState

        log.info("%s: %s holds the last step; saving the model from it without training", key, ckpt)
        trainer._load_from_checkpoint(ckpt)
        trainer.state = TrainerState.load_from_json(str(Path(ckpt) / "trainer_state.json"))
    else:
        trainer.train(resume_from_checkpoint=ckpt)
    final = save_final(trainer, tok, section, out)
    if trainer.accelerator.is_main_process:
        atomic_write_text(out / "train_log.json", json.dumps(trainer.state.log_history, indent=1))
        store.record_model(final)
        store.update_manifest(complete=True, model=str(final), base_model=path,
                              global_step=trainer.state.global_step, **inputs[3])
    log.info("%s: saved %s", key, final)
    return final
