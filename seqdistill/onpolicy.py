"""kd.mode on-policy: distillation rounds through the engine (GKD, Agarwal et al. 2024; Thinking Machines'
"On-Policy Distillation", 2025), started from the SFT student.

Each round r:
  1. samples: the current student (round 0: kd.init_from, the SFT student by default; then the previous round's
     merged model) samples kd.onpolicy.prompts_per_round kept prompts through the engine layer generate uses
     (engine.sample_into: vllm or hf), written as resumable shards;
  2. scored: the teacher scores exactly those tokens in one prefill pass: its raw top-K log-probabilities at every
     completion position (backend.score), written into the records' teacher_topk columns, the same layout as
     generate's captured logprobs;
  3. train: the offline-KD trainer (kd.offline_trainer: reverse KL by default, no CE) trains on those rows,
     continuing the previous round's LoRA adapter; the merged model samples the next round.
Layout: KD_DIR/rounds/NNN/{samples,scored,train} plus round.json when the round is done; KD_DIR/rounds.json
holds every round's costs. A kill mid-round resumes inside the round (finished shards, the trainer's last
checkpoint); a finished round is never redone. kd.onpolicy.rounds can be raised and rerun to add rounds."""

from __future__ import annotations

import json
import logging
import os
import random
import shutil
import time
from pathlib import Path

from .backends import backend_class
from .config import ModelConfig, RecipeConfig
from .engine import Engine, sample_into
from .errors import DataError
from .legacy import onpolicy_identity as onpolicy_legacy
from .records import RECORD_SCHEMA, answer_text, encode_topk
from .sampling import open_backend, to_params
from .store import Store, atomic_write_text, identity, writer_scope

log = logging.getLogger(__name__)


def kept_items(source: str) -> list[dict]:
    """The distinct prompts of the kept traces (id, question, gold), in a stable order."""
    from .kd_trainer import load_kd_records

    seen: dict[str, dict] = {}
    for r in load_kd_records(source):
        seen.setdefault(r["prompt_id"], {"id": r["prompt_id"], "question": r["question"], "answer": r["gold"]})
    if not seen:
        raise DataError(f"kd.dataset: {source}: no kept prompts for the on-policy rounds")
    return [seen[k] for k in sorted(seen)]


def round_items(items: list[dict], r: int, per_round: int, seed: int) -> list[dict]:
    """Round r's prompts: consecutive slices of a seeded walk through all prompts, reshuffled each pass, so every
    prompt is seen once per pass and a round's prompts do not depend on how many rounds are asked for."""
    out, start = [], r * per_round
    for pos in range(start, start + min(per_round, len(items))):
        epoch, i = divmod(pos, len(items))
        order = list(range(len(items)))
        random.Random(f"{seed}:{epoch}").shuffle(order)
        out.append(items[order[i]])
    return out


def _round_store(root: Path, stage: str, chash: str) -> Store:
    store = Store(root)
    store.prepare(stage, chash, {})
    return store


def sample_round(cfg: RecipeConfig, rd: Path, items: list[dict], model_path: str, r: int, chash: str) -> Store:
    """Step 1: the student's samples of this round's prompts (resumes by prompt)."""
    op = cfg.kd.onpolicy
    store = _round_store(rd / "samples", "kd-samples", chash)
    if store.is_complete(chash):
        return store
    sampling = op.sampling.model_copy(update={"seed": op.sampling.seed + r})  # fresh samples every round
    t0 = time.perf_counter()
    engine = Engine.of(op, cfg.num_threads, max_in_flight=op.batch_size)
    sample_into(store, items, engine, ModelConfig(path=model_path), cfg.prompt, to_params(sampling),
                task=cfg.data.task, label=f"student-round-{r}", tag="r", desc=f"round {r}: student samples",
                seed=sampling.seed, done=set(store.column("prompt_id")))
    store.update_manifest(complete=True, records=store.count(), seconds=round(time.perf_counter() - t0, 1))
    return store


