"""The one typed config schema for every stage. Recipe YAML keys are these field names; CLI flags and
`--set a.b=c` overrides are applied to the same dict before validation, so there is no second config path."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError

STAGES = ("generate", "filter", "sft", "kd", "eval")


class Section(BaseModel):
    # extra="forbid" is what turns a typo (`temprature`) into an error instead of a silent default
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelConfig(Section):
    path: str = Field(description="local HF folder, hub id, a .gguf file, or packaged:<name>")
    revision: str | None = Field(None, description="hub revision (branch, tag or commit) for weights and tokenizer")
    gguf_file: str | None = Field(None, description="GGUF file inside `path` to dequantize and cache as safetensors")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field("auto",
        description="weights dtype when loading (auto: bf16 on GPUs that support it and on CPUs with native "
                    "bf16, else fp32)")
    trust_remote_code: bool = Field(False,
        description="allow the model repo's own Python code (tokenizer, model, vLLM)")
    chat_template: str | None = Field(None, description="jinja file replacing the tokenizer's template")


class SyntheticConfig(Section):
    """Built-in offline arithmetic word problems (seqdistill.synthetic)."""

    n: int = Field(64, ge=1, description="number of problems")
    split: Literal["train", "test"] = Field("train", description="train or test: disjoint sets of problems")
    steps: int = Field(2, ge=1, le=8, description="arithmetic steps per problem (difficulty)")
    max_value: int = Field(20, ge=2, description="largest number in a problem")
    seed: int = Field(0, description="generator seed")


class FieldMap(Section):
    question: str = Field("question", description="column holding the question")
    answer: str | None = Field("answer", description="column holding the gold answer (null: none)")
    id: str | None = Field(None, description="column holding a stable id (null: a hash of the question)")


class DataConfig(Section):
    """A prompt set: exactly one of `path` (local jsonl/parquet/csv), `hub` (datasets name) or `synthetic`."""

    name: str | None = Field(None, description="label used in reports (default: derived from the source)")
    path: str | None = Field(None, description="local .jsonl / .parquet / .csv file")
    hub: str | None = Field(None, description="`datasets` hub name")
    hub_config: str | None = Field(None, description="hub dataset config name")
    split: str = Field("train", description="hub split")
    synthetic: SyntheticConfig | None = Field(None, description="built-in arithmetic word problems")
    fields: FieldMap = Field(FieldMap(), description="column names to read")
    task: str = Field("math", description="answer conventions for verification: a name in answers.TASKS (gsm8k, "
                      "math, aime, amc, arithmetic, code, ...); an unknown name is refused with the list")

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        from .answers import TASKS  # imported here: answers -> chat -> config at import time

        if v not in TASKS:
            raise ValueError(f"unknown task {v!r}; choose one of {', '.join(sorted(TASKS))}")
        return v
    limit: int | None = Field(None, ge=1, description="first N problems only")
    shuffle: bool = Field(False, description="shuffle before `limit`")
    seed: int = Field(0, description="shuffle seed")

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
    system: str | None = Field(None, description="system message (null: none)")
    prefill: str | None = Field(None, description="assistant text the teacher continues, e.g. '<think>\\n'")


class SamplingConfig(Section):
    n: int = Field(1, ge=1, description="samples per prompt")
    temperature: float = Field(0.6, ge=0.0, description="sampling temperature (0: greedy)")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="nucleus sampling mass")
    top_k: int | None = Field(None, ge=1, description="sample only among the k most likely tokens (null: off)")
    max_tokens: int = Field(1024, ge=1, description="generation budget per sample")
    seed: int = Field(0, description="base seed (each prompt and sample derives its own)")
    stop: list[str] = Field([], description="strings that end a sample")
    thinking_budget: int | None = Field(None, ge=1, description="budget forcing: cap the reasoning at this many "
                                        "tokens, then append budget_close and let the model answer with the rest "
                                        "of max_tokens (null: off)")
    budget_close: str = Field("\n</think>\n\n", description="text forced in when the thinking budget runs out")

    @model_validator(mode="after")
    def _budget_below_max(self):
        if self.thinking_budget is not None and self.thinking_budget >= self.max_tokens:
            raise ValueError(f"thinking_budget {self.thinking_budget} must be below max_tokens {self.max_tokens} "
                             "(the rest is the answer budget)")
        return self


class OpenAIConfig(Section):
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint")
    model: str | None = Field(None, description="served model name; defaults to teacher.path")
    api_key_env: str | None = Field("OPENAI_API_KEY", description="env var holding the key; never logged")
    concurrency: int = Field(8, ge=1, description="requests in flight")
    max_retries: int = Field(6, ge=0, description="retries on 429 / 5xx / timeouts / dropped connections")
    timeout_s: float = Field(600.0, gt=0, description="seconds per request")
    backoff_base_s: float = Field(1.0, ge=0, description="first retry delay (doubles, with jitter)")
    backoff_max_s: float = Field(60.0, ge=0, description="longest retry delay")


BackendName = Literal["hf", "vllm", "openai"]


class RayConfig(Section):
    """Generation on a Ray cluster: replicas of the engine as actors, chunks to whichever is free."""
    address: str | None = Field(None, description="Ray address: 'auto' joins the cluster `ray start` set up on "
                                "this node; null starts a local instance")
    replicas: int = Field(1, ge=1, description="engine replicas (actors), each with its own model copy")
    num_cpus_per_replica: float = Field(1.0, ge=0, description="CPUs Ray reserves per replica")
    num_gpus_per_replica: float = Field(0.0, ge=0, description="GPUs per replica: its vllm tensor_parallel_size "
                                        "x pipeline_parallel_size")
    chunk_size: int = Field(16, ge=1, description="prompts per dispatched chunk (one shard each)")
    max_retries: int = Field(3, ge=0, description="times one chunk may be re-dispatched after replicas died")
    local_num_cpus: int | None = Field(None, ge=1, description="CPUs of a local instance (address null); null: all")


class LocalEngineConfig(Section):
    """How a section samples in this process (the student probe): the backend and its settings. Sections
    subclass it and keep these key names at their own top level (recipe keys stay flat)."""
    backend: BackendName = Field("hf", description="hf | vllm | openai")
    sampling: SamplingConfig = Field(SamplingConfig(), description="how the model samples")
    batch_size: int = Field(8, ge=1, description="prompts per batch (generate: per shard written, the resume unit)")
    vllm: dict[str, Any] = Field(default_factory=dict, description="passed straight to vllm.LLM(**vllm)")


class EngineConfig(LocalEngineConfig):
    """... plus an OpenAI-compatible server or a Ray cluster (generate, eval)."""
    openai: OpenAIConfig = Field(default_factory=OpenAIConfig, description="settings for backend: openai")
    ray: RayConfig | None = Field(None, description="sample on a Ray cluster (null: in this process)")


class GenerateConfig(EngineConfig):
    output_dir: str | None = Field(None, description="default: RUN_DIR/generate")
    max_in_flight: int = Field(256, ge=1, description="vllm / openai: prompts kept in the engine at once "
                               "(streaming: finished prompts are written as they complete)")
    flush_seconds: float = Field(60.0, gt=0, description="vllm / openai: write finished prompts at least this often")
    logprobs: int | None = Field(None, ge=1, le=256, description="capture the teacher's top-K logprobs")
    shard: str = Field("0/1", pattern=r"^\d+/\d+$", description="i/N: this process's slice of the prompts")

    @model_validator(mode="after")
    def _budget_and_logprobs(self):
        if self.logprobs and self.sampling.thinking_budget:
            raise ValueError("logprobs with sampling.thinking_budget: the forced closing tokens have no teacher "
                             "distribution for offline KD; use one or the other")
        return self


class NamedTeacher(ModelConfig):
    """One of several teachers writing one dataset (`teachers:`); every trace records the name."""
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="short name recorded with every trace it writes")
    backend: BackendName | None = Field(None, description="hf | vllm | openai (default: generate.backend)")
    sampling: SamplingConfig | None = Field(None, description="how this teacher samples (default: generate.sampling)")


def _check_band(section) -> None:
    """The pass-rate band of filter and of filter.student_probe: one rule, written once."""
    if section.pass_rate_min > section.pass_rate_max:
        raise ValueError(f"pass_rate_min {section.pass_rate_min} > pass_rate_max {section.pass_rate_max}: the band "
                         "keeps nothing")


class StudentProbe(LocalEngineConfig):
    """Student-aware selection: the student (or a cheaper proxy) answers every prompt k times with the same
    verifier; prompts it already solves teach it little."""
    model: ModelConfig | None = Field(None, description="the model to probe (default: the recipe's student)")
    sampling: SamplingConfig = Field(SamplingConfig(n=4), description="how the probe samples (n = k tries)")
    batch_size: int = Field(16, ge=1, description="prompts per batch")
    pass_rate_min: float = Field(0.0, ge=0.0, le=1.0, description="keep prompts the probe solves at least this often")
    pass_rate_max: float = Field(0.75, ge=0.0, le=1.0,
                                 description="... and at most this often (default: drop prompts it always solves)")

    @model_validator(mode="after")
    def _band(self):
        _check_band(self)
        if self.backend == "openai":
            raise ValueError("backend: openai is not supported for the probe (use hf or vllm)")
        return self


class FilterConfig(Section):
    input_dir: str | None = Field(None, description="a generate output dir (default: RUN_DIR/generate)")
    output_dir: str | None = Field(None, description="default: RUN_DIR/filter")
    require_correct: bool = Field(True, description="false: keep traces whatever the verdict (to compare)")
    keep_unverifiable: bool = Field(False, description="keep traces the verifier cannot decide")
    drop_truncated: bool = Field(True, description="reject traces cut off by max_tokens")
    drop_unclosed_think: bool = Field(True, description="reject traces whose <think> never closes")
    drop_garbage: bool = Field(True, description="reject mojibake, control characters and looping text")
    drop_invented_output: bool = Field(False, description="reject traces that show a ```output block no program "
                                       "produced (the model invented an execution result); counted in stats "
                                       "either way")
    require_boxed: bool | None = Field(None, description="None: when the prompt template asks for \\boxed{}")
    min_tokens: int | None = Field(None, ge=0, description="reject shorter traces")
    max_tokens: int | None = Field(None, ge=1, description="reject longer traces")
    dedup: bool = Field(True, description="reject exact duplicates within a prompt's samples")
    near_dup_threshold: float | None = Field(0.9, gt=0.0, le=1.0,
        description="reject samples this similar (word n-gram Jaccard) to a kept one; null: off")
    near_dup_ngram: int = Field(5, ge=1, description="n-gram size for near-duplicate detection")
    decontaminate: list[DataConfig] = Field([],
        description="benchmarks whose questions must not appear in the training prompts")
    decontam_ngram: int = Field(8, ge=1, description="word n-gram size for decontamination")
    drop_contaminated: bool = Field(True, description="reject contaminated prompts (false: only count them)")
    select: Literal["all", "first_k", "shortest_k"] = Field("all",
        description="all, or first_k / shortest_k correct traces per prompt")
    k: int | None = Field(None, ge=1, description="traces per prompt for select")
    pass_rate_min: float = Field(0.0, ge=0.0, le=1.0,
        description="keep prompts whose teacher pass rate is at least this")
    pass_rate_max: float = Field(1.0, ge=0.0, le=1.0, description="... and at most this")
    student_probe: StudentProbe | None = Field(None, description="student-aware selection: sample the student "
                                               "(or a cheaper proxy) and keep prompts in its pass-rate band")
    majority_labels: bool = Field(False, description="prompts without a gold answer get the teacher's majority "
                                  "answer over its n samples as label (marked label_source: majority)")
    majority_min_agreement: float = Field(0.6, gt=0.0, le=1.0,
        description="share of a prompt's samples that must agree for a majority label (ties never label)")
    num_workers: int = Field(2, ge=1, description="verifier worker processes")
    timeout_s: float = Field(5.0, gt=0, description="seconds the math verifier may spend on one answer (programs: "
                             "sandbox.wall_s / cpu_s)")

    @model_validator(mode="after")
    def _bands(self):
        _check_band(self)
        if self.min_tokens is not None and self.max_tokens is not None and self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens {self.min_tokens} > max_tokens {self.max_tokens}: the length band keeps "
                             "nothing")
        if self.select != "all" and self.k is None:
            raise ValueError(f"select: {self.select} needs k (traces per prompt)")
        if self.select == "all" and self.k is not None:
            raise ValueError("k is only read with select: first_k or shortest_k")
        return self


class SandboxConfig(Section):
    """How `task: code` programs run (seqdistill/sandbox.py, docs/code.md): these keys bound a program (filter's and
    eval's timeout_s bound the math verifier only)."""
    cpu_s: float = Field(10.0, gt=0, description="CPU seconds a program may use (its process is killed past them)")
    wall_s: float = Field(20.0, gt=0, description="wall seconds for a program and its tests (all its processes are "
                          "killed at the deadline; the stage waits at most 5 s more)")
    memory_mb: int = Field(1024, ge=64, description="address space of the program's process, MB")
    processes: int = Field(16, ge=1, description="processes a program may run at once")
    allow_unisolated: bool = Field(False, description="where neither root nor unprivileged user namespaces are "
                                   "available, run programs with resource limits only (they could read your files, "
                                   "reach the network and signal your processes); false: refuse")

    def limits(self):
        from .sandbox import Limits

        return Limits(cpu_s=self.cpu_s, wall_s=self.wall_s, memory_mb=self.memory_mb, processes=self.processes)


class LoraSection(Section):
    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="adapter scaling")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="adapter dropout")
    target_modules: list[str] | str = Field("all-linear", description="modules to adapt (all-linear or a list)")
    merge: bool = Field(True, description="merge the adapter into the saved model")
    load_in_4bit: bool = Field(False, description="QLoRA: 4-bit base weights (CUDA only)")


