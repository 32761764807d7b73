"""LoRA adapters as files: merge one into its base model as a folder an engine can load.

Used where a trained adapter has to become a plain model folder: the on-policy rounds (the student samples
through vLLM, which runs merged folders) and restoring a committed adapter on a fresh machine
(`seqdistill merge`). Merged weights are never committed: they are rebuilt from the base and the adapter."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from .errors import ConfigError, DataError

log = logging.getLogger(__name__)


def check_adapter(adapter: str | Path, key: str = "adapter") -> Path:
    p = Path(adapter)
    if not (p / "adapter_config.json").is_file():
        raise ConfigError(f"{key}: {p} is not a LoRA adapter folder (no adapter_config.json)")
    if not any(p.glob("adapter_model.*")):
        raise DataError(f"{key}: {p} has an adapter_config.json but no adapter_model weights")
    return p


def merge_adapter(adapter: str | Path, base: str, out: str | Path, dtype: str = "bfloat16",
                  tokenizer_from: str | Path | None = None, overwrite: bool = False) -> Path:
    """Base + adapter -> a merged model folder at `out`, written aside and renamed (a crash leaves no half
    folder). The tokenizer comes from `tokenizer_from` (a trained stage's folder: its end-of-turn EOS and pad
    token) or else the base; its generation config keeps the tokenizer's EOS as a stop id."""
    import torch
    from peft import PeftModel

    from .models import load_causal_lm, load_tokenizer, stop_at_end_of_turn
    from .store import readable_by_umask

    adapter, out = check_adapter(adapter), Path(out)
    if out.exists() and not overwrite:
        raise DataError(f"{out}: exists; pass --overwrite to replace it")
    model = load_causal_lm(base, dtype=getattr(torch, dtype))
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    tok = load_tokenizer(str(tokenizer_from or base))
    stop_at_end_of_turn(merged, tok)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    readable_by_umask(tmp)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    log.info("merged %s into %s -> %s (%s)", adapter, base, out, dtype)
    return out
