"""Trainer rows from a build-data folder, shaped so that TRL puts the loss on answers only.

``messages`` rows become conversational prompt/completion pairs (every turn before the last
assistant turn is the prompt). TRL then masks the prompt with the model's own chat template, so
answer-only loss works with any template, not only those carrying ``{% generation %}`` markers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridft.core.errors import InputError, UsageError
from hybridft.core.models import MARKERS
from hybridft.core.outputs import sha256_file
from hybridft.core.readers import iter_rows, read_json_object
from hybridft.core.records import TRAINER_ROWS

SFT_FORMATS = ("messages", "prompt-completion")


@dataclass
class SFTData:
    """Train and eval rows as prompt/completion pairs, and what run.json records about them."""

    train: list[dict[str, Any]]
    eval: list[dict[str, Any]]
    format: str
    manifest_sha256: str
    markers: set[str] = field(default_factory=set)
    sources: dict[str, int] = field(default_factory=dict)


def read_manifest(data_dir: Path) -> dict[str, Any]:
    path = data_dir / "manifest.json"
    missing = f"data={data_dir}: no manifest.json; give a folder written by `hybridft build-data`"
    return read_json_object(path, missing, f"{path}: not valid JSON")


def load_sft_data(data_dir: str | Path) -> SFTData:
    """Read ``train.jsonl`` and ``eval.jsonl`` of a build-data folder for the ``sft`` trainer."""
    folder = Path(data_dir)
    manifest = read_manifest(folder)
    fmt = (manifest.get("options") or {}).get("format", "messages")
    if fmt not in SFT_FORMATS:
        raise UsageError(
            f"data={folder}: rows are in format {fmt!r}; the sft trainer reads {' or '.join(SFT_FORMATS)} "
            "(rebuild with --format messages)"
        )
    train_path = folder / "train.jsonl"
    if not train_path.is_file():
        raise UsageError(f"data={folder}: no train.jsonl")
    data = SFTData([], [], fmt, sha256_file(folder / "manifest.json"))
    for split, rows in (("train", data.train), ("eval", data.eval)):
        path = folder / f"{split}.jsonl"
        if not path.is_file():
            continue
        for where, row in iter_rows(path):
            pair = _as_pair(row, fmt, where)
            rows.append(pair)
            text = json.dumps(pair, ensure_ascii=False)
            data.markers.update(m for m in MARKERS if m in text)
            source = row.get("source")
            if split == "train" and isinstance(source, str):
                data.sources[source] = data.sources.get(source, 0) + 1
    if not data.train:
        raise UsageError(f"{train_path}: no training rows")
    return data


def _as_pair(row: dict[str, Any], fmt: str, where: str) -> dict[str, Any]:
    problem = TRAINER_ROWS[fmt].problem(row)
    if problem:
        raise InputError(f"{where}: {problem}")
    if fmt == "prompt-completion":
        return {"prompt": row["prompt"], "completion": row["completion"]}
    messages = row["messages"]
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    return {"prompt": clean[:-1], "completion": clean[-1:]}