class TrainSection(Section):
    dataset: str | None = Field(None, description="dir with a messages column (default: filter's kept/)")
    output_dir: str | None = Field(None, description="default: RUN_DIR/<stage>")
    init_from: str | None = Field(None, description="model to start from (default: student.path)")
    max_length: int = Field(2048, ge=16, description="tokens per training row (longer rows are cut)")
    packing: bool = Field(True, description="pack rows into max_length sequences (padding-free)")
    num_train_epochs: float = Field(1.0, gt=0, description="passes over the data")
    max_steps: int = Field(-1, ge=-1, description="optimizer steps (-1: from epochs)")
    learning_rate: float = Field(1e-5, gt=0, le=1.0, description="peak learning rate")
    lr_scheduler_type: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                               "constant_with_warmup", "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay"] = \
        Field("cosine", description="transformers scheduler name")
    lr_scheduler_kwargs: dict[str, Any] = Field(default_factory=dict, description="passed to the scheduler (TRL "
        "lr_scheduler_kwargs): cosine_with_min_lr needs min_lr or min_lr_rate, warmup_stable_decay num_decay_steps")
    warmup_ratio: float = Field(0.03, ge=0, lt=1.0, description="warmup as a fraction of the steps")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    per_device_train_batch_size: int = Field(1, ge=1, description="rows per device per micro-batch")
    gradient_accumulation_steps: int = Field(1, ge=1, description="micro-batches per optimizer step")
    gradient_checkpointing: bool = Field(False, description="recompute activations to save memory")
    bf16: bool | None = Field(None, description="None: bf16 where the hardware has it natively (CUDA, CPUs with "
                              "AVX-512 BF16 / AMX), fp32 elsewhere")
    use_liger_kernel: bool = Field(False, description="fused Liger kernels when installed")
    compile: bool | Literal["auto"] = Field(False, description="torch.compile each decoder layer (regional: "
                          "compiled once, reused by every layer; fuses the elementwise ops that dominate a CPU step; "
                          "bench/sft_step.py); auto: on where measured to help (CPUs with AVX-512 BF16 / AMX)")
    logging_steps: int = Field(1, ge=1, description="log every N steps")
    save_steps: int = Field(100, ge=1, description="checkpoint every N steps (resume point)")
    save_total_limit: int | None = Field(2, ge=1, description="checkpoints kept")
    report_to: str = Field("none", description="trackers: none, tensorboard, trackio, wandb, ...")
    seed: int = Field(0, description="training seed")
    training_template: str | None = Field(None, description="jinja with {% generation %} markers")
    reasoning_format: Literal["keep", "strip"] = Field("keep",
        description="keep or strip <think> reasoning in the training text")
    lora: LoraSection | None = Field(None, description="train a LoRA adapter instead of all weights")

    # what each transformers scheduler accepts beyond the optimizer and step counts (optimization.get_scheduler)
    _SCHEDULER_KWARGS = {"cosine_with_min_lr": ({"min_lr", "min_lr_rate", "num_cycles"}, {"min_lr", "min_lr_rate"}),
                         "warmup_stable_decay": ({"num_decay_steps", "num_stable_steps", "warmup_type", "decay_type",
                                                  "min_lr_ratio", "num_cycles"}, {"num_decay_steps"}),
                         "cosine_with_restarts": ({"num_cycles"}, set()), "polynomial": ({"lr_end", "power"}, set())}

    @model_validator(mode="after")
    def _scheduler_kwargs(self):
        allowed, need_one = self._SCHEDULER_KWARGS.get(self.lr_scheduler_type, (set(), set()))
        extra = sorted(set(self.lr_scheduler_kwargs) - allowed)
        if extra:
            raise ValueError(f"lr_scheduler_kwargs: {extra[0]!r} is not read by lr_scheduler_type "
                             f"{self.lr_scheduler_type} (it reads: {', '.join(sorted(allowed)) or 'nothing'})")
        if need_one and not need_one & set(self.lr_scheduler_kwargs):
            raise ValueError(f"lr_scheduler_type {self.lr_scheduler_type} needs lr_scheduler_kwargs with "
                             f"{' or '.join(sorted(need_one))} (it would crash when training starts)")
        return self


