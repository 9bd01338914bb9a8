"""Trainer rows from a build-data folder, or from a TRL-format dataset (a .jsonl / .parquet file or
``hf:NAME`` whose rows are ``messages`` or ``prompt``/``completion``), shaped so that TRL puts the
loss on answers only.

``messages`` rows become conversational prompt/completion pairs (every turn before the last
assistant turn is the prompt). TRL then masks the prompt with the model's own chat template, so
answer-only loss works with any template, not only those carrying ``{% generation %}`` markers.
The rows are Arrow datasets read, checked and shaped by :mod:`hybridft.training.rows`; what
run.json records about them is counted from their columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridft.core.errors import InputError, UsageError
from hybridft.core.outputs import sha256_file
from hybridft.core.readers import read_json_object
from hybridft.training import rows

SFT_FORMATS = ("messages", "prompt-completion")


@dataclass
class SFTData:
    """Train and eval rows as prompt/completion pairs (``datasets.Dataset``; ``eval`` None when
    there is no eval row), and what run.json records about them."""

    train: Any
    eval: Any
    format: str
    manifest_sha256: str
    markers: set[str] = field(default_factory=set)
    sources: dict[str, int] = field(default_factory=dict)
    # Prompts as chat messages (TRL applies the chat template) rather than plain text; the
    # evaluations ask the trained model the same way.
    conversational: bool = True


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


def load_sft_data(data_dir: str | Path, num_proc: int | None = None) -> SFTData:
    """Read ``train.jsonl`` and ``eval.jsonl`` of a build-data folder for the ``sft`` trainer, or
    every row of a TRL-format dataset (its train split; it has no eval split here), in
    ``num_proc`` processes."""
    source = str(data_dir)
    if source.startswith("hf:") or Path(source).is_file():
        return _load_dataset(source, num_proc)
    folder = Path(data_dir)
    manifest = read_manifest(folder)
    fmt = (manifest.get("options") or {}).get("format", "messages")
    if fmt not in SFT_FORMATS:
        raise UsageError(
            f"data={folder}: rows are in format {fmt!r}; the sft trainer reads {' or '.join(SFT_FORMATS)} "
            "(rebuild with --format messages)"
        )
    train, evaluation = rows.folder_splits(folder, fmt, num_proc)
    return _counted(train, evaluation, fmt, sha256_file(folder / "manifest.json"))


def _load_dataset(source: str, num_proc: int | None) -> SFTData:
    dataset, where = rows.source_rows(source)
    first = rows.first_row(dataset, where)
    if first is None:
        raise InputError(f"{source}: no rows (an empty input is an error, not an empty output)")
    fmt = dataset_format(first[1], first[0])
    digest = "hf-dataset" if source.startswith("hf:") else sha256_file(source)
    return _counted(rows.checked(dataset, where, fmt, num_proc), None, fmt, digest)


def _counted(train: Any, evaluation: Any, fmt: str, digest: str) -> SFTData:
    """The markers used (train and eval) and the rows per ``source`` (train; in order of first
    appearance), counted by Arrow over the columns, which then leave the rows."""
    import pyarrow as pa
    import pyarrow.compute as pc

    splits = [train] + ([evaluation] if evaluation is not None else [])
    markers = {m for split in splits for m in pc.unique(pc.list_flatten(split.data.column("markers"))).to_pylist()}
    counts = pc.value_counts(train.data.column("source").drop_null()).to_pylist()
    sources = {item["values"]: item["counts"] for item in counts}
    prompt_pairs = [split.select_columns(["prompt", "completion"]) for split in splits]
    prompt_type = train.data.column("prompt").type
    plain = pa.types.is_string(prompt_type) or pa.types.is_large_string(prompt_type)
    evaluation = prompt_pairs[1] if len(prompt_pairs) > 1 else None
    return SFTData(prompt_pairs[0], evaluation, fmt, digest, markers, sources, conversational=not plain)
