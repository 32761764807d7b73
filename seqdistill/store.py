"""Stage outputs on disk: numbered Parquet shards written atomically plus a small manifest.json.

Why Parquet: the optional teacher logprobs are binary (int32 ids + float16 logprobs) and would grow by a
third as base64 in JSONL. `datasets.load_dataset("parquet", data_files=...)` and TRL read the shards as is."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from . import errors
from .errors import DataError

MANIFEST = "manifest.json"
QUARANTINE = "quarantine"
log = logging.getLogger(__name__)
_HOST = platform.node().replace("-", "_") or "host"


# writer locks this process holds: lock path -> open file (closing it, or dying, releases the lock)
_HELD: dict[str, object] = {}


def writer_scope(fn):
    """Decorator for a stage's run function: the writer locks its stores take are released when it returns or
    raises (a crash or kill -9 releases them too: the kernel drops a dead process's locks)."""
    import functools

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        before = set(_HELD)
        try:
            return fn(*args, **kwargs)
        finally:
            for key in [k for k in _HELD if k not in before]:
                _HELD.pop(key).close()

    return wrapped


def _bookkeeping(name: str) -> bool:
    """Lock and owner files, and an owner file's in-flight temp copy (`..writer-shard-0-of-2.owner.<rand>.tmp`,
    written by atomic_write_text): never work, never foreign, never removed by another writer's prepare."""
    return name.lstrip(".").startswith(("lock", "writer"))


def _owner_line(path: Path) -> str:
    try:
        o = json.loads(path.read_text())
        since = time.strftime("%H:%M:%S", time.localtime(o["since"]))
        return f"pid {o['pid']} on {o['host']}, `{o['cmd']}`, since {since}"
    except (OSError, ValueError, KeyError):
        return "another process"


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def readable_by_umask(folder: Path) -> None:
    """Files a library saved through a private temp file (safetensors: mode 0600) get the mode the user's umask
    gives a new file, like every other file seqdistill writes."""
    mode = 0o666 & ~umask()
    for f in Path(folder).rglob("*"):
        if f.is_file() and not f.is_symlink():
            f.chmod(mode)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def input_fingerprint(path: str | Path) -> str:
    """What a downstream stage's identity includes about its input, so a changed upstream is never reused:
    the upstream manifest's config hash, record count and creation time, plus the names, sizes and mtimes
    of the data files (cheap stats, no reading)."""
    p = Path(path)
    man = ""
    for root in (p, p.parent):
        if (root / MANIFEST).is_file():
            with contextlib.suppress(json.JSONDecodeError, OSError):
                m = json.loads((root / MANIFEST).read_text())
                man = f"{m.get('config_hash')}:{m.get('records')}:{m.get('created')}"
            break
    files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")) if p.is_dir() \
        else [p] if p.is_file() else []
    return man + str([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files])


def identity(*parts) -> str:
    """A stage's identity: the one function every stage (and the eval and probe sub-stores) hashes its config
    with, so resume / skip / refuse mean the same everywhere. Config sections count only where they differ from
    their defaults (model_dump(exclude_defaults=True)): a key added with a default in a later seqdistill leaves
    every earlier manifest valid. The flip side, said plainly: changing a default in code does not change the
    identity of a stage that relied on it."""
    from pydantic import BaseModel

    def canon(p):
        if isinstance(p, BaseModel):
            return p.model_dump(mode="json", exclude_defaults=True)
        if isinstance(p, (list, tuple)):
            return [canon(x) for x in p]
        if isinstance(p, dict):
            return {k: canon(v) for k, v in p.items()}
        return p

    blob = json.dumps([canon(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("seqdistill", "torch", "transformers", "trl", "peft", "vllm", "math-verify"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fchmod(f.fileno(), 0o666 & ~umask())  # mkstemp makes 0600; outputs follow the user's umask
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_temp(folder: Path, table: pa.Table) -> str:
    """A complete Parquet file under a temp name that says whose it is (`.tmp-<host>-<pid>-*`, never read as
    data, removed on resume once that writer is dead); the caller renames it into place."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".tmp-{_HOST}-{os.getpid()}-", suffix=".parquet")
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; outputs follow the user's umask
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write_parquet(path: Path, table: pa.Table) -> None:
    """One Parquet file written aside and renamed into place (a crash never leaves half a file)."""
    os.replace(_write_temp(path.parent, table), path)


class Store:
    """One stage's output directory."""

    def __init__(self, root: str | Path, data_subdir: str = "data"):
        self.root = Path(root)
        self.data = self.root / data_subdir

    # ---- manifest -------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)  # several --shard processes may share one dir
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def lock_writer(self, shard: str | None = None) -> None:
        """One writer per stage dir, for as long as this process runs the stage: an exclusive lock on
        .writer.lock (released when the stage returns or the process dies). `--shard i/N` writers (N > 1) are the
        one sanctioned exception: each holds the lock shared, plus its own shard's lock exclusively, so two
        writers of one shard, or a whole-dir writer next to shard writers, are refused."""
        import sys

        self.root.mkdir(parents=True, exist_ok=True)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and os.environ.get("RANK", "0") != "0":
            return  # one distributed job (torchrun / accelerate): its rank 0 holds the lock for all its ranks
        i, n = (int(x) for x in shard.split("/")) if shard else (0, 1)
        locks = [(self.root / ".writer.lock", fcntl.LOCK_SH if n > 1 else fcntl.LOCK_EX)]
        if n > 1:
            locks.append((self.root / f".writer-shard-{i}-of-{n}.lock", fcntl.LOCK_EX))
        for path, mode in locks:
            key = str(path.resolve())
            if key in _HELD:
                continue
            fh = open(path, "a+")
            try:
                # a POSIX record lock (lockf), not flock: it belongs to this process only, so children forked
                # while it is held (verifier workers, engine processes) neither keep it alive nor share it
                fcntl.lockf(fh, mode | fcntl.LOCK_NB)
            except OSError:  # EAGAIN / EACCES: held by another process
                fh.close()
                raise DataError(f"{self.root}: another seqdistill process is writing here "
                                f"({_owner_line(path.with_suffix('.owner'))}); wait for it or stop it. One "
                                "writer per stage dir (only --shard i/N writers may share one)") from None
            _HELD[key] = fh
            if mode == fcntl.LOCK_EX:
                atomic_write_text(path.with_suffix(".owner"), json.dumps(
                    {"pid": os.getpid(), "host": platform.node(), "since": time.time(),
                     "cmd": " ".join(["seqdistill", *sys.argv[1:]])[:200]}))

    def _write_manifest(self, m: dict) -> None:
        """Callers hold the lock (_lock)."""
        atomic_write_text(self.root / MANIFEST, json.dumps(m, indent=2, sort_keys=True, default=str))

    def manifest(self) -> dict | None:
        p = self.root / MANIFEST
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError:
            raise DataError(f"{p}: manifest is not valid JSON") from None

    def update_manifest(self, **fields) -> dict:
        with self._lock():
            m = self.manifest() or {}
            for key, value in fields.items():
                if isinstance(value, dict) and isinstance(m.get(key), dict):
                    m[key].update(value)
                else:
                    m[key] = value
            self._write_manifest(m)
            return m

    def check(self, stage: str, config_hash: str, overwrite: bool = False) -> bool:
        """Raise if writing here would replace other work (unless overwrite); True if same config's work."""
        m = self.manifest()
        if m is not None and m.get("config_hash") == config_hash and m.get("stage") == stage:
            return True
        if m is not None and not m.get("complete") and not self.has_work():
            return False  # a start that failed before writing any record: re-initialise, nothing is lost
        foreign = ([p.name for p in self.root.iterdir() if p.name != MANIFEST and not _bookkeeping(p.name)]
                   if m is None and self.root.is_dir() else [])
        if (m is not None or foreign) and not overwrite:
            what = (f"holds {m.get('stage')} output of another config (hash {m.get('config_hash')}, "
                    f"this one {config_hash})" if m else f"is not empty ({', '.join(sorted(foreign)[:3])})")
            raise DataError(f"{self.root}: {what}; refusing to overwrite. "
                                  "Use another output dir or pass --overwrite")
        return False

    def prepare(self, stage: str, config_hash: str, meta: dict, overwrite: bool = False,
                shard: str | None = None) -> bool:
        """Open the dir for writing. Returns True when resuming earlier work of the same config.

        A dir holding another config's output (or foreign files) is refused unless overwrite=True; a dir another
        process is writing is refused (lock_writer)."""
        self.lock_writer(shard)
        errors.current_output = str(self.root)  # what a disk-full error names when write() names no file
        with self._lock():
            if self.check(stage, config_hash, overwrite):
                self._recover()
                return True
            for p in self.root.iterdir():
                if not _bookkeeping(p.name):
                    shutil.rmtree(p) if p.is_dir() else p.unlink()
            manifest = {"stage": stage, "config_hash": config_hash, "created": time.time(),
                        "versions": versions(), "complete": False, "parts": {}, "shards": {}, **meta}
            self._write_manifest(manifest)
            return False

    def adopt(self, legacy_hash: str | None, config_hash: str) -> None:
        """A manifest written under the identity of seqdistill <= 0.1 (every key hashed, defaults included) is the
        same config when its hash equals `legacy_hash`: relabel it instead of calling it another config."""
        if not legacy_hash or legacy_hash == config_hash or not (self.root / MANIFEST).is_file():
            return
        with self._lock():
            m = self.manifest() or {}
            if m.get("config_hash") == legacy_hash:
                m.update(config_hash=config_hash, identity_migrated_from=legacy_hash)
                self._write_manifest(m)
                log.info("%s: manifest from an earlier seqdistill: same config, identity updated", self.root)

    @contextlib.contextmanager
    def clean_on_refusal(self, resumed: bool):
        """A stage that refuses (a SeqdistillError) before writing anything leaves no manifest behind: the dir is
        as it was before the run (a resumed dir keeps its manifest)."""
        from .errors import SeqdistillError

        try:
            yield
        except SeqdistillError:
            if not resumed and not self.has_work():
                (self.root / MANIFEST).unlink(missing_ok=True)
            raise

    def has_work(self) -> bool:
        """Anything a rerun must not delete without --overwrite: records, a model, training checkpoints."""
        return bool(self.shard_files() or any(self.root.glob("*/*.parquet")) or (self.root / "model").exists()
                    or any((self.root / "checkpoints").glob("checkpoint-*"))
                    or any((self.root / "rounds").glob("*/*")))  # kd on-policy: rounds under the stage dir

    def is_complete(self, config_hash: str | None = None) -> bool:
        """Finished, and the files agree with the manifest (damaged() finds nothing)."""
        m = self.manifest()
        return bool(m and m.get("complete") and (config_hash is None or m.get("config_hash") == config_hash)
                    and not self.damaged())

    # ---- validation: a stage is finished only when its manifest and its files agree -------------------------
    def _key(self, f: Path) -> str:
        return f.relative_to(self.root).as_posix()

    def damaged(self) -> list[tuple[str, str]]:
        """(path, why) for every shard of this store that disagrees with the manifest: not written by this run
        (copied in, from another run), a checksum that differs (truncated, overwritten, another schema), listed
        but missing; and model files that differ from what was saved. A manifest from before shard checksums
        (no "shards" entry) is checked for readable shards only."""
        m = self.manifest() or {}
        entries = m.get("shards")
        out = []
        files = self.shard_files()
        for f in files:
            if entries is None:
                try:
                    pq.ParquetFile(f).metadata
                except Exception:
                    out.append((self._key(f), "unreadable"))
                continue
            e = entries.get(self._key(f))
            if e is None:
                out.append((self._key(f), "not written by this run (copied in, or from another run)"))
            elif f.stat().st_size != e["bytes"] or file_sha256(f) != e["sha256"]:
                out.append((self._key(f), "its checksum differs from the manifest (damaged or replaced)"))
        if entries is not None:
            on_disk = {self._key(f) for f in files}
            prefix = self.data.relative_to(self.root).as_posix() + "/"
            out += [(k, "listed in the manifest but missing") for k in entries
                    if k.startswith(prefix) and k not in on_disk]
        for name, e in (m.get("model_files") or {}).items():
            f = self.root / name
            if not f.is_file() or f.stat().st_size != e["bytes"] or file_sha256(f) != e["sha256"]:
                out.append((name, "model file missing or differs from the saved one"))
        return out

    def _quarantine(self, f: Path) -> Path:
        dest_dir = self.root / QUARANTINE
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / f"{f.parent.name}-{f.name}"
        n = 1
        while dest.exists():  # an earlier quarantine of the same name is kept
            dest = dest_dir / f"{f.parent.name}-{f.stem}.{n}{f.suffix}"
            n += 1
        os.replace(f, dest)
        return dest

    def record_model(self, folder: Path) -> None:
        """Checksums of a saved model's files, so a truncated or replaced weight file is never 'finished'."""
        files = {f.relative_to(self.root).as_posix(): {"bytes": f.stat().st_size, "sha256": file_sha256(f)}
                 for f in sorted(folder.glob("*.safetensors"))}
        self.update_manifest(model_files=files)

    # ---- shards ---------------------------------------------------------------
    def shard_files(self) -> list[Path]:
        # temp files of writers in flight (".tmp-*") are never data
        return sorted(p for p in self.data.glob("*.parquet") if not p.name.startswith(".")) \
            if self.data.is_dir() else []

    def _recover(self) -> None:
        """On resume (under the lock): delete temp files of dead writers on this host, and move shards that
        disagree with the manifest (damaged(): cut off by a crash or a full disk, copied in, replaced) to
        quarantine/ so their records are redone."""
        if not self.data.is_dir() and not (self.manifest() or {}).get("model_files"):
            return
        self.data.mkdir(parents=True, exist_ok=True)
        for tmp in self.data.glob(".tmp-*"):
            parts = tmp.name.split("-")
            if len(parts) >= 4 and parts[1] == _HOST and parts[2].isdigit() and not _pid_alive(int(parts[2])):
                tmp.unlink(missing_ok=True)
                log.info("removed %s (temp file of a writer that died)", tmp)
        problems = self.damaged()
        for key, why in problems:
            f = self.root / key
            if f.is_file() and f.suffix == ".parquet":
                self._quarantine(f)
            log.warning("quarantined %s (%s): its records will be redone", f, why)
        if problems:
            m = self.manifest() or {}
            for key, _ in problems:
                (m.get("shards") or {}).pop(key, None)
            m["complete"] = False
            self._write_manifest(m)

    def write_shard(self, records: list[dict], tag: str = "part", schema: pa.Schema | None = None) -> Path:
        self.data.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pylist(records, schema=schema)
        tmp = _write_temp(self.data, table)  # outside the lock: other --shard writers need not wait on this I/O
        entry = {"rows": table.num_rows, "bytes": os.path.getsize(tmp), "sha256": file_sha256(Path(tmp))}
        with self._lock():
            m = self.manifest()
            # next number after the highest ever used here: on disk, in the manifest, in quarantine (a number is
            # never reused, so a quarantined shard's name cannot come back as other data)
            names = [p.name for p in self.data.glob(f"{tag}-*.parquet")]
            names += [k.rsplit("/", 1)[-1] for k in ((m or {}).get("shards") or {})]
            names += [p.name.split("-", 1)[-1] for p in (self.root / QUARANTINE).glob(f"*{tag}-*.parquet")]
            nums = [int(n.split(".")[0].rsplit("-", 1)[1]) for n in names
                    if n.startswith(f"{tag}-") and n.split(".")[0].rsplit("-", 1)[1].isdigit()]
            final = self.data / f"{tag}-{(max(nums) + 1 if nums else 0):05d}.parquet"
            if m is not None and "shards" in m:
                # the manifest first, then the rename: a kill between them leaves an entry without a file
                # ("listed but missing": dropped, its prompts redone), never a good shard that looks foreign
                m["shards"][self._key(final)] = entry
                self._write_manifest(m)
            os.replace(tmp, final)  # a reader never sees half a shard; kill -9 loses only the batch in flight
        return final

    def read_table(self, columns: list[str] | None = None) -> pa.Table | None:
        files = self.shard_files()
        if not files:
            return None
        tables = [pq.read_table(f, columns=columns) for f in files]
        return pa.concat_tables(tables, promote_options="default")

    def column(self, name: str) -> list:
        t = self.read_table([name])
        return [] if t is None else t.column(name).to_pylist()

    def records(self) -> Iterator[dict]:
        for f in self.shard_files():
            yield from pq.read_table(f).to_pylist()

    def count(self) -> int:
        return sum(pq.ParquetFile(f).metadata.num_rows for f in self.shard_files())


def require_stage_output(root: str | Path, stage: str, flag: str) -> Store:
    store = Store(root)
    m = store.manifest()
    if m is None:
        raise DataError(f"{root}: not a {stage} output dir (no {MANIFEST}); check {flag}")
    if m.get("stage") != stage:
        raise DataError(f"{root}: holds {m.get('stage')} output, expected {stage}; check {flag}")
    if not m.get("complete"):
        raise DataError(f"{root}: the {stage} stage has not finished; rerun it to complete (it resumes)")
    bad = store.damaged()
    if bad:
        raise DataError(f"{root}: {len(bad)} {stage} shard(s) disagree with its manifest ({bad[0][0]}: "
                        f"{bad[0][1]}); rerun `seqdistill {stage}` to quarantine and redo them")
    return store