class SFTSection(TrainSection):
    """sft: the stage-3 training settings (named apart from trl.SFTConfig, which it is turned into)."""
    per_teacher: bool = Field(False, description="with `teachers:`, also train one student on each teacher's kept "
                              "traces (RUN_DIR/sft-by-teacher/NAME; eval label sft:NAME) to compare teachers")


class OnPolicyConfig(LocalEngineConfig):
    """kd.mode on-policy: rounds through the engine. Each round the current student samples `prompts_per_round`
    kept prompts (backend / sampling / batch_size / vllm below, the engine layer generate uses), the teacher
    scores exactly those tokens in one prefill pass (its raw top-`teacher_topk` logprobs at every completion
    position), and the KD trainer trains on those rows, continuing the previous round's adapter."""
    rounds: int = Field(1, ge=1, description="sample -> score -> train rounds (raise it and rerun to add rounds: "
                        "finished rounds are kept)")
    prompts_per_round: int = Field(128, ge=1, description="kept prompts the student samples each round (a seeded "
                                   "walk through all of them, reshuffled every pass)")
    teacher_topk: int = Field(20, ge=1, le=256, description="teacher log-probabilities kept per completion "
                              "position (Thinking Machines: top-20 is enough)")
    sampling: SamplingConfig = Field(SamplingConfig(n=1, temperature=1.0, top_p=1.0, max_tokens=512),
                                     description="how the student samples (temperature 1: its own distribution)")
    batch_size: int = Field(32, ge=1, description="prompts per written shard (and in flight on vllm)")


