"""Trainer rows from a build-data folder, or from a TRL-format dataset (a .jsonl / .parquet file or
``hf:NAME`` whose rows are ``messages`` or ``prompt``/``completion``), shaped so that TRL puts the
loss on answers only.

``messages`` rows become conversational prompt/completion pairs (every turn before the last
assistant turn is the prompt). TRL then masks the prompt with the model's own chat template, so
answer-only loss works with any template, not only those carrying ``{% generation %}`` markers.
"""

from __future__ import annotations

import itertools
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


def dataset_format(first: dict[str, Any], where: str) -> str:
    """``messages`` or ``prompt-completion``, from the columns of a TRL-format dataset's first row."""
    if "messages" in first:
        return "messages"
    if "prompt" in first and "completion" in first:
        return "prompt-completion"
    columns = ", ".join(sorted(first)) or "none"
    raise InputError(f'{where}: expected TRL rows with "messages" or "prompt" and "completion" (columns: {columns})')


def load_sft_data(data_dir: str | Path) -> SFTData:
    """Read ``train.jsonl`` and ``eval.jsonl`` of a build-data folder for the ``sft`` trainer, or
    every row of a TRL-format dataset (its train split; it has no eval split here)."""
    source = str(data_dir)
    if source.startswith("hf:") or Path(source).is_file():
        return _load_dataset(source)
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
        _add_rows(data, rows, iter_rows(path), split == "train")
    if not data.train:
        raise UsageError(f"{train_path}: no training rows")
    return data


def _load_dataset(source: str) -> SFTData:
    rows = iter_rows(source)
    first = next(rows, None)
    if first is None:
        raise InputError(f"{source}: no rows (an empty input is an error, not an empty output)")
    fmt = dataset_format(first[1], first[0])
    digest = "hf-dataset" if source.startswith("hf:") else sha256_file(source)
    data = SFTData([], [], fmt, digest)
    _add_rows(data, data.train, itertools.chain([first], rows), True)
    return data


def _add_rows(data: SFTData, rows: list[dict[str, Any]], source: Any, count_sources: bool) -> None:
    for where, row in source:
        pair = _as_pair(row, data.format, where)
        rows.append(pair)
        text = json.dumps(pair, ensure_ascii=False)
        data.markers.update(m for m in MARKERS if m in text)
        origin = row.get("source")
        if count_sources and isinstance(origin, str):
            data.sources[origin] = data.sources.get(origin, 0) + 1


def _as_pair(row: dict[str, Any], fmt: str, where: str) -> dict[str, Any]:
    problem = TRAINER_ROWS[fmt].problem(row)
    if problem:
        raise InputError(f"{where}: {problem}")
    if fmt == "prompt-completion":
        return {"prompt": row["prompt"], "completion": row["completion"]}
    messages = row["messages"]
    clean = [{"role": m["role"], "content": m["content"]} for m in messages]
    return {"prompt": clean[:-1], "completion": clean[-1:]}
