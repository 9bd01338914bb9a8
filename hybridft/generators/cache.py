"""A persistent cache of generated items, so an interrupted build resumes without paying twice.

One sqlite file (WAL journal) maps a key to the generated text and its token counts. The key is
the sha256 of everything that decides the text: the backend and model (and endpoint), the task,
the prompt's hash, the rendered messages (prompt + input) and the generation parameters. A changed
option, prompt or input gives a new key, so a stale item is never reused. Each item is committed
as soon as its response arrives: a build killed midway keeps everything that had finished.

Only generated text and token counts are stored: never request headers, so never an API key.
The file lives outside the build's output folder (see :func:`default_path`), because that
folder is temporary until the build succeeds.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

from hybridft.generators.backends import Completion


def default_path() -> Path:
    """``$HYBRIDFT_CACHE/generations.sqlite`` (default ``~/.cache/hybridft``)."""
    from hybridft.core.models import cache_dir

    return cache_dir() / "generations.sqlite"


def item_key(identity: dict[str, Any], task: str, prompt_sha256: str, messages: Any, params: dict[str, Any]) -> str:
    payload = {"backend": identity, "task": task, "prompt": prompt_sha256, "messages": messages, "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class GenerationCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, isolation_level=None)  # autocommit: one item, one commit
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS items (key TEXT PRIMARY KEY, text TEXT NOT NULL,"
            " prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL)"
        )

    def get_many(self, keys: list[str]) -> dict[str, Completion]:
        found: dict[str, Completion] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):  # below sqlite's bound-parameter limit
            part = unique[start : start + 500]
            marks = ",".join("?" * len(part))
            for key, text, prompt_tokens, completion_tokens in self.db.execute(
                f"SELECT key, text, prompt_tokens, completion_tokens FROM items WHERE key IN ({marks})", part
            ):
                found[key] = Completion(text, prompt_tokens, completion_tokens)
        return found

    def put(self, key: str, completion: Completion) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO items VALUES (?, ?, ?, ?)",
            (key, completion.text, completion.prompt_tokens, completion.completion_tokens),
        )

    def close(self) -> None:
        self.db.close()