class KDSection(TrainSection):
    mode: Literal["auto", "offline", "online", "on-policy"] = Field("auto",
        description="auto (offline if logprobs were captured, else online), offline, online, on-policy")
    packing: bool = Field(False, description="pack rows into max_length sequences (padding-free; offline and "
                          "on-policy rounds)")
    alpha: float = Field(0.5, ge=0.0, le=1.0, description="weight of the KD term: (1-alpha)·CE + alpha·T²·KD "
                         "(on-policy default 1: CE on the student's own unverified samples would teach its errors)")
    temperature: float = Field(1.0, gt=0.0, description="softens teacher and student (bucket tail needs 1)")
    teacher_temperature: float = Field(1.0, gt=0.0, description=(
        "tempers the teacher's target alone, after `temperature`: p^(1/T) renormalised over its categories; "
        "below 1 sharpens it toward the teacher's greedy choice (bucket tail needs 1)"))
    divergence: Literal["forward", "reverse", "jsd"] = Field("forward",
        description="forward KL, reverse KL or generalized JSD (on-policy default: reverse)")
    jsd_beta: float = Field(0.5, gt=0.0, lt=1.0, description="JSD interpolation weight")
    tail: Literal["bucket", "renorm"] = Field("bucket",
        description="top-K teachers: bucket (missing mass as one category) or renorm (support only)")
    chunk_size: int = Field(256, ge=1, description="online mode: tokens per logit chunk")
    onpolicy: OnPolicyConfig = Field(default_factory=OnPolicyConfig, description="on-policy mode: rounds, prompts "
                                     "per round, the student's sampling and the engine that samples and scores")

    # keys a mode does not read: set in that mode they would be silently ignored, so they are refused
    _UNUSED_BY_MODE = {"on-policy": ("chunk_size",), "offline": ("chunk_size", "onpolicy"),
                       "online": ("tail", "onpolicy"), "auto": ("onpolicy",)}

    @model_validator(mode="after")
    def _keys_the_mode_reads(self):
        for key in self._UNUSED_BY_MODE.get(self.mode, ()):
            if key in self.model_fields_set:
                raise ValueError(f"{key} is not used in kd.mode {self.mode}; remove it")
        for key in ("temperature", "teacher_temperature"):
            if self.mode in ("offline", "on-policy") and self.tail == "bucket" and getattr(self, key) != 1.0:
                raise ValueError(f"tail: bucket with {key}: {getattr(self, key)}: the teacher's tail mass cannot be "
                                 f"tempered exactly from stored top-K logprobs; set {key}: 1.0 or tail: renorm")
        if self.mode == "on-policy":
            # the student's own samples: reverse KL (mode-seeking, the per-token loss of on-policy distillation)
            # and no CE term unless asked for
            if "divergence" not in self.model_fields_set:
                self.divergence = "reverse"
            if "alpha" not in self.model_fields_set:
                self.alpha = 1.0
            if self.onpolicy.sampling.max_tokens >= self.max_length:
                raise ValueError(f"onpolicy.sampling.max_tokens {self.onpolicy.sampling.max_tokens} must be below "
                                 f"max_length {self.max_length}: a row is a prompt plus the sampled tokens")
            if self.onpolicy.sampling.thinking_budget:
                raise ValueError("onpolicy.sampling.thinking_budget: forced closing tokens are not the student's "
                                 "own samples; remove it")
            if self.lora is not None and not self.lora.merge:
                raise ValueError("lora.merge: false with mode on-policy: every round's student samples through the "
                                 "engine from its merged folder; set lora.merge: true")
            if self.onpolicy.backend == "openai":
                raise ValueError("onpolicy.backend: openai cannot score a given completion (no prompt logprobs "
                                 "here); use hf or vllm")
        return self


