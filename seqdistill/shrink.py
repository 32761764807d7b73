"""`seqdistill shrink`: a smaller student initialised from the teacher (DistilBERT-style): the teacher's
embeddings, a chosen subset of its transformer layers, final norm and head, under a valid config."""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

from .errors import ConfigError, SeqdistillError
from .models import load_tokenizer, param_count, resolve

log = logging.getLogger(__name__)


def parse_layers(spec: str, n_layers: int) -> list[int]:
    spec = spec.strip()
    m = re.fullmatch(r"every:(\d+)", spec)
    if m:
        step = int(m.group(1))
        if step < 1:
            raise ConfigError("--layers every:N needs N >= 1")
        return list(range(0, n_layers, step))
    try:
        layers = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"--layers {spec!r}: expected '0,2,4' or 'every:2'") from None
    bad = [i for i in layers if not 0 <= i < n_layers]
    if not layers or bad or len(set(layers)) != len(layers):
        raise ConfigError(f"--layers {spec!r}: need distinct indices in [0, {n_layers - 1}]"
                          + (f"; out of range: {bad}" if bad else ""))
    return sorted(layers)


def shrink_model(teacher: str, layers: str, out: str | Path, overwrite: bool = False) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise SeqdistillError(f"{out}: not empty; refusing to overwrite (pass --overwrite)")
        shutil.rmtree(out)
    path = resolve(teacher)
    config = AutoConfig.from_pretrained(path)
    n = config.num_hidden_layers
    keep = parse_layers(layers, n)
    src = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    new_cfg = AutoConfig.from_pretrained(path)
    new_cfg.num_hidden_layers = len(keep)
    if getattr(new_cfg, "layer_types", None):  # per-layer attention kinds (sliding / full) follow their layers
        new_cfg.layer_types = [config.layer_types[i] for i in keep]
    student = AutoModelForCausalLM.from_config(new_cfg, dtype=torch.float32)
    sd = src.state_dict()
    new_sd = {}
    for name in student.state_dict():
        m = re.match(r"(.*\.layers\.)(\d+)(\..*)", name)
        new_sd[name] = sd[f"{m.group(1)}{keep[int(m.group(2))]}{m.group(3)}"] if m else sd[name]
    student.load_state_dict(new_sd, strict=True)  # strict: a missing or extra weight raises, naming it
    if src.config.tie_word_embeddings:
        student.tie_weights()
    student.generation_config = src.generation_config
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    student.save_pretrained(tmp)
    load_tokenizer(path).save_pretrained(tmp)
    os.replace(tmp, out)
    log.info("shrink: kept layers %s of %d: %.1fM -> %.1fM parameters", keep, n, param_count(src) / 1e6,
             param_count(student) / 1e6)
    return out
