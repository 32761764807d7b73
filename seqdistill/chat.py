"""Prompt templates from prompts/, chat rendering with the model's template, and reasoning/answer splitting."""

from __future__ import annotations

from pathlib import Path

from .config import PromptConfig
from .errors import ConfigError

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


def template_path(name: str) -> Path:
    p = Path(name)
    if p.suffix and p.is_file():
        return p
    candidate = PROMPTS_DIR / f"{name}.txt"
    if candidate.is_file():
        return candidate
    known = sorted(f.stem for f in PROMPTS_DIR.glob("*.txt"))
    raise ConfigError(f"prompt.template: {name!r} is neither a file nor one of {known}")


def load_template(name: str) -> str:
    text = template_path(name).read_text().rstrip("\n")
    if "{question}" not in text:
        raise ConfigError(f"prompt.template: {template_path(name)} has no {{question}} placeholder")
    return text


def build_messages(question: str, cfg: PromptConfig, template: str | None = None) -> list[dict]:
    user = (template if template is not None else load_template(cfg.template)).replace("{question}", question)
    msgs = [{"role": "system", "content": cfg.system}] if cfg.system else []
    return msgs + [{"role": "user", "content": user}]


def render(tokenizer, messages: list[dict], prefill: str | None = None) -> str:
    """The exact text the teacher continues: chat template + generation prompt + optional prefill."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError("the model's tokenizer has no chat template; set teacher.chat_template / "
                          "student.chat_template to a jinja file")
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return text + (prefill or "")


def _control_strings(tokenizer) -> list[str]:
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    return sorted({*tokenizer.all_special_tokens, *(t.content for t in added.values())} - {""}, key=len,
                  reverse=True)


def encode_prompt(tokenizer, messages: list[dict], prefill: str | None = None) -> tuple[str, list[int]]:
    """(text, token ids) of the rendered prompt, with message contents tokenised as *text*: a question that
    contains "<|im_end|><|im_start|>system" must not open a new chat turn (serving stacks split special tokens
    in user content the same way). Prompts without control strings in their content take the plain path."""
    text = render(tokenizer, messages, prefill)
    controls = _control_strings(tokenizer)
    if not any(c in m["content"] for m in messages for c in controls):
        return text, tokenizer(text, add_special_tokens=False)["input_ids"]
    marks = [f"\x00SEQDISTILL{i}\x00" for i in range(len(messages))]
    masked = render(tokenizer, [{**m, "content": mk} for m, mk in zip(messages, marks)], prefill)
    ids: list[int] = []
    rest = masked
    for m, mk in zip(messages, marks):
        head, sep, rest = rest.partition(mk)
        if not sep:  # the template dropped or changed this content: cannot split safely, refuse
            raise ConfigError("a prompt contains special-token strings and the chat template does not place "
                              "message contents verbatim; remove them from the data")
        ids += tokenizer(head, add_special_tokens=False)["input_ids"]
        ids += tokenizer(m["content"], add_special_tokens=False, split_special_tokens=True)["input_ids"]
    ids += tokenizer(rest, add_special_tokens=False)["input_ids"]
    return text, ids


def has_control_strings(tokenizer, messages: list[dict]) -> bool:
    controls = _control_strings(tokenizer)
    return any(c in (m.get("content") or "") for m in messages for c in controls)


def tokenize_chat_as_text(tokenizer, messages: list[dict], end_of_turn: str) -> dict:
    """{"input_ids", "labels"} of a whole conversation for training, with every message content
    tokenised as *text* (a "<|im_start|>system" typed into a question stays text, as in generate and eval; the
    template's tokenizer call would make it a real control token: a fake system turn in training). The mask
    marks assistant content and the end-of-turn token that closes it, as TRL's {% generation %} blocks do; labels
    are -100 elsewhere (TRL takes a tokenised dataset's labels as they are)."""
    marks = [f"\x00SEQDISTILL{i}\x00" for i in range(len(messages))]
    rest = tokenizer.apply_chat_template([{**m, "content": mk} for m, mk in zip(messages, marks)], tokenize=False)
    eot = tokenizer.convert_tokens_to_ids(end_of_turn)
    ids: list[int] = []
    mask: list[int] = []
    after_assistant = False
    for m, mk in zip(messages, marks):
        head, sep, rest = rest.partition(mk)
        if not sep:
            raise ConfigError("a training row contains special-token strings and the chat template does not place "
                              "message contents verbatim; remove them from the data")
        h = tokenizer(head, add_special_tokens=False)["input_ids"]
        ids += h
        mask += [1 if after_assistant and j == 0 and t == eot else 0 for j, t in enumerate(h)]
        c = tokenizer(m["content"], add_special_tokens=False, split_special_tokens=True)["input_ids"]
        after_assistant = m["role"] == "assistant"
        ids += c
        mask += [int(after_assistant)] * len(c)
    tail = tokenizer(rest, add_special_tokens=False)["input_ids"]
    ids += tail
    mask += [1 if after_assistant and j == 0 and t == eot else 0 for j, t in enumerate(tail)]
    return {"input_ids": ids, "labels": [t if k else -100 for t, k in zip(ids, mask)]}
