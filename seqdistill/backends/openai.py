"""OpenAI-compatible chat endpoint backend (`vllm serve`, SGLang, hosted APIs).

Async with bounded concurrency; retries 429/5xx/timeouts/connection errors with exponential backoff and
jitter. The API key is read from the env var the recipe names and is never logged or written out."""

from __future__ import annotations

import asyncio
import logging
import os
import random

import httpx

from ..config import OpenAIConfig
from ..errors import ConfigError, SeqdistillError
from .base import Completion, Params, PromptIn, prompt_seed

log = logging.getLogger(__name__)
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


async def _collect(tasks) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)


class OpenAIBackend:
    name = "openai"
    can_score = False  # a chat server returns no logprobs for a completion it did not write
    local_weights = False  # the server holds the model
    can_continue = False  # a chat API cannot continue a given token sequence
    static_batches = False
    reports_progress = False
    context_key = None
    max_logprobs_default = None

    def __init__(self, model_path: str, openai: OpenAIConfig, **_):
        self.cfg = openai
        self.model = openai.model or model_path
        self.headers = {"Content-Type": "application/json"}
        if openai.api_key_env:
            key = os.environ.get(openai.api_key_env)
            if key:
                self.headers["Authorization"] = f"Bearer {key}"
            else:
                log.warning("generate.openai.api_key_env: $%s is not set; sending requests without an API key "
                            "(fine for a local server, a 401 otherwise)", openai.api_key_env)
        self._secret = os.environ.get(openai.api_key_env) if openai.api_key_env else None

    def _redact(self, text: str) -> str:
        """A server may echo request headers in an error body: never let the key reach a message or log."""
        if self._secret:
            text = text.replace(self._secret, "[API key redacted]")
        return text

    def _body(self, pr: PromptIn, p: Params, j: int) -> dict:
        messages = list(pr.messages)
        body = {"model": self.model, "messages": messages, "n": 1, "temperature": p.temperature,
                "top_p": p.top_p, "max_tokens": p.max_tokens, "seed": prompt_seed(p.seed, pr.id) + j}
        if p.top_k:
            body["top_k"] = p.top_k
        if p.stop:
            body["stop"] = p.stop
        if pr.prefill:
            # vLLM / SGLang extension: continue a partial assistant turn (R1's "<think>\n" prefill)
            body["messages"] = messages + [{"role": "assistant", "content": pr.prefill}]
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body

    async def _post(self, client: httpx.AsyncClient, sem: asyncio.Semaphore, body: dict) -> dict:
        url = self.cfg.base_url.rstrip("/") + "/chat/completions"
        for attempt in range(self.cfg.max_retries + 1):
            async with sem:
                try:
                    resp = await client.post(url, json=body, headers=self.headers, timeout=self.cfg.timeout_s)
                    if resp.status_code == 200:
                        return resp.json()
                    if resp.status_code not in RETRY_STATUS:
                        raise SeqdistillError(f"{url}: HTTP {resp.status_code}: "
                                              f"{self._redact(resp.text)[:300]}")
                    problem = f"HTTP {resp.status_code}"
                    retry_after = resp.headers.get("retry-after")
                except (httpx.TimeoutException, httpx.TransportError, ValueError) as exc:
                    problem, retry_after = f"{type(exc).__name__}", None
            if attempt == self.cfg.max_retries:
                raise SeqdistillError(f"{url}: gave up after {attempt + 1} attempts (last: {problem})")
            delay = min(self.cfg.backoff_max_s, self.cfg.backoff_base_s * 2**attempt)
            delay = delay * (0.5 + random.random() / 2)  # jitter: clients that failed together retry apart
            if retry_after:
                try:
                    delay = max(delay, min(float(retry_after), self.cfg.backoff_max_s))
                except ValueError:
                    pass
            log.debug("retrying after %s in %.2fs", problem, delay)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    def _completion(self, resp: dict) -> Completion:
        try:
            choice = resp["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise SeqdistillError(f"{self.cfg.base_url}: malformed response: {self._redact(str(resp))[:300]}") from None
        usage = resp.get("usage") or {}
        reason = "length" if choice.get("finish_reason") == "length" else "stop"
        return Completion(text=text, finish_reason=reason, completion_tokens=int(usage.get("completion_tokens", 0)),
                          prompt_tokens=int(usage.get("prompt_tokens", 0)))

    async def _prompt(self, client, sem, pr: PromptIn, p: Params) -> tuple[PromptIn, list[Completion]]:
        answers = await asyncio.gather(*[self._post(client, sem, self._body(pr, p, j)) for j in range(p.n)])
        return pr, [self._completion(a) for a in answers]

    async def _run(self, prompts: list[PromptIn], p: Params) -> list[list[Completion]]:
        sem = asyncio.Semaphore(self.cfg.concurrency)
        async with httpx.AsyncClient() as client:
            done = await asyncio.gather(*[self._prompt(client, sem, pr, p) for pr in prompts])
        return [row for _, row in done]

    def generate(self, prompts: list[PromptIn], p: Params) -> list[list[Completion]]:
        self._check(p)
        return asyncio.run(self._run(prompts, p))

    def stream(self, prompts, p: Params, max_in_flight: int):
        """Yield (prompt, completions) as prompts complete, up to `max_in_flight` prompts (and
        `openai.concurrency` requests) at a time: no batch waits for its slowest request. Yields None after a
        second with nothing finished (a heartbeat for time-based flushing). The event loop runs in this thread,
        stepped between yields: no second thread, nothing left running when the consumer stops."""
        self._check(p)
        loop = asyncio.new_event_loop()
        sem = asyncio.Semaphore(self.cfg.concurrency)
        client = httpx.AsyncClient()
        source, running, unread = iter(prompts), set(), []
        try:
            while True:
                while len(running) < max_in_flight and (pr := next(source, None)) is not None:
                    running.add(loop.create_task(self._prompt(client, sem, pr, p)))
                if not running:
                    return
                finished, running = loop.run_until_complete(
                    asyncio.wait(running, timeout=1.0, return_when=asyncio.FIRST_COMPLETED))
                unread = list(finished)
                while unread:
                    yield unread.pop(0).result()  # a failed prompt raises here
                if not finished:
                    yield None
        finally:
            # as asyncio.run does: cancel every task left (a failed prompt's sibling requests too) and collect
            # them, so none is destroyed pending or with an unread exception at garbage collection
            for task in unread:  # finished beside a failed one: read, so no "exception never retrieved" at GC,
                if not task.cancelled():  # whose traceback printing from a GC in another thread corrupts
                    task.exception()  # CPython 3.11's AST state (later compiles fail with SystemError)
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(_collect(left))
            loop.run_until_complete(client.aclose())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def _check(self, p: Params) -> None:
        if p.logprobs:
            raise ConfigError("generate.logprobs: top-K capture needs the hf or vllm backend "
                              "(chat APIs return token strings, not ids)")

    def close(self) -> None:
        pass
