"""A generator as the builders use it: cache lookups, the backend for what is missing, a progress
bar on stderr, and the accounting the manifest records (tokens, cost, requests, prompts)."""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from hybridft.core.progress import log, progress_bar
from hybridft.generators.backends import (
    Completion,
    GenerationError,
    GenerationParams,
    HFBackend,
    ItemFailure,
    OpenAIBackend,
)
from hybridft.generators.cache import GenerationCache, default_path, item_key
from hybridft.generators.prompts import Prompt


class Generator:
    """Built from resolved options (after :func:`hybridft.generators.check_generator`)."""

    def __init__(self, config: dict[str, Any]):
        kind, _, name = config["generator"].partition(":")
        self.spec = config["generator"]
        self.backend: OpenAIBackend | HFBackend
        if kind == "openai":
            env = config["api_key_env"]
            self.backend = OpenAIBackend(
                name,
                config["base_url"],
                api_key=os.environ.get(env) if env else None,
                api_key_env=env,
                concurrency=config["concurrency"],
                max_retries=config["max_retries"],
                request_timeout=config["request_timeout"],
                log=log,
            )
        else:
            self.backend = HFBackend(name, batch_size=config["generator_batch_size"], log=log)
        self.params = GenerationParams(config["max_new_tokens"], config["temperature"], config["seed"])
        self.prices = (config["price_input_per_1m"], config["price_output_per_1m"])
        self.cache_path = config["generator_cache"] or str(default_path())
        self.cache = GenerationCache(self.cache_path)
        self.prompts: dict[str, Prompt] = {}
        # Per task: tokens of every item used (cached or not: the data set's cost) and what this run did.
        self.tokens: dict[str, Counter[str]] = {}
        self.this_run: Counter[str] = Counter()

    def close(self) -> None:
        self.cache.close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return round((prompt_tokens * self.prices[0] + completion_tokens * self.prices[1]) / 1e6, 6)

    def run(self, prompt: Prompt, inputs: list[dict[str, Any]], description: str) -> list[str | None]:
        """The generated text for each input (fields of ``prompt``), None where it failed.

        Items that share a key are generated (and their tokens counted) once. Per prompt, the
        manifest's ``tasks`` section counts items, cache hits, tokens and failures by reason.
        """
        self.prompts[prompt.name] = prompt
        tokens = self.tokens.setdefault(prompt.name, Counter())
        identity, params = self.backend.identity(), self.params.key()
        messages = [prompt.messages(**fields) for fields in inputs]
        keys = [item_key(identity, prompt.name, prompt.sha256, m, params) for m in messages]
        found: dict[str, Completion | ItemFailure] = dict(self.cache.get_many(keys))
        first: dict[str, int] = {}
        for n, key in enumerate(keys):
            first.setdefault(key, n)
        todo = [key for key in first if key not in found]
        todo_messages = [messages[first[key]] for key in todo]
        tokens["items"] += len(first)
        tokens["cached"] += len(first) - len(todo)
        if todo:
            log(f"{description}: {len(todo)} to generate with {self.backend.describe()}, {len(found)} cached")
            self._generate(todo, todo_messages, found, description)
        for key in first:
            result = found.get(key)
            if isinstance(result, Completion):
                tokens["prompt_tokens"] += result.prompt_tokens
                tokens["completion_tokens"] += result.completion_tokens
            else:
                tokens[f"failed_{result.reason if result else 'missing'}"] += 1
        outputs = [found.get(key) for key in keys]
        return [result.text if isinstance(result, Completion) else None for result in outputs]

    def _generate(
        self,
        todo: list[str],
        todo_messages: list[Any],
        found: dict[str, Completion | ItemFailure],
        description: str,
    ) -> None:
        def on_done(index: int, result: Completion | ItemFailure) -> None:
            key = todo[index]
            found[key] = result
            if isinstance(result, Completion):
                self.cache.put(key, result)  # committed now: a build killed later keeps it
                self.this_run["generated"] += 1
                self.this_run["prompt_tokens"] += result.prompt_tokens
                self.this_run["completion_tokens"] += result.completion_tokens
            advance()

        with progress_bar(description, len(todo)) as advance:
            try:
                self.backend.generate(todo_messages, self.params, on_done)
            except GenerationError as exc:
                done = sum(isinstance(found.get(key), Completion) for key in todo)
                raise GenerationError(
                    f"{exc}; {done} item(s) generated in this run are cached in {self.cache_path}: "
                    "run the same command again to resume"
                ) from None

    def manifest(self) -> dict[str, Any]:
        """The manifest's ``generator`` section. ``tokens``/``cost_usd`` are those of every item the
        data set uses (cached or not) and repeat across reruns; ``this_run`` is what this run sent."""
        total_in = sum(t["prompt_tokens"] for t in self.tokens.values())
        total_out = sum(t["completion_tokens"] for t in self.tokens.values())
        backend = self.backend
        stats = backend.stats
        section: dict[str, Any] = {
            "generator": self.spec,
            **({"base_url": backend.base_url} if isinstance(backend, OpenAIBackend) else {}),
            "params": self.params.key(),
            "cache": self.cache_path,
            "prompts": {name: prompt.manifest() for name, prompt in sorted(self.prompts.items())},
            "tasks": {name: dict(sorted(counter.items())) for name, counter in sorted(self.tokens.items())},
            "tokens": {"prompt": total_in, "completion": total_out},
            "prices_per_1m": {"input": self.prices[0], "output": self.prices[1]},
            "cost_usd": self.cost(total_in, total_out),
            "this_run": {
                "requests": stats.requests,
                "retries": stats.retries,
                "retry_reasons": dict(sorted(stats.retry_reasons.items())),
                "responses_without_usage": stats.usage_missing,
                "generated": self.this_run["generated"],
                "prompt_tokens": self.this_run["prompt_tokens"],
                "completion_tokens": self.this_run["completion_tokens"],
                "cost_usd": self.cost(self.this_run["prompt_tokens"], self.this_run["completion_tokens"]),
            },
        }
        return section