def score_round(cfg: RecipeConfig, rd: Path, samples: Store, chash: str) -> Store:
    """Step 2: the teacher's top-K at every completion token of every sample, one shard per samples shard."""
    import pyarrow.parquet as pq

    from .chat import encode_prompt

    op, teacher = cfg.kd.onpolicy, cfg.need("teacher")
    store = _round_store(rd / "scored", "kd-scored", chash)
    if store.is_complete(chash):
        return store
    t0 = time.perf_counter()
    done = set(store.column("prompt_id"))
    todo = [f for f in samples.shard_files() if not set(pq.read_table(f, columns=["prompt_id"])
                                                        .column("prompt_id").to_pylist()) <= done]
    if todo:
        vllm = dict(op.vllm)
        cap = backend_class(op.backend).max_logprobs_default
        if cap is not None and op.teacher_topk > cap:
            vllm.setdefault("max_logprobs", op.teacher_topk)  # the engine's default cap is below K
        backend, tok, _ = open_backend(op.backend, teacher, None, vllm, op.sampling.seed)
        if not getattr(backend, "can_score", False):
            backend.close()
            raise DataError(f"kd.onpolicy.backend: {op.backend} cannot score completions")
        try:
            for f in todo:
                recs = [x for x in pq.read_table(f).to_pylist() if x["completion_ids"] and x["prompt_id"] not in done]
                seqs = [(encode_prompt(tok, [m for m in x["messages"] if m["role"] != "assistant"],
                                       cfg.prompt.prefill)[1], x["completion_ids"]) for x in recs]
                for x, (ids, lps) in zip(recs, backend.score(seqs, op.teacher_topk)):
                    x.update(encode_topk(ids, lps))
                if recs:
                    store.write_shard(recs, "r", RECORD_SCHEMA)
                log.info("round %s: teacher scored %d samples (%d tokens)", rd.name, len(recs),
                         sum(len(s[1]) for s in seqs))
        finally:
            backend.close()
    store.update_manifest(complete=True, records=store.count(), seconds=round(time.perf_counter() - t0, 1))
    return store


def student_accuracy(cfg: RecipeConfig, records: list[dict]) -> float | None:
    """Share of this round's samples the verifier judges correct: a free progress signal (the prompts are
    training prompts, so it is not an eval)."""
    from .verify import CORRECT, check_many

    scored = [(answer_text(x), x["gold"], x["task"]) for x in records if x.get("gold")]
    if not scored:
        return None
    verdicts = check_many(scored, workers=cfg.filter.num_workers, timeout=cfg.filter.timeout_s, lenient=True)
    return sum(v.status == CORRECT for v in verdicts) / len(verdicts)


def train_round(cfg: RecipeConfig, rd: Path, start: str, adapter: Path | None) -> Path:
    """Step 3: one offline-KD training run on the scored rows, continuing `adapter` (None: a new one)."""
    from .kd_trainer import load_kd_records, offline_trainer
    from .train import student_source, train_stage

    sub = cfg.model_copy(deep=True)
    k = sub.kd
    k.output_dir, k.init_from, k.dataset, k.mode = str(rd / "train"), start, str(rd / "scored"), "offline"
    records = load_kd_records(k.dataset)
    source = student_source(sub, k)
    trainer_cls, ds, extra = offline_trainer(sub, records, *source)
    return train_stage(sub, "kd", k, Path(k.dataset), False, False, ("teacher",), student=source,
                       trainer_cls=trainer_cls, train_dataset=ds, adapter=adapter, remove_unused_columns=False,
                       **extra)


