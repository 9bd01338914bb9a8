"""The two kinds of model that write items: ``hf:PATH`` and ``openai:MODEL``.

A backend takes a list of chat conversations and calls ``on_done(index, result)`` once per
conversation as soon as its answer is there (so the caller can persist it at once), with a
:class:`Completion` or an :class:`ItemFailure` (this item cannot be generated; the others go on).

- :class:`OpenAIBackend` posts to ``BASE_URL/chat/completions`` of any OpenAI-compatible server
  (OpenAI, vLLM, llama.cpp, TGI, Ollama, ...) with httpx and asyncio: ``concurrency`` requests in
  flight, each retried with exponential backoff and jitter after HTTP 408/409/425/429/5xx, a
  timeout or a dropped connection (``Retry-After`` is honoured). 401/403/404 stop the build as a
  usage error naming the endpoint and model. A request still failing after ``max_retries``
  retries stops the build (exit 1) once the requests in flight are done: what finished is cached
  and a rerun resumes. The API key is read from the environment variable the user names and goes
  only into the request's Authorization header: never into a message, a log line or the cache.
- :class:`HFBackend` runs a local transformers causal LM through the batched loop of
  :mod:`hybridft.core.generation`, greedy unless ``temperature`` > 0.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridft.core.errors import UsageError
from hybridft.core.generation import Messages

# Backoff before retry n (0-based): min(MAX, BASE * 2**n), times a random factor in [0.5, 1].
BACKOFF_BASE_S = 1.0
BACKOFF_MAX_S = 60.0
# A Retry-After longer than this is cut to it (a build should not sleep for an hour unannounced).
RETRY_AFTER_MAX_S = 300.0
RETRY_STATUSES = frozenset({408, 409, 425, 429})
# How many retries, and refused items, are announced on stderr one by one; the rest are only counted.
RETRIES_LOGGED = 5
FAILURES_LOGGED = 5


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class ItemFailure:
    """An item the backend cannot generate (e.g. HTTP 400 for its prompt); the reason is counted."""

    reason: str


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int
    temperature: float
    seed: int

    def key(self) -> dict[str, Any]:
        """What decides the text, for the cache key (the seed only matters when sampling)."""
        key: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature}
        if self.temperature > 0:
            key["seed"] = self.seed
        return key


@dataclass
class RequestStats:
    """What this run sent (differs between runs: retries, cache hits)."""

    requests: int = 0
    retries: int = 0
    refused: int = 0  # items the server answered with a 4xx other than 401/403/404
    usage_missing: int = 0
    retry_reasons: Counter[str] = field(default_factory=Counter)


class GenerationError(Exception):
    """The endpoint kept failing; the build stops (exit 1) and a rerun resumes from the cache."""


class RetriesExhausted(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


OnDone = Callable[[int, "Completion | ItemFailure"], None]


def backoff_delay(attempt: int) -> float:
    return min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2**attempt) * random.uniform(0.5, 1.0)


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number or an HTTP date), capped; None if absent/bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), RETRY_AFTER_MAX_S)


class OpenAIBackend:
    """Any OpenAI-compatible ``/chat/completions`` endpoint."""

    kind = "openai"

    def __init__(
        self,
        model: str,
        base_url: str,
        *,
        api_key: str | None,
        api_key_env: str | None,
        concurrency: int,
        max_retries: int,
        request_timeout: float,
        log: Callable[[str], None],
    ):
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.url = f"{self.base_url}/chat/completions"
        self._api_key = api_key  # only ever used in the Authorization header
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.max_retries = max_retries
        self.request_timeout = request_timeout
        self.log = log
        self.stats = RequestStats()
        self._answered = False  # the server has answered at least once (a refusal then is not a wrong address)

    def __repr__(self) -> str:
        return f"OpenAIBackend(model={self.model!r}, url={self.url!r})"

    def identity(self) -> dict[str, Any]:
        return {"backend": "openai", "model": self.model, "base_url": self.base_url}

    def describe(self) -> str:
        return f"{self.url} (model {self.model})"

    def generate(self, items: list[Messages], params: GenerationParams, on_done: OnDone) -> None:
        if items:
            interrupted = asyncio.run(self._run(items, params, on_done))
            if interrupted is not None:  # raised here, outside the event loop, to leave no task unretrieved
                raise interrupted

    async def _run(
        self, items: list[Messages], params: GenerationParams, on_done: OnDone
    ) -> KeyboardInterrupt | SystemExit | None:
        import httpx

        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        timeout = httpx.Timeout(self.request_timeout)
        pending = iter(range(len(items)))  # one queue for `concurrency` workers: the bound on requests in flight
        exhausted: list[str] = []
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=timeout) as client:

            async def worker() -> None:
                for index in pending:
                    if exhausted:  # the endpoint is failing: finish what is in flight, start nothing new
                        return
                    try:
                        result = await self._request(client, items[index], params)
                    except RetriesExhausted as exc:
                        exhausted.append(exc.reason)
                        return
                    on_done(index, result)

            workers = [asyncio.create_task(worker()) for _ in range(min(self.concurrency, len(items)))]
            try:
                await asyncio.gather(*workers)
            except BaseException as exc:
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                if isinstance(exc, (KeyboardInterrupt, SystemExit)):  # e.g. from on_done
                    return exc
                raise
        if exhausted:
            raise GenerationError(
                f"{self.describe()}: {len(exhausted)} request(s) still failing after "
                f"max_retries={self.max_retries} retries (last: {exhausted[-1]})"
            )
        return None

    async def _request(self, client: Any, messages: Messages, params: GenerationParams) -> Completion | ItemFailure:
        import httpx

        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
        }
        if params.temperature > 0:  # best effort: servers that honour it sample reproducibly
            body["seed"] = params.seed
        reason = ""
        for attempt in range(self.max_retries + 1):
            self.stats.requests += 1
            delay: float | None = None
            try:
                response = await client.post(self.url, json=body)
            except httpx.TimeoutException:
                reason = f"no response within request_timeout={self.request_timeout:g}s"
            except httpx.TransportError as exc:
                if isinstance(exc, httpx.ConnectError) and _refused(exc) and not self._answered:
                    # Nothing listens at the address and nothing ever answered there: a wrong
                    # --base-url, not a busy server; retrying would only hide it.
                    raise UsageError(
                        f"{self.describe()}: connection refused at {self.url}: check --base-url (is the server "
                        "running, on this host and port?)"
                    ) from None
                reason = f"connection failed ({type(exc).__name__})"
            else:
                status = response.status_code
                self._answered = True
                if status == 200:
                    return self._parse(response)
                if status in (401, 403):
                    key = (
                        f"the API key in the environment variable {self.api_key_env} (--api-key-env)"
                        if self.api_key_env
                        else "whether the endpoint needs a key (--api-key-env NAME; none was sent)"
                    )
                    raise UsageError(f"{self.describe()}: HTTP {status}, the endpoint refused the request: check {key}")
                if status == 404:
                    raise UsageError(
                        f"{self.describe()}: HTTP 404: check --base-url (the part before /chat/completions, "
                        "e.g. http://localhost:8000/v1) and the model name in --generator openai:MODEL"
                    )
                if status not in RETRY_STATUSES and status < 500:
                    self._log_failure(response)
                    return ItemFailure(f"http_{status}")
                reason = f"HTTP {status}"
                delay = retry_after(response.headers.get("retry-after"))
            if attempt == self.max_retries:
                break
            self.stats.retries += 1
            self.stats.retry_reasons[reason.split(" (")[0]] += 1
            if self.stats.retries <= RETRIES_LOGGED:
                more = " (further retries are only counted)" if self.stats.retries == RETRIES_LOGGED else ""
                self.log(f"{self.describe()}: {reason}; retry {attempt + 1} of {self.max_retries}{more}")
            await asyncio.sleep(backoff_delay(attempt) if delay is None else delay)
        raise RetriesExhausted(reason)

    def _parse(self, response: Any) -> Completion | ItemFailure:
        try:
            data = response.json()
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            return ItemFailure("bad_response")
        if not isinstance(text, str):
            return ItemFailure("bad_response")
        usage = data.get("usage") if isinstance(data, dict) else None
        if not isinstance(usage, dict):
            self.stats.usage_missing += 1
            usage = {}
        return Completion(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0))

    def _log_failure(self, response: Any) -> None:
        """Say why the server refused an item (its message, without anything secret)."""
        self.stats.refused += 1
        if self.stats.refused > FAILURES_LOGGED:
            return
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = response.text
        if self._api_key:
            message = message.replace(self._api_key, "***")
        more = " (further refusals are only counted)" if self.stats.refused == FAILURES_LOGGED else ""
        self.log(f"{self.describe()}: HTTP {response.status_code} for one item: {message[:200]}{more}")


def _refused(exc: BaseException) -> bool:
    """Whether a connection error comes from a refused connection (nothing listens there)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, ConnectionRefusedError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class HFBackend:
    """A local transformers causal LM (a folder, a hub id, or ``tiny``), batched."""

    kind = "hf"

    def __init__(self, path: str, *, batch_size: int, log: Callable[[str], None]):
        from hybridft.core.models import resolve_model

        self.name = path
        self.path = resolve_model(path)
        self.batch_size = batch_size
        self.log = log
        self.stats = RequestStats()
        self._loaded: tuple[Any, Any] | None = None

    def identity(self) -> dict[str, Any]:
        """The model, and what would make the same name generate other text: for a local folder
        the size and modification time of its weight and config files (a model trained again in
        place is another model), and the dtype it runs in."""
        from hybridft.core.models import inference_dtype

        local = Path(self.path)
        identity: dict[str, Any] = {"backend": "hf", "model": self.path, "dtype": str(inference_dtype()).split(".")[-1]}
        if local.is_dir():
            identity["model"] = str(local.resolve())
            identity["files"] = {
                file.name: [file.stat().st_size, file.stat().st_mtime_ns]
                for file in sorted(local.iterdir())
                if file.suffix in (".safetensors", ".bin") or file.name == "config.json"
            }
        return identity

    def describe(self) -> str:
        return f"hf:{self.name}"

    def _load(self) -> tuple[Any, Any]:
        if self._loaded is None:
            from hybridft.core.models import load_for_inference

            self.log(f"loading {self.describe()}")
            self._loaded = load_for_inference(self.path, what=f"generator=hf:{self.name}")
        return self._loaded

    def generate(self, items: list[Messages], params: GenerationParams, on_done: OnDone) -> None:
        if not items:
            return
        from hybridft.core.generation import generate_batches

        model, tokenizer = self._load()
        batches = generate_batches(
            model,
            tokenizer,
            items,
            batch_size=self.batch_size,
            max_new_tokens=params.max_new_tokens,
            temperature=params.temperature,
            seed=params.seed,
        )
        for batch in batches:
            self.stats.requests += 1
            for item in batch:
                ids = item.sequences[0]
                on_done(
                    item.index,
                    Completion(tokenizer.decode(ids, skip_special_tokens=True), item.prompt_tokens, len(ids)),
                )
