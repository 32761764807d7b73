"""Tiny random Qwen2 models and a tiny BPE tokenizer with the real Qwen2.5 chat template, built once per
session. No hub, no network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

torch.set_num_threads(1)  # tiny models: extra threads only add contention on 2 cores

QWEN2_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"""
               r"""\s*[\r\n]+|\s+(?!\S)|\s+""")
REPO = Path(__file__).resolve().parent.parent


def _corpus() -> list[str]:
    from seqdistill.synthetic import make_problems

    texts = [p["question"] for p in make_problems(200, "train")]
    texts += ["<think>\nLet me add the numbers step by step.\n</think>\nThe answer is \\boxed{42}.",
              "system user assistant You are a helpful assistant. Please reason step by step, and put your "
              "final answer within \\boxed{}.", "0 1 2 3 4 5 6 7 8 9 10 + - * = ( ) . , ! ? :"] * 20
    return texts


def build_tokenizer(out: Path):
    import trl
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    template = (Path(trl.__file__).parent / "chat_templates" / "qwen2_5.jinja").read_text()
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                 additional_special_tokens=["<|im_start|>"], chat_template=template)
    hf.save_pretrained(out)
    return hf


def build_model(out: Path, tok, hidden: int = 64, layers: int = 2, vocab: int | None = None, seed: int = 0):
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=vocab or len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=1,
                      tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      max_position_embeddings=1024)
    model = Qwen2ForCausalLM(cfg)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """{'tok': tokenizer, 'student': dir, 'teacher': dir} — same tokenizer, different sizes."""
    root = tmp_path_factory.mktemp("tiny")
    tok = build_tokenizer(root / "tok")
    return {"tok": tok, "tokdir": root / "tok",
            "student": build_model(root / "student", tok, hidden=64, layers=2, seed=0),
            "teacher": build_model(root / "teacher", tok, hidden=96, layers=4, seed=1)}


def recipe(tmp_path: Path, tiny: dict, **sections) -> dict:
    """A small valid recipe dict pointing at the tiny models; sections override the defaults."""
    base = {
        "run_dir": str(tmp_path / "run"), "num_threads": 1,
        # fp32 pinned: tiny-model tests compare exact values and must not depend on the CPU's bf16 support
        "teacher": {"path": str(tiny["teacher"]), "dtype": "float32"},
        "student": {"path": str(tiny["student"]), "dtype": "float32"},
        "data": {"synthetic": {"n": 6}, "task": "arithmetic"},
        "generate": {"batch_size": 4, "sampling": {"n": 2, "max_tokens": 12, "temperature": 1.0}},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    for key in ("sft", "kd"):  # fp32 training too, whatever the CPU (bf16 is the default where it is native)
        if isinstance(base.get(key), dict):
            base[key] = {"bf16": False, **base[key]}
    base.setdefault("sft", {"bf16": False})
    return base


@pytest.fixture
def make_cfg(tmp_path, tiny):
    from seqdistill.config import validate

    def _make(**sections):
        return validate(recipe(tmp_path, tiny, **sections))

    return _make


def write_recipe(tmp_path: Path, tiny: dict, name: str = "r.yaml", **sections) -> Path:
    """recipe(...) saved as YAML, for tests that run the CLI in a subprocess."""
    import yaml

    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe(tmp_path, tiny, **sections)))
    return path


def cli(*args: str, env: dict | None = None):
    """`seqdistill ARGS` in a fresh process (one thread), as a user would run it; returns CompletedProcess."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "seqdistill.cli", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def schema_fields(model, prefix=""):
    """(dotted path, pydantic field) of every key of a config model, nested sections included."""
    from pydantic import BaseModel

    for name, f in model.model_fields.items():
        yield f"{prefix}{name}", f
        for t in getattr(f.annotation, "__args__", ()) + (f.annotation,):
            if isinstance(t, type) and issubclass(t, BaseModel):
                yield from schema_fields(t, f"{prefix}{name}.")
