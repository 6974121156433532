"""The HTTP backend: any OpenAI-compatible chat-completions endpoint (vLLM, Ollama, llama.cpp
server, hosted APIs) through the official ``openai`` client.

What can go wrong, and what happens::

    408, 409, 429, 5xx, timeout, no connection  -> retried (exponential backoff with jitter,
                                                    Retry-After honoured), max_retries times
    retries used up, or any other status (400,   -> GenerationError: the task fails; the answers
    401, 404, ...)                                  it got are cached, so its retry resumes

The client's own retries are off, so every retry is ours and counted (:attr:`OpenAIGenerator.stats`).
Each answer is cached on disk (:mod:`.response_cache`) under a key of (model, prompt messages,
sampling parameters, sample index): a rerun sends nothing twice. The API key comes from an
environment variable or a Prefect Secret block, both read when the first request is made (on the
worker); only their names are configuration, and the key itself is never logged, stored or raised.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from refinery.tasks.exceptions import ConfigError, GenerationError
from refinery.tasks.synthesize.config import SynthesizeConfig
from refinery.tasks.synthesize.generators.base import Candidate, progress
from refinery.tasks.synthesize.generators.clean import clean_samples
from refinery.tasks.synthesize.generators.prompts import PromptedGenerator
from refinery.tasks.synthesize.generators.response_cache import ResponseCache, request_key

# Statuses worth asking again: timeout, conflict, rate limit; 5xx are added in _retryable.
RETRYABLE_STATUS = frozenset({408, 409, 429})
# What the client sends as the key to a server that needs none (the client insists on one).
NO_KEY = "no-key"
# A query is one line: the server stops at the first newline.
STOP = ["\n"]


class OpenAIGenerator(PromptedGenerator):
    """Few-shot query sampling from an OpenAI-compatible endpoint, with the prompts of the local
    backend (:mod:`.prompts`: a seeded style and attributes per passage).

    Every sample is one request (``n=1``, ``seed`` = the generator's seed + the sample index), so
    each answer has its own cache entry and servers that ignore ``n`` behave the same. Requests go
    out ``batch_size`` passages at a time, at most ``concurrency`` in flight. Every sample is a
    candidate, tidied by :func:`.clean.clean_samples`; the filters judge them.

    The endpoint and its request options come from ``cfg.openai`` (:class:`OpenAIConfig`), the
    sampling options from ``cfg`` (``candidates_per_passage``, ``max_new_tokens``, ``temperature``,
    ``top_p``, ``seed``, ``max_passage_chars``, ``styles``, ``few_shot``); ``cache_dir`` is where
    answers are cached.
    """

    name = "openai"

    def __init__(self, cfg: SynthesizeConfig, *, cache_dir: Path | None = None, show_progress: bool = True) -> None:
        o = cfg.openai
        if not o.model:
            raise ConfigError("the openai generator needs a model name (synthesize.openai.model)")
        super().__init__(cfg)
        self.model = o.model
        self.base_url = o.base_url
        self.api_key_env = o.api_key_env
        self.api_key_secret = o.api_key_secret
        self.concurrency = o.concurrency
        self.timeout_s = o.timeout_s
        self.max_retries = o.max_retries
        self.backoff_s = o.backoff_s
        self.max_backoff_s = o.max_backoff_s
        self.batch_size = o.batch_size
        self.cache = ResponseCache(cache_dir) if cache_dir is not None else None
        self.show_progress = show_progress
        # requests: HTTP requests sent; retries: of those, repeats after a retryable failure;
        # cache_hits: samples answered from the cache without a request
        self.stats = {"requests": 0, "retries": 0, "cache_hits": 0}
        self._lock = threading.Lock()
        self._jitter = random.Random()
        self._client = None
        self._redact = lambda text: text

    def generate(self, passages: Sequence[str]) -> list[list[Candidate]]:
        if not passages:
            return []
        attrs = [self.attributes_for(p) for p in passages]
        chats = [self.messages(p, a) for p, a in zip(passages, attrs)]
        n = self.cfg.candidates_per_passage
        samples: list[list[tuple[str, bool]]] = [[("", True)] * n for _ in passages]
        starts = range(0, len(passages), self.batch_size)
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai") as pool:
            for start in progress(starts, self.show_progress, "openai batches"):
                futures = {pool.submit(self._answer, chats[i], k): (i, k)
                           for i in range(start, min(start + self.batch_size, len(passages))) for k in range(n)}
                done, pending = wait(futures, return_when=FIRST_EXCEPTION)
                failed = next((f for f in done if f.exception() is not None), None)
                if failed is not None:
                    for f in pending:
                        f.cancel()
                    raise failed.exception()
                for future, (i, k) in futures.items():
                    samples[i][k] = future.result()
        return [
            [Candidate(query=q, prompt_id=a.prompt_id, style=a.style, attributes=a.as_dict(), unfinished=u)
             for q, u in clean_samples(s)]
            for a, s in zip(attrs, samples)
        ]

    def complete(self, chats: Sequence[list[dict[str, str]]], *, max_tokens: int) -> list[tuple[str, bool]]:
        """One answer per chat, (text, ended by itself), for longer texts than a query (rephrasing:
        no stop at a line break, up to ``max_tokens``); cached, retried and concurrent like
        :meth:`generate`'s samples."""
        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="openai") as pool:
            return list(pool.map(lambda chat: self._answer(chat, 0, max_tokens=max_tokens, stop=None), chats))

    def _request(self, chat: list[dict[str, str]], sample: int, *, max_tokens: int | None = None,
                 stop: list[str] | None = STOP) -> dict[str, Any]:
        request = {"model": self.model, "messages": chat, "temperature": self.cfg.temperature, "top_p": self.cfg.top_p,
                   "max_tokens": max_tokens or self.cfg.max_new_tokens, "stop": stop, "seed": self.cfg.seed + sample,
                   "n": 1}
        return request if stop is not None else {k: v for k, v in request.items() if k != "stop"}

    def _answer(self, chat: list[dict[str, str]], sample: int, **options: Any) -> tuple[str, bool]:
        """(text, ended by itself) of one sample: from the cache, else from the endpoint."""
        request = self._request(chat, sample, **options)
        key = request_key({**request, "sample": sample})
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            self._count("cache_hits")
            return hit["text"], hit["finished"]
        response = self._with_retries(request)
        choice = response.choices[0]
        answer = {"text": choice.message.content or "", "finished": choice.finish_reason != "length"}
        if self.cache is not None:
            self.cache.put(key, answer)
        return answer["text"], answer["finished"]

    def _with_retries(self, request: dict[str, Any]):
        import openai

        client = self._connect()
        for attempt in range(self.max_retries + 1):
            self._count("requests")
            try:
                return client.chat.completions.create(**request)
            except (openai.APIStatusError, openai.APIConnectionError) as exc:
                status = getattr(exc, "status_code", None)
                if not _retryable(exc):
                    hint = (f" (the key comes from ${self.api_key_env} or Prefect Secret "
                            f"{self.api_key_secret!r})" if status in (401, 403) else "")
                    raise GenerationError(self._redact(
                        f"{self.base_url} refused a chat completion for model {self.model!r}: "
                        f"{type(exc).__name__} {status}{hint}: {exc}")) from None
                if attempt == self.max_retries:
                    raise GenerationError(self._redact(
                        f"{self.base_url}: no answer for model {self.model!r} after {attempt + 1} attempts; "
                        f"last: {type(exc).__name__}{f' {status}' if status else ''}")) from None
                self._count("retries")
                time.sleep(self._delay(attempt, exc))
        raise AssertionError("unreachable")

    def _delay(self, attempt: int, exc: Exception) -> float:
        """Exponential backoff with jitter (half to all of the step), at least a Retry-After."""
        step = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        delay = self._jitter.uniform(step / 2, step)
        response = getattr(exc, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        try:
            delay = max(delay, min(float(retry_after), self.max_backoff_s)) if retry_after else delay
        except ValueError:
            pass  # an HTTP date: our own backoff will do
        return delay

    def _connect(self):
        with self._lock:
            if self._client is None:
                import openai

                key = self._api_key()
                if key:
                    self._redact = lambda text: text.replace(key, "***")
                self._client = openai.OpenAI(base_url=self.base_url, api_key=key or NO_KEY,
                                             timeout=self.timeout_s, max_retries=0)
            return self._client

    def _api_key(self) -> str | None:
        if self.api_key_secret:
            from prefect.blocks.system import Secret

            return Secret.load(self.api_key_secret).get()
        return os.environ.get(self.api_key_env) or None

    def _count(self, what: str) -> None:
        with self._lock:
            self.stats[what] += 1


def _retryable(exc: Exception) -> bool:
    import openai

    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return True
    status = getattr(exc, "status_code", None)
    return status is not None and (status in RETRYABLE_STATUS or status >= 500)
