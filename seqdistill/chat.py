"""Prompt templates from prompts/, chat rendering with the model's template, and reasoning/answer splitting."""

from __future__ import annotations

from pathlib import Path

from .config import PromptConfig
from .errors import ConfigError

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


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


def split_reasoning(text: str) -> tuple[str, str, bool]:
    """(reasoning, answer, think_closed). Text without any think tag is all answer."""
    if THINK_CLOSE in text:
        head, _, tail = text.rpartition(THINK_CLOSE)
        return head.replace(THINK_OPEN, "", 1).strip(), tail.strip(), True
    if THINK_OPEN in text:
        return text.replace(THINK_OPEN, "", 1).strip(), "", False
    return "", text.strip(), True
