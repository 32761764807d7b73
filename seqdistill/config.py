"""The one typed config schema for every stage. Recipe YAML keys are these field names; CLI flags and
`--set a.b=c` overrides are applied to the same dict before validation, so there is no second config path."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

STAGES = ("generate", "filter", "sft", "kd", "eval")


class Section(BaseModel):
    # extra="forbid" is what turns a typo (`temprature`) into an error instead of a silent default
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelConfig(Section):
    path: str = Field(description="local HF folder, hub id, a .gguf file, or packaged:<name>")
    revision: str | None = None
    gguf_file: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    chat_template: str | None = Field(None, description="jinja file replacing the tokenizer's template")


class SyntheticConfig(Section):
    """Built-in offline arithmetic word problems (seqdistill.synthetic)."""

    n: int = Field(64, ge=1)
    split: Literal["train", "test"] = "train"
    steps: int = Field(2, ge=1, le=8)
    max_value: int = Field(20, ge=2)
    seed: int = 0


class FieldMap(Section):
    question: str = "question"
    answer: str | None = "answer"
    id: str | None = None


class DataConfig(Section):
    """A prompt set: exactly one of `path` (local jsonl/parquet/csv), `hub` (datasets name) or `synthetic`."""

    name: str | None = None
    path: str | None = None
    hub: str | None = None
    hub_config: str | None = None
    split: str = "train"
    synthetic: SyntheticConfig | None = None
    fields: FieldMap = FieldMap()
    task: str = "math"
    limit: int | None = Field(None, ge=1)
    shuffle: bool = False
    seed: int = 0

    @model_validator(mode="after")
    def _one_source(self):
        given = [k for k in ("path", "hub", "synthetic") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of path / hub / synthetic (got {given or 'none'})")
        return self

    def label(self) -> str:
        if self.name:
            return self.name
        if self.synthetic is not None:
            return f"synthetic-{self.synthetic.split}"
        return Path(self.path).stem if self.path else f"{self.hub}:{self.split}"


class PromptConfig(Section):
    template: str = Field("math_boxed", description="name of a file in prompts/ or a path to one")
    system: str | None = None
    prefill: str | None = Field(None, description="assistant text the teacher continues, e.g. '<think>\\n'")


class SamplingConfig(Section):
    n: int = Field(1, ge=1)
    temperature: float = Field(0.6, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=1)
    max_tokens: int = Field(1024, ge=1)
    seed: int = 0
    stop: list[str] = []


class OpenAIConfig(Section):
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str | None = Field(None, description="served model name; defaults to teacher.path")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="env var holding the key; never logged")
    concurrency: int = Field(8, ge=1)
    max_retries: int = Field(6, ge=0)
    timeout_s: float = Field(600.0, gt=0)
    backoff_base_s: float = Field(1.0, ge=0)
    backoff_max_s: float = Field(60.0, ge=0)


Backend = Literal["hf", "vllm", "openai"]


class GenerateConfig(Section):
    backend: Backend = "hf"
    output_dir: str | None = None
    sampling: SamplingConfig = SamplingConfig()
    batch_size: int = Field(8, ge=1, description="prompts per batch (also the resume unit)")
    logprobs: int | None = Field(None, ge=1, le=256, description="capture the teacher's top-K logprobs")
    shard: str = Field("0/1", pattern=r"^\d+/\d+$")
    vllm: dict[str, Any] = Field(default_factory=dict, description="passed straight to vllm.LLM(**vllm)")
    openai: OpenAIConfig = OpenAIConfig()


class FilterConfig(Section):
    input_dir: str | None = None
    output_dir: str | None = None
    require_correct: bool = Field(True, description="false: keep traces whatever the verdict (to compare)")
    keep_unverifiable: bool = False
    drop_truncated: bool = True
    drop_unclosed_think: bool = True
    drop_garbage: bool = True
    require_boxed: bool | None = Field(None, description="None: when the prompt template asks for \\boxed{}")
    min_tokens: int | None = None
    max_tokens: int | None = None
    dedup: bool = True
    near_dup_threshold: float | None = Field(0.9, gt=0.0, le=1.0)
    near_dup_ngram: int = Field(5, ge=1)
    decontaminate: list[DataConfig] = []
    decontam_ngram: int = Field(8, ge=1)
    drop_contaminated: bool = True
    select: Literal["all", "first_k", "shortest_k"] = "all"
    k: int | None = Field(None, ge=1)
    pass_rate_min: float = Field(0.0, ge=0.0, le=1.0)
    pass_rate_max: float = Field(1.0, ge=0.0, le=1.0)
    num_workers: int = Field(2, ge=1)
    timeout_s: float = Field(5.0, gt=0)


class LoraConfig(Section):
    r: int = Field(16, ge=1)
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"
    merge: bool = True
    load_in_4bit: bool = False


class TrainConfig(Section):
    dataset: str | None = Field(None, description="dir with a messages column (default: filter's kept/)")
    output_dir: str | None = None
    init_from: str | None = Field(None, description="model to start from (default: student.path)")
    max_length: int = 2048
    packing: bool = True
    num_train_epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 1e-5
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 1
    gradient_checkpointing: bool = False
    bf16: bool | None = Field(None, description="None: bf16 where supported, fp32 on CPU")
    use_liger_kernel: bool = False
    logging_steps: int = 1
    save_steps: int = 100
    save_total_limit: int | None = 2
    report_to: str = "none"
    seed: int = 0
    training_template: str | None = Field(None, description="jinja with {% generation %} markers")
    reasoning_format: Literal["keep", "strip"] = "keep"
    lora: LoraConfig | None = None


class SFTConfig(TrainConfig):
    pass


class KDConfig(TrainConfig):
    mode: Literal["auto", "offline", "online", "on-policy"] = "auto"
    packing: bool = Field(False, description="online mode only: pack rows (offline/on-policy refuse true)")
    alpha: float = Field(0.5, ge=0.0, le=1.0)
    temperature: float = Field(1.0, gt=0.0)
    divergence: Literal["forward", "reverse", "jsd"] = "forward"
    jsd_beta: float = Field(0.5, gt=0.0, lt=1.0)
    tail: Literal["bucket", "renorm"] = "bucket"
    chunk_size: int = Field(256, ge=1, description="online mode: tokens per logit chunk")
    max_new_tokens: int = Field(128, ge=1, description="on-policy mode: student generation length")


class EvalConfig(Section):
    data: DataConfig | None = Field(None, description="benchmark prompts; required: the training prompts are "
                                                      "not an eval set")
    max_train_overlap: float = Field(0.01, ge=0.0, le=1.0, description=(
        "refuse when more than this fraction of eval items overlaps the training prompts (1.0: intended)"))
    overlap_ngram: int = Field(8, ge=1, description="word n-gram size for the train/eval overlap check")
    num_workers: int = Field(2, ge=1, description="verifier worker processes")
    timeout_s: float = Field(5.0, gt=0, description="seconds the verifier may spend on one answer")
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig, description="backend: openai endpoint settings")
    models: list[str] = Field(default_factory=lambda: ["teacher", "student", "final"])
    output_dir: str | None = None
    backend: Backend = "hf"
    sampling: SamplingConfig = SamplingConfig(temperature=0.6, top_p=0.95, max_tokens=32768)
    batch_size: int = Field(8, ge=1)
    vllm: dict[str, Any] = Field(default_factory=dict)


class RecipeConfig(Section):
    run_dir: str = "runs/default"
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: all cores)")
    teacher: ModelConfig | None = None
    student: ModelConfig | None = None
    data: DataConfig = DataConfig(synthetic=SyntheticConfig())
    prompt: PromptConfig = PromptConfig()
    generate: GenerateConfig = GenerateConfig()
    filter: FilterConfig = FilterConfig()
    sft: SFTConfig = SFTConfig()
    kd: KDConfig | None = None
    eval: EvalConfig = EvalConfig()

    def stage_dir(self, stage: str) -> Path:
        explicit = getattr(getattr(self, stage), "output_dir", None) if getattr(self, stage) else None
        return Path(explicit) if explicit else Path(self.run_dir) / stage

    def need(self, key: str):
        """Return a required-for-this-stage section, or a ConfigError naming the key."""
        value = getattr(self, key)
        if value is None:
            raise ConfigError(f"{key}: required for this stage but missing from the recipe")
        return value


def stage_hash(cfg: RecipeConfig, *keys: str, drop: tuple[str, ...] = ()) -> str:
    """Hash of the config sections that determine a stage's output (used for resume / skip / refuse)."""
    payload = {}
    for key in keys:
        value = getattr(cfg, key)
        payload[key] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    for dotted in drop:
        head, _, leaf = dotted.partition(".")
        if isinstance(payload.get(head), dict):
            payload[head].pop(leaf, None)
    blob = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- loading


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected dotted.key=value")
    key, raw = item.split("=", 1)
    # YAML parses the value so `--set generate.sampling.n=4` gives an int and `[a, b]` a list
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from None
    return key.strip().split("."), value


