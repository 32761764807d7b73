"""The stage identities earlier seqdistill versions wrote, each stage's form in one place: only to recognise their
manifests (Store.adopt relabels a manifest whose hash is one of these to today's identity instead of calling it
another config). Nothing new is ever written with them; a form goes when no committed run needs it.

- seqdistill <= 0.1 hashed every key of a section, defaults included (today: only what differs from the
  defaults, store.identity), and chained upstream identities as strings;
- on-policy rounds before identities were by content hashed input paths' fingerprints (today: the kept
  prompts and the start weights' digest, so committed rounds resume on another machine)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel

from .store import identity, input_fingerprint


def stage_hash(cfg, *keys: str, drop: tuple[str, ...] = ()) -> str:
    """seqdistill <= 0.1: every key, defaults included."""
    payload = {}
    for key in keys:
        value = getattr(cfg, key)
        payload[key] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    for dotted in drop:
        head, _, leaf = dotted.partition(".")
        if isinstance(payload.get(head), dict):
            payload[head].pop(leaf, None)
    return _sha(json.dumps(payload, sort_keys=True, default=str))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def generate_identity(cfg, keys: tuple[str, ...], drop: tuple[str, ...]) -> str:
    return stage_hash(cfg, *keys, drop=drop)


def filter_identity(cfg, drop: tuple[str, ...], upstream: str) -> str:
    return f"{stage_hash(cfg, 'filter', 'prompt', drop=drop)}-{upstream}"


def train_identity(cfg, keys: tuple[str, ...], drop: tuple[str, ...], upstream: list[str]) -> str:
    return _sha(f"{stage_hash(cfg, *keys, drop=drop)}{upstream}")


def eval_identity(cfg, bench, sampling, backend: str, fingerprint: str) -> str:
    return _sha(json.dumps([stage_hash(cfg, "prompt"), bench.model_dump(mode="json"), sampling.model_dump(),
                            backend, fingerprint]))


def onpolicy_identity(hcfg, today_stage_hash, source: Path, start: str) -> str:
    """`today_stage_hash`: config.stage_hash (the config part was already today's form; the inputs were not)."""
    return identity(today_stage_hash(hcfg, "student", "kd", "teacher", "prompt",
                                     drop=("kd.output_dir", "kd.compile")),
                    [input_fingerprint(source)] + ([input_fingerprint(start)] if Path(start).exists() else []))