class EvalConfig(EngineConfig):
    data: DataConfig | None = Field(None, description="benchmark prompts; required: the training prompts are "
                                                      "not an eval set")
    max_train_overlap: float = Field(0.01, ge=0.0, le=1.0, description=(
        "refuse when more than this fraction of eval items overlaps the training prompts (1.0: intended)"))
    overlap_ngram: int = Field(8, ge=1, description="word n-gram size for the train/eval overlap check")
    num_workers: int = Field(2, ge=1, description="verifier worker processes")
    timeout_s: float = Field(5.0, gt=0, description="seconds the math verifier may spend on one answer (programs: "
                             "sandbox.wall_s / cpu_s)")
    models: list[str] = Field(default_factory=lambda: ["teacher", "student", "final"], min_length=1,
        description="teacher, student, sft, kd, final, teacher:NAME / sft:NAME (with `teachers:`), or model "
                    "folders; retention is against `teacher`, else the first teacher:NAME listed")
    output_dir: str | None = Field(None, description="default: RUN_DIR/eval")
    sampling: SamplingConfig = Field(SamplingConfig(temperature=0.6, top_p=0.95, max_tokens=32768),
        description="how every model samples (k = sampling.n)")
    repeat_models: list[str] = Field([], description="models (eval.models labels) sampled a second time at "
                                     "repeat_batch_size: the run-to-run noise of greedy eval (engines whose batch "
                                     "composition changes the numerics) reported beside the paired differences")
    repeat_batch_size: int = Field(37, ge=1, description="batch size of the repeat (differs from batch_size, so "
                                   "every batch is composed differently)")
    speed_prompts: int = Field(8, ge=0, description="speed is timed on the first N eval prompts as one batch, "
                                                     "after a warm-up, apart from the scored samples (0: no timing)")
    speed_repeats: int = Field(3, ge=1, description="timed passes per model; tok/s is their median, the spread "
                                                    "their min-max")
    speed_budget_s: float = Field(120.0, gt=0, description="timed passes of one model stop once this many "
                                  "seconds are spent (at least one pass): a slow CPU times fewer passes of the same "
                                  "work, instead of minutes per model")
    speed_tokens: int = Field(256, ge=1, description="tokens every timed sequence decodes, end-of-sequence ignored "
                              "(at most sampling.max_tokens), so every model is timed on the same work")

    @model_validator(mode="after")
    def _repeat(self):
        for m in self.repeat_models:
            if m not in self.models:
                raise ValueError(f"repeat_models: {m!r} is not in eval.models ({', '.join(self.models)})")
        if self.repeat_models and self.repeat_batch_size == self.batch_size:
            raise ValueError(f"repeat_batch_size {self.repeat_batch_size} equals batch_size: the repeat would batch "
                             "the problems the same way and measure no noise")
        return self


