"""The hybrid: built datasets (RAFT, RoG, Invar-RAG generation rows, ...) sampled by weight into one
train/eval pair, so one adapter trains on all of them together.

Each split is mixed on its own, from the same split of every input (a question never changes
split). A split's total is the sum of the inputs' rows in that split, or ``size`` shared between
the splits in the inputs' train/eval ratio. Each input's quota is its weight's share of the total,
rounded by largest remainder (so realised shares match the weights to one row, with no sampling
noise). An input with more rows than its quota gives a seeded sample without replacement; one with
fewer gives every row ``quota // n`` times plus a seeded sample of the rest, so no row appears
more than once more than any other. The mixed split is shuffled with the seed. Records keep their
own schema and kind, plus::

    {"id": "INPUT/ORIGINAL_ID[#COPY]", "source": kind, "input": INPUT, "input_id": ORIGINAL_ID,
     "row": {...the input's trainer row...}}

and each train/eval row is the input's row with ``"source": kind`` added.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridft.builders.common import BuildResult
from hybridft.core.errors import InputError, UsageError
from hybridft.core.options import Option
from hybridft.core.progress import log
from hybridft.core.readers import iter_rows

SPLITS = ("train", "eval")

OPTIONS = [
    Option(
        "inputs",
        "list",
        None,
        "built datasets to mix, each DIR:WEIGHT (a build-data --out folder and a weight > 0)",
        required=True,
    ),
    Option("size", "int", None, "rows in train + eval together (default: as many as the inputs have)", minimum=1),
    Option("out", "outpath", None, "output folder (must not exist or be empty)", required=True),
    Option("overwrite", "bool", False, "replace a non-empty --out"),
    Option("seed", "int", 0, "seed for the sampling and the shuffle", minimum=0),
]


def parse_inputs(items: list[str]) -> tuple[list[tuple[str, float]], list[str]]:
    """``["out/raft:2", ...]`` -> ``[("out/raft", 2.0), ...]`` and the errors found."""
    parsed: list[tuple[str, float]] = []
    errors = []
    for item in items:
        folder, colon, weight_text = item.rpartition(":")
        if not colon or not folder:
            errors.append(f"inputs: {item!r}: expected DIR:WEIGHT (e.g. out/raft:1)")
            continue
        try:
            weight = float(weight_text)
        except ValueError:
            errors.append(f"inputs: {item!r}: weight {weight_text!r} is not a number")
            continue
        if not math.isfinite(weight) or weight <= 0:
            errors.append(f"inputs: {item!r}: weight must be a number above 0")
            continue
        if any(Path(folder) == Path(seen) for seen, _ in parsed):
            errors.append(f"inputs: {folder} is listed twice (give it one weight)")
            continue
        parsed.append((folder, weight))
    return parsed, errors


def check(config: dict[str, Any]) -> list[str]:
    """The syntax of ``inputs`` and the weights; the folders themselves are read when the build
    starts (so that a recipe naming folders yet to be built passes ``--dry-run``)."""
    parsed, errors = parse_inputs(config["inputs"])
    if not parsed and not errors:
        errors.append("inputs: name at least one DIR:WEIGHT")
    return errors


@dataclass
class Source:
    """One built dataset: its records paired with their trainer rows, per split."""

    label: str
    path: str
    weight: float
    format: str
    kind: str
    pairs: dict[str, list[tuple[dict[str, Any], dict[str, Any]]]] = field(default_factory=dict)


def read_source(folder: str, weight: float, label: str) -> Source:
    path = Path(folder)
    if not path.is_dir():
        raise UsageError(f"inputs: {folder}: no such folder")
    for name in ("manifest.json", "records.jsonl", "train.jsonl", "eval.jsonl"):
        if not (path / name).is_file():
            raise UsageError(f"inputs: {folder}: no {name} (not a hybridft build-data output folder)")
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        kind = manifest["kind"]
        fmt = manifest["options"].get("format") or manifest["counts"]["format"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise InputError(f"{path / 'manifest.json'}: not a hybridft manifest (needs kind and format)") from None
    records: dict[str, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for where, record in iter_rows(path / "records.jsonl"):
        split = record.get("split")
        if split not in SPLITS or not isinstance(record.get("id"), str) or not isinstance(record.get("kind"), str):
            raise InputError(f'{where}: a record needs "id", "kind" and "split" (train or eval)')
        records[split].append(record)
    source = Source(label, folder, weight, fmt, kind)
    for split in SPLITS:
        rows = [row for _, row in iter_rows(path / f"{split}.jsonl")]
        if len(rows) != len(records[split]):
            raise InputError(
                f"{path / f'{split}.jsonl'}: {len(rows)} rows, but records.jsonl has {len(records[split])} "
                f"{split} records (the folder was changed after it was built)"
            )
        source.pairs[split] = list(zip(records[split], rows, strict=True))
    return source


def quotas(total: int, weights: list[float]) -> list[int]:
    """Split ``total`` in proportion to ``weights`` by largest remainder (ties: earlier input)."""
    exact = [total * w / sum(weights) for w in weights]
    counts = [math.floor(x) for x in exact]
    by_remainder = sorted(range(len(weights)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def draw(n: int, quota: int, rng: random.Random) -> list[tuple[int, int]]:
    """``quota`` picks from ``n`` rows as ``(row, copy)``: every row ``quota // n`` times, then a
    sample without replacement for the rest."""
    copies, rest = divmod(quota, n)
    picks = [(i, c) for c in range(copies) for i in range(n)]
    return picks + [(i, copies) for i in sorted(rng.sample(range(n), rest))]


def build(config: dict[str, Any]) -> BuildResult:
    parsed, errors = parse_inputs(config["inputs"])
    if errors:
        raise UsageError(*errors)
    labels: Counter[str] = Counter()
    sources = []
    for folder, weight in parsed:
        name = Path(folder).resolve().name or "input"
        labels[name] += 1
        label = name if labels[name] == 1 else f"{name}-{labels[name]}"
        sources.append(read_source(folder, weight, label))
    formats = {s.format for s in sources}
    if len(formats) > 1:
        raise UsageError(
            "inputs have different formats, which cannot be mixed into one training set: "
            + ", ".join(f"{s.path} ({s.format})" for s in sources)
            + "; rebuild them with one --format"
        )

    available = {split: sum(len(s.pairs[split]) for s in sources) for split in SPLITS}
    totals = dict(available)
    if config["size"] is not None:
        everything = sum(available.values())
        totals["train"] = round(config["size"] * available["train"] / everything) if everything else 0
        totals["eval"] = config["size"] - totals["train"]

    seed = config["seed"]
    records: list[dict[str, Any]] = []
    realised = {s.label: dict.fromkeys(SPLITS, 0) for s in sources}
    repeated = dict.fromkeys(realised, 0)
    by_kind: Counter[str] = Counter()
    for split in SPLITS:
        present = [s for s in sources if s.pairs[split]]
        for s in sources:
            if not s.pairs[split] and totals[split]:
                log(f"{s.path} has no {split} rows: its weight is shared among the other inputs in {split}")
        mixed = []
        for source, quota in zip(present, quotas(totals[split], [s.weight for s in present]), strict=True):
            pairs = source.pairs[split]
            for index, copy in draw(len(pairs), quota, random.Random(f"{seed}:{source.label}:{split}")):
                record, row = pairs[index]
                kind = record.get("source") or record["kind"]
                suffix = f"#{copy + 1}" if copy else ""
                mixed.append(
                    {
                        **record,
                        "id": f"{source.label}/{record['id']}{suffix}",
                        "source": kind,
                        "input": source.label,
                        "input_id": record["id"],
                        "row": row,
                    }
                )
                by_kind[kind] += 1
            realised[source.label][split] = quota
            repeated[source.label] += max(0, quota - len(pairs))
            if quota > len(pairs):
                log(f"{source.path}: {quota} {split} rows drawn from {len(pairs)} (oversampled, with repeats)")
        random.Random(f"{seed}:{split}").shuffle(mixed)
        records.extend(mixed)

    counts: dict[str, Any] = {
        "format": sources[0].format,
        "examples": len(records),
        "inputs": {
            s.label: {
                "path": s.path,
                "kind": s.kind,
                "weight": s.weight,
                "available": {split: len(s.pairs[split]) for split in SPLITS},
            }
            for s in sources
        },
        "realised": realised,
        "repeated": repeated,
        "unused": {
            s.label: sum(max(0, len(s.pairs[split]) - realised[s.label][split]) for split in SPLITS) for s in sources
        },
        "by_source": dict(sorted(by_kind.items())),
        "skipped": {},
    }
    return BuildResult(records, counts, [folder for folder, _ in parsed])


def render(record: dict[str, Any], fmt: str) -> dict[str, Any]:
    """The input's own trainer row, with the kind of data it came from."""
    return {**record["row"], "source": record["source"]}