def _link_model(src: Path, dst: Path) -> None:
    """dst becomes a hard-linked copy of the model folder src (no bytes copied), swapped in atomically."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for f in src.iterdir():
        os.link(f, tmp / f.name)
    shutil.rmtree(dst, ignore_errors=True)
    os.replace(tmp, dst)


def model_digest(path: str) -> str:
    """sha256 over a model folder's weights and config (a hub id or missing folder: the name itself)."""
    import hashlib

    p = Path(path)
    if not p.is_dir():
        return str(path)
    h = hashlib.sha256()
    for f in sorted([*p.glob("*.safetensors"), *p.glob("config.json")]):
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def run_rounds(cfg: RecipeConfig, out: Path, start: str, chash: str, rounds: int,
               legacy: str | None = None) -> tuple[Path, dict]:
    """Rounds 0..rounds-1, each one not yet done; returns (the last round's merged model, totals). `legacy`: the
    stage identity a run had before identities were by content (its rounds are the same rounds)."""
    op, k = cfg.kd.onpolicy, cfg.kd
    items = kept_items(k.dataset or str(cfg.stage_dir("filter") / "kept"))
    log.info("kd on-policy: %d rounds of %d prompts x %d samples (of %d kept prompts), %s divergence, alpha %g, "
             "student samples with %s", rounds, op.prompts_per_round, op.sampling.n, len(items), k.divergence,
             k.alpha, op.backend)
    table_path = out / "rounds.json"
    table = json.loads(table_path.read_text()) if table_path.is_file() else []
    model, adapter = Path(start), None
    for r in range(rounds):
        rd = out / "rounds" / f"{r:03d}"
        rchash = identity(chash, r)
        done = rd / "round.json"
        row = json.loads(done.read_text()) if done.is_file() else {}
        if legacy and row.get("identity") == identity(legacy, r):
            row["identity"] = rchash
            atomic_write_text(done, json.dumps(row, indent=1))
            for sub in ("samples", "scored"):  # their manifests carry the round's identity too
                sub_store = Store(rd / sub)
                if sub_store.manifest():
                    sub_store.adopt(identity(legacy, r), rchash)
        if row.get("identity") == rchash:
            model, adapter = rd / "train" / "model", (rd / "train" / "adapter" if k.lora else None)
            continue
        if legacy:
            for sub in ("samples", "scored"):  # an unfinished round of a run that began before content identities
                if Store(rd / sub).manifest():
                    Store(rd / sub).adopt(identity(legacy, r), rchash)
        samples = sample_round(cfg, rd, round_items(items, r, op.prompts_per_round, k.seed), str(model), r, rchash)
        scored = score_round(cfg, rd, samples, rchash)
        recs = list(scored.records())
        # LoRA: the same adapter trained on, round after round, on the round-0 model; full fine-tuning: the
        # previous round's model is the start
        final = train_round(cfg, rd, start if k.lora else str(model), adapter)
        log_hist = json.loads((rd / "train" / "train_log.json").read_text())
        # each phase's own time, as its store recorded it (a phase cut off and resumed counts its last start only)
        secs = {"sample": samples.manifest().get("seconds"), "score": scored.manifest().get("seconds"),
                "train": next((e["train_runtime"] for e in reversed(log_hist) if "train_runtime" in e), None)}
        steps = max((e.get("step", 0) for e in log_hist), default=0)
        kd_losses = [e["kd_loss"] for e in log_hist if "kd_loss" in e]
        row = {"round": r, "prompts": len({x["prompt_id"] for x in recs}), "samples": len(recs),
               "student_tokens": sum(x["completion_tokens"] for x in recs),
               "teacher_tokens_scored": sum(x["completion_tokens"] for x in recs),
               "student_train_accuracy": student_accuracy(cfg, recs),
               "truncated": sum(x["finish_reason"] == "length" for x in recs) / max(len(recs), 1),
               "optimizer_steps": steps, "kd_loss_first": kd_losses[0] if kd_losses else None,
               "kd_loss_last": kd_losses[-1] if kd_losses else None,
               "seconds": secs,
               "identity": rchash}
        atomic_write_text(done, json.dumps(row, indent=1))
        table = [x for x in table if x["round"] != r] + [row]
        atomic_write_text(table_path, json.dumps(table, indent=1))
        log.info("kd on-policy: round %d done: %d samples, %d student tokens, student correct on %s of them, "
                 "kd loss %s -> %s, %d steps, seconds %s", r, row["samples"], row["student_tokens"],
                 "n/a" if row["student_train_accuracy"] is None else f"{row['student_train_accuracy']:.1%}",
                 row["kd_loss_first"], row["kd_loss_last"], steps, secs)
        if r >= 1:  # the round before the last done is not needed to resume: drop its merged weights
            shutil.rmtree(out / "rounds" / f"{r - 1:03d}" / "train" / "model", ignore_errors=True)
        model, adapter = final, (rd / "train" / "adapter" if k.lora else None)
    table = [x for x in table if x["round"] < rounds]
    totals = {"rounds_done": rounds, "optimizer_steps": sum(x["optimizer_steps"] for x in table),
              "student_tokens": sum(x["student_tokens"] for x in table),
              "teacher_tokens_scored": sum(x["teacher_tokens_scored"] for x in table)}
    return model, totals


@writer_scope
def run_onpolicy(cfg: RecipeConfig, start: str, source: Path, overwrite: bool = False) -> Path:
    """The kd stage in on-policy mode: its manifest, the rounds, and KD_DIR/model (the last round's merged
    student, hard-linked). kd.onpolicy.rounds is not part of the identity: raising it continues the same run."""
    from .config import stage_hash

    out = cfg.stage_dir("kd")
    hcfg = cfg.model_copy(deep=True)
    hcfg.kd.onpolicy.rounds = 1  # the default: left out of the identity (exclude_defaults)
    # by content, not by paths or file times: the same kept prompts and the same start weights on another machine
    # are the same run, so committed rounds resume there (docs/gsm8k-onpolicy.md)
    config = stage_hash(hcfg, "student", "kd", "teacher", "prompt",
                        drop=("kd.output_dir", "kd.compile", "kd.init_from", "kd.dataset"))
    items = kept_items(str(source))
    chash = identity(config, [identity([(it["id"], it["question"]) for it in items]), model_digest(start)])
    legacy = onpolicy_legacy(hcfg, stage_hash, source, start)
    store = Store(out)
    store.adopt(legacy, chash)  # a run started before identities were by content: the same run
    m = store.manifest()
    if m and m.get("complete") and m.get("config_hash") == chash and not overwrite \
            and m.get("rounds_done", 0) >= cfg.kd.onpolicy.rounds and (out / "model" / "config.json").is_file():
        log.info("kd: %s already holds the on-policy student of %d rounds", out, m["rounds_done"])
        return out / "model"
    store.prepare("kd", chash, {"dataset": str(source), "mode": "on-policy", "base_model": start}, overwrite)
    store.update_manifest(complete=False)
    model, totals = run_rounds(hcfg, out, start, chash, cfg.kd.onpolicy.rounds, legacy)
    _link_model(model, out / "model")
    store.record_model(out / "model")
    store.update_manifest(complete=True, model=str(out / "model"), **totals)
    log.info("kd: saved %s (%d rounds, %d optimizer steps)", out / "model", totals["rounds_done"],
             totals["optimizer_steps"])
    return out / "model"