def apply_override(data: dict, path: list[str], value: Any) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {part} is not a section")
        node = child
    node[path[-1]] = value


def _format_errors(source: str, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(root)"
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        elif e["type"] == "missing":
            msg = "required field missing"
        else:
            msg = e["msg"]
            if "input" in e and not isinstance(e["input"], dict):
                msg += f" (got {e['input']!r})"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def validate(data: dict, source: str = "<config>") -> RecipeConfig:
    try:
        return RecipeConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(source, err)) from None


def load_recipe(path: str | Path | None = None, overrides: list[str] | dict | None = None,
                flags: dict | None = None) -> RecipeConfig:
    """Read a recipe YAML (or start from defaults), apply overrides, validate. Errors name file and key."""
    data: dict = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"{p}: recipe file not found")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{p}:{mark.line + 1}:{mark.column + 1}" if mark else str(p)
            what = " ".join(str(getattr(exc, "problem", None) or exc).split())
            raise ConfigError(f"{where}: not valid YAML: {what}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping of sections")
        data = loaded
    data = copy.deepcopy(data)
    if isinstance(overrides, dict):
        for key, value in overrides.items():
            apply_override(data, key.split("."), value)
    else:
        for item in overrides or []:
            apply_override(data, *parse_override(item))
    for key, value in (flags or {}).items():  # typed CLI flags: already parsed, applied last
        if value is not None:
            apply_override(data, key.split("."), value)
    if overrides or any(v is not None for v in (flags or {}).values()):
        source += " (with overrides)"
    return validate(data, source)
