"""The generator layer: a model that writes questions, chain-of-thought answers, explanations and
query rewordings for the builders (``--generator hf:PATH`` or ``openai:MODEL``).

- :mod:`.prompts` every prompt, in one reviewed place;
- :mod:`.backends` a local transformers model, or any OpenAI-compatible endpoint;
- :mod:`.cache` generated items keyed by a hash of backend, model, prompt, input and parameters;
- :mod:`.run` :class:`~hybridft.generators.run.Generator`: cache + backend + progress + accounting;
- :mod:`.tasks` what each builder asks for, with the parsers and quality gates of the answers.

This module holds the options every builder that uses a generator declares, and their checks.
It imports nothing heavy: ``build-data KIND --help`` loads it.

May import: ``hybridft.core``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hybridft.core.options import Option

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def generator_options() -> list[Option]:
    return [
        Option(
            "generator",
            "str",
            "none",
            "model that writes items: none, hf:PATH (local transformers model; hf:tiny for tests) "
            "or openai:MODEL (any OpenAI-compatible endpoint)",
            none_turns_off=True,
        ),
        Option(
            "base_url",
            "str",
            None,
            f"openai: the endpoint up to /chat/completions (default $OPENAI_BASE_URL, else {DEFAULT_BASE_URL})",
        ),
        Option(
            "api_key_env",
            "str",
            "OPENAI_API_KEY",
            "openai: the NAME of the environment variable holding the API key (none: send no key)",
            none_turns_off=True,
        ),
        Option("concurrency", "int", 8, "openai: requests in flight at once", minimum=1),
        Option("max_retries", "int", 5, "openai: retries of a request after HTTP 429/5xx or a timeout", minimum=0),
        Option("request_timeout", "float", 120.0, "openai: seconds to wait for one response", minimum=0.1),
        Option("max_new_tokens", "int", 512, "generator: tokens written per item at most", minimum=1),
        Option("temperature", "float", 0.0, "generator: sampling temperature (0: greedy)", minimum=0, maximum=2),
        Option("generator_batch_size", "int", 8, "hf: prompts per generate() call", minimum=1),
        Option("price_input_per_1m", "float", 0.0, "price of 1M prompt tokens, for the manifest's cost", minimum=0),
        Option("price_output_per_1m", "float", 0.0, "price of 1M generated tokens, for the cost", minimum=0),
        Option(
            "generator_cache",
            "str",
            None,
            "sqlite file of generated items, reused across builds (default $HYBRIDFT_CACHE/generations.sqlite)",
        ),
    ]


def check_generator(config: dict[str, Any], needed_for: str | None) -> list[str]:
    """Check the generator options; ``needed_for`` says what needs a model (None: nothing does).

    Resolves ``generator`` (unset -> ``none``) and, for ``openai:``, ``base_url``, so that
    ``--dry-run`` and the manifest show the endpoint used. The API key itself is only looked up
    (never copied into the configuration).
    """
    errors: list[str] = []
    spec = config["generator"] = config["generator"] or "none"
    kind, _, name = spec.partition(":")
    if spec != "none" and (kind not in ("hf", "openai") or not name):
        errors.append(f"generator={spec}: expected none, hf:PATH or openai:MODEL")
        return errors
    if spec == "none":
        if needed_for:
            errors.append(f"{needed_for} needs a model: give --generator hf:PATH or --generator openai:MODEL")
        return errors
    if kind == "openai":
        base_url = config["base_url"] or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        config["base_url"] = base_url = base_url.rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors.append(f"base_url={base_url}: expected an http:// or https:// URL such as http://localhost:8000/v1")
        elif parts.username or parts.password or parts.query or parts.fragment:
            # The URL is written to the manifest: it must not carry a secret (nor can a query
            # string come before the /chat/completions that is appended to it).
            errors.append(
                "base_url: holds credentials, a query or a fragment; give the endpoint up to /v1 and the key "
                "through --api-key-env (it is never written out)"
            )
        env = config["api_key_env"]
        if env and not _ENV_NAME.fullmatch(env):
            # Not echoed: a key pasted here by mistake must not reach the terminal or a CI log.
            errors.append("api_key_env: expected the NAME of an environment variable (OPENAI_API_KEY), not its value")
        elif env and not os.environ.get(env):
            errors.append(
                f"api_key_env={env}: the environment variable {env} is not set "
                "(export it, or --api-key-env none for an endpoint without keys)"
            )
    cache = config["generator_cache"]
    out = config.get("out")
    if cache and out and Path(out).resolve() in Path(cache).resolve().parents:
        errors.append(f"generator_cache={cache}: must be outside --out (the output folder is replaced on success)")
    return errors
