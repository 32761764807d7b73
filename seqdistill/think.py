"""The reasoning tags and how an assistant turn splits into reasoning and answer: a leaf module (no seqdistill
imports) that the verifier's conventions (answers) and the chat helpers (chat) both read."""

from __future__ import annotations

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def split_reasoning(text: str) -> tuple[str, str, bool]:
    """(reasoning, answer, think_closed). Text without any think tag is all answer."""
    if THINK_CLOSE in text:
        head, _, tail = text.rpartition(THINK_CLOSE)
        return head.replace(THINK_OPEN, "", 1).strip(), tail.strip(), True
    if THINK_OPEN in text:
        return text.replace(THINK_OPEN, "", 1).strip(), "", False
    return "", text.strip(), True


def thinking_closed(text: str) -> bool:
    """The assistant text (prefill + completion) has closed its thinking: a `</think>` after the last `<think>`.
    Text without think tags is all thinking until the budget forces an answer (the budget caps the reasoning)."""
    close = text.rfind(THINK_CLOSE)
    return close >= 0 and close > text.rfind(THINK_OPEN)
