"""Options and inputs every evaluation shares: the build-data records to score, predictions
files, and the model that generates when there are no predictions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from hybridft.core.errors import UsageError
from hybridft.core.options import Option
from hybridft.core.readers import iter_rows
from hybridft.core.records import RECORDS, Schema


def common_options() -> list[Option]:
    return [
        Option("data", "path", None, "a build-data folder (its records.jsonl)", required=True),
        Option("split", "str", "eval", "which records to score", choices=("eval", "train", "all")),
        Option("predictions", "path", None, "score this JSONL instead of running a model"),
        Option("model", "str", None, "base model (hub id, folder, or tiny) when generating"),
        Option("adapter", "path", None, "a finetune run folder (its PEFT adapter) applied to --model"),
        Option("batch_size", "int", 8, "prompts generated together", minimum=1),
        Option("max_new_tokens", "int", 128, "longest generated answer", minimum=1),
        Option("limit", "int", None, "score only the first N records (after the split filter)", minimum=1),
        Option("compare", "path", None, "another report.json: show deltas and a comparison chart"),
        Option("out", "outpath", None, "report folder: report.json, examples.jsonl, charts", required=True),
        Option("overwrite", "bool", False, "replace a non-empty --out"),
    ]


def check_source(config: dict[str, Any]) -> list[str]:
    """Exactly one of --predictions and --model (an adapter alone names its base model)."""
    if config["predictions"] and (config["model"] or config["adapter"]):
        return ["give either --predictions or --model/--adapter, not both"]
    if not config["predictions"] and not (config["model"] or config["adapter"]):
        return ["give --predictions FILE, or --model (and --adapter) to generate"]
    return []


def load_records(config: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """Records of ``kind`` from ``--data``/records.jsonl in the chosen split, each checked against
    the kind's schema (:mod:`hybridft.core.records`)."""
    folder = Path(config["data"])
    path = folder / "records.jsonl" if folder.is_dir() else folder
    if not path.is_file():
        raise UsageError(f"data={folder}: no records.jsonl; give a folder written by `hybridft build-data {kind}`")
    selected = []
    for where, row in iter_rows(path):
        if row.get("kind") != kind:
            raise UsageError(f"{where}: a {row.get('kind')!r} record; this evaluation reads `build-data {kind}` output")
        if config["split"] in ("all", row.get("split")):
            selected.append((where, row))
    if config["limit"]:
        selected = selected[: config["limit"]]
    if not selected:
        raise UsageError(f"{path}: no records in split {config['split']!r}")
    return RECORDS[kind].checked(selected)


def read_keyed(
    path: str,
    known_ids: set[str] | dict[str, Any],
    schema: Schema,
    fits: Callable[[dict[str, Any]], str | None] | None = None,
) -> dict[str, dict[str, Any]]:
    """``--predictions`` rows keyed by id, each checked against ``schema`` and then ``fits`` (a
    check against its record). An id that is not among the evaluated records (a file for other
    data) and a second row for an id are errors naming file:line, like a malformed row; records
    without a row are counted by the caller."""
    seen: set[str] = set()

    def keyed(row: dict[str, Any]) -> str | None:
        if schema.across is not None and (problem := schema.across(row)) is not None:
            return problem
        if row["id"] not in known_ids:
            return f"id {row['id']!r} is not in the evaluated records"
        if row["id"] in seen:
            return f"second row for id {row['id']!r}"
        problem = fits(row) if fits is not None else None
        if problem is None:
            seen.add(row["id"])
        return problem

    rows = {row["id"]: row for row in replace(schema, across=keyed).checked(iter_rows(path))}
    if not rows:
        raise UsageError(f"{path}: no predictions (an empty input is an error, not an empty output)")
    return rows


def read_predictions(path: str, known_ids: set[str], schema: Schema) -> dict[str, Any]:
    """``{"id", "prediction"}`` rows: the prediction of each id (see :func:`read_keyed`)."""
    return {key: row["prediction"] for key, row in read_keyed(path, known_ids, schema).items()}