class RecipeConfig(Section):
    run_dir: str = Field("runs/default", min_length=1, description="where every stage writes its subdir")
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads (None: all cores)")
    dataset_license: str = Field("unknown", description="license field of the dataset cards written with the "
                                 "generate and filter outputs (the prompt data's license and the teacher's terms "
                                 "decide it; e.g. mit)")
    teacher: ModelConfig | None = Field(None, description="the model that writes traces")
    teachers: list[NamedTeacher] | None = Field(None, description="several teachers writing one dataset, each "
                                                "trace marked with its teacher's name (instead of `teacher`)")
    student: ModelConfig | None = Field(None, description="the model being trained")
    data: DataConfig = Field(DataConfig(synthetic=SyntheticConfig()), description="training prompts")
    prompt: PromptConfig = Field(PromptConfig(), description="how a question becomes a chat prompt")
    generate: GenerateConfig = Field(GenerateConfig(), description="stage 1")
    filter: FilterConfig = Field(FilterConfig(), description="stage 2")
    sft: SFTSection = Field(SFTSection(), description="stage 3")
    kd: KDSection | None = Field(None, description="stage 4 (optional)")
    eval: EvalConfig = Field(EvalConfig(), description="stage 5")
    sandbox: SandboxConfig = Field(SandboxConfig(), description="limits and isolation of `task: code` programs")

    @field_validator("run_dir")
    @classmethod
    def _run_dir_is_a_dir(cls, v: str) -> str:
        if Path(v).exists() and not Path(v).is_dir():
            raise ValueError(f"{v} exists and is not a directory")
        return v

    @model_validator(mode="after")
    def _teacher_names(self):
        names = [t.name for t in self.teachers or []]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"teachers: name {twice[0]!r} is used twice; every teacher needs its own name")
        if self.teachers is not None and not self.teachers:
            raise ValueError("teachers: empty list; name at least one teacher, or use `teacher`")
        if self.teachers and self.teacher is not None:
            raise ValueError("teacher and teachers: both set; which one writes the traces would be a guess. Keep "
                             "`teachers:` (name the former `teacher` in it) or only `teacher:`")
        for t in self.teachers or []:
            if self.generate.logprobs and t.sampling is not None and t.sampling.thinking_budget:
                raise ValueError(f"teachers[{t.name}].sampling.thinking_budget with generate.logprobs: the forced "
                                 "closing tokens have no teacher distribution (offline KD would read fewer "
                                 "logprob rows than tokens); drop one of them")
        if self.sft.per_teacher and not self.teachers:
            raise ValueError("sft.per_teacher: needs `teachers:` (several named teachers) in the recipe")
        if self.teachers and "models" not in self.eval.model_fields_set:  # the default names every teacher
            self.eval.models = [f"teacher:{n}" for n in names] + ["student", "final"]
        for m in self.eval.models:  # which of several teachers `teacher` means would be a guess
            if m == "teacher" and self.teachers:
                raise ValueError("eval.models: 'teacher' is ambiguous with `teachers:`; name one as "
                                 f"'teacher:NAME' (one of {', '.join(names)})")
            if m.startswith("teacher:") and m.split(":", 1)[1] not in names:
                raise ValueError(f"eval.models: {m!r} names no teacher in `teachers:` ({', '.join(names) or 'none'})")
        return self

    def teacher_specs(self) -> list[tuple[str, ModelConfig, str, SamplingConfig]]:
        """(name, model, backend, sampling) of every teacher: `teachers`, else `teacher` named "teacher"."""
        g = self.generate
        if self.teachers:
            return [(t.name, ModelConfig(**t.model_dump(include=set(ModelConfig.model_fields))),
                     t.backend or g.backend, t.sampling or g.sampling) for t in self.teachers]
        return [("teacher", self.need("teacher"), g.backend, g.sampling)]

    def per_teacher_dir(self, name: str) -> Path:
        """Where sft.per_teacher puts the student trained on one teacher's traces (eval label sft:NAME)."""
        return Path(self.run_dir) / "sft-by-teacher" / name

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
    """Identity of the config sections that determine a stage's output (resume / skip / refuse): store.identity
    of the sections at their non-default values, minus the `drop` keys (which cannot change the output)."""
    from .store import identity

    payload = {}
    for key in keys:
        value = getattr(cfg, key)
        payload[key] = value.model_dump(mode="json", exclude_defaults=True) if isinstance(value, BaseModel) else value
    for dotted in drop:
        head, _, leaf = dotted.partition(".")
        if isinstance(payload.get(head), dict):
            payload[head].pop(leaf, None)
    return identity(payload)


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


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's own rule is that the last of two equal keys wins, silently: a recipe with `learning_rate` twice
    would train with whichever came last. Refused, naming the line."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


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
            loaded = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{p}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})") \
                from None
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


