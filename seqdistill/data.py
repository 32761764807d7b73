"""Prompt sets: local JSONL/Parquet/CSV, a `datasets` hub name, or the built-in synthetic problems.

Every item comes out as {"id", "question", "answer"} with a stable id (the id field, or a hash of the
question), so resume, sharding and dedup all key on the same thing."""

from __future__ import annotations

import csv
import hashlib
import json
import random
from pathlib import Path

from .config import DataConfig
from .errors import DataError


def question_id(question: str) -> str:
    return hashlib.sha256(question.strip().encode()).hexdigest()[:16]


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path}: data file not found")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".csv"):
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[:exc.start].count(b"\n") + 1
            raise DataError(f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); "
                            "re-encode the file as UTF-8") from None
    if suffix in (".jsonl", ".json"):
        rows = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
                if not isinstance(row, dict):
                    raise DataError(f"{path}:{lineno}: each line must be a JSON object")
                rows.append(row)
        return rows
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow's own errors on a file that is not (or no longer) Parquet
            raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__}: "
                            f"{' '.join(str(exc).split())[:120]})") from None
    if suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    raise DataError(f"{path}: unsupported file type {suffix!r} (use .jsonl, .parquet or .csv)")


def _hub_rows(cfg: DataConfig) -> list[dict]:
    import datasets

    try:
        ds = datasets.load_dataset(cfg.hub, cfg.hub_config, split=cfg.split)
    except Exception as exc:  # network, missing split, ...: say which dataset
        raise DataError(f"data.hub {cfg.hub!r} (split {cfg.split!r}): cannot load: {exc}") from None
    return ds.to_list()


def load_prompts(cfg: DataConfig, where: str = "data") -> list[dict]:
    if cfg.synthetic is not None:
        from .synthetic import make_problems

        s = cfg.synthetic
        try:
            rows = make_problems(s.n, s.split, s.steps, s.max_value, s.seed)
        except ValueError as exc:
            raise DataError(f"{where}.synthetic: {exc}") from None
        source = f"{where}.synthetic"
    elif cfg.path is not None:
        rows, source = _read_rows(Path(cfg.path)), cfg.path
    else:
        rows, source = _hub_rows(cfg), cfg.hub

    fm = cfg.fields
    items, seen = [], {}
    for i, row in enumerate(rows):
        if fm.question not in row or row[fm.question] in (None, ""):
            raise DataError(f"{source}: row {i}: missing question field {fm.question!r} "
                            f"(fields: {sorted(row)}); set {where}.fields.question")
        if not isinstance(row[fm.question], str):
            raise DataError(f"{source}: row {i}: field {fm.question!r} is a {type(row[fm.question]).__name__}, not "
                            "text; a question must be a string (it would be stringified into the prompt)")
        question = row[fm.question]
        answer = None
        if fm.answer:
            if fm.answer not in row:
                raise DataError(f"{source}: row {i}: missing answer field {fm.answer!r}; "
                                f"set {where}.fields.answer (or null when there is no gold answer)")
            answer = None if row[fm.answer] is None else str(row[fm.answer])
        if fm.id:
            if fm.id not in row:
                raise DataError(f"{source}: row {i}: missing id field {fm.id!r}")
            pid = str(row[fm.id])
        else:
            pid = question_id(question)
        if pid in seen:
            raise DataError(f"{source}: rows {seen[pid]} and {i} have the same id {pid!r}"
                            + ("" if fm.id else " (identical questions)"))
        seen[pid] = i
        items.append({"id": pid, "question": question, "answer": answer})
    if not items:
        raise DataError(f"{source}: the prompt set is empty")
    if cfg.shuffle:
        random.Random(cfg.seed).shuffle(items)
    if cfg.limit:
        items = items[: cfg.limit]
    return items


def parse_shard(spec: str) -> tuple[int, int]:
    i, n = (int(x) for x in spec.split("/"))
    if n < 1 or not 0 <= i < n:
        raise DataError(f"--shard {spec}: need 0 <= i < N")
    return i, n


def shard_of(prompt_id: str, num_shards: int) -> int:
    # hash, not position: a prompt stays in its shard when the set is re-ordered or extended
    return int(hashlib.sha256(prompt_id.encode()).hexdigest(), 16) % num_shards


def select_shard(items: list[dict], spec: str) -> list[dict]:
    i, n = parse_shard(spec)
    return items if n == 1 else [it for it in items if shard_of(it["id"], n) == i]