# ---------------------------------------------------------------- reference (`seqdistill recipe explain`)
def _section_type(annotation):
    for t in getattr(annotation, "__args__", ()) + (annotation,):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _type_name(annotation) -> str:
    return str(annotation).replace("typing.", "").replace("<class '", "").replace("'>", "")


def explain(key: str = "") -> str:
    """The schema reference for a dotted key: a field's type, default and description, or a section's fields."""
    model, path = RecipeConfig, []
    field = None
    for part in [p for p in key.split(".") if p]:
        if model is None or part not in model.model_fields:
            where = ".".join(path) or "the recipe"
            known = sorted(model.model_fields) if model else []
            raise ConfigError(f"recipe explain {key}: {where} has no key {part!r}; keys: {', '.join(known)}")
        field = model.model_fields[part]
        path.append(part)
        model = _section_type(field.annotation)
    lines = []
    if field is not None:
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        if isinstance(field.get_default(call_default_factory=True), BaseModel):
            default = "(section)"
        lines.append(f"{key}: {_type_name(field.annotation)} = {default}\n  {field.description or ''}")
    if model is not None:
        doc = (model.__doc__ or "").strip()
        if doc and field is None:
            lines.append(doc)
        for name, f in model.model_fields.items():
            sub = _section_type(f.annotation)
            default = "required" if f.is_required() else (
                "(section)" if sub else repr(f.get_default(call_default_factory=True)))
            lines.append(f"  {'.'.join(path + [name]):<40} {default:<14} {f.description or ''}")
    return "\n".join(lines)
