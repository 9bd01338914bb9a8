"""``hybridft build-data merge SHARD_DIR... --out DIR``: the N folders of a ``--shard I/N`` build
joined into the folder the unsharded build writes.

Each shard folder holds its questions' records in input order and, in ``shard.json``, every built
question's position among all the input's questions; records, train and eval rows are merged by
that position (a k-way merge of the shards' lines, copied byte for byte), so records.jsonl,
train.jsonl and eval.jsonl are exactly the unsharded build's. The shards must come from one build:
the same kind, inputs (by sha256) and options but ``--shard``/``--out``, and every shard of the N
exactly once. The manifest sums the counts (those of the shared corpus are taken once), sums the
quality checks, keeps the first flagged rows in input order, and lists the shards.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hybridft.builders.common import FLAGGED_KEPT, Quality, Shard
from hybridft.core.errors import InputError, UsageError
from hybridft.core.readers import DOCUMENT_SKIP_REASONS, read_json_object

SHARD_FILE = "shard.json"
# Counts that describe the inputs every shard reads whole (the corpus), not its questions: the
# same in every shard, taken once.
SHARED_COUNTS = frozenset(("documents", "chunks", *DOCUMENT_SKIP_REASONS))
# Options that say how the shards were run (`--shards N --ray`), not what a shard builds.
RUN_OPTIONS = frozenset(("shards", "ray", "ray_gpus", "ray_retries"))
# Options that may differ between the shards of one build (one built by hand with --shard I/N
# beside others built on Ray included).
PER_SHARD_OPTIONS = frozenset(("shard", "out", "overwrite")) | RUN_OPTIONS


class ShardFolder:
    """One shard's folder: its manifest, shard spec and question positions, checked."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.manifest, shard = (_read_json(self.folder / name) for name in ("manifest.json", SHARD_FILE))
        positions = shard.get("positions")
        try:
            parsed = Shard.parse(shard.get("shard"))
        except ValueError as error:
            raise InputError(f"{self.folder / SHARD_FILE}: {error}") from None
        if parsed is None or not isinstance(positions, dict):
            raise InputError(f"{self.folder / SHARD_FILE}: expected {{'shard': 'I/N', 'positions': {{id: position}}}}")
        self.index, self.count = parsed.index, parsed.count
        self.positions: dict[str, int] = positions

    def lines(self, name: str) -> Iterator[bytes]:
        with open(self.folder / name, "rb") as handle:
            yield from handle


def merge_shards(folders: Sequence[str | Path], out: Path) -> dict[str, Any]:
    """Write the merged records.jsonl, train.jsonl, eval.jsonl and quality.jsonl into ``out``
    (an empty folder) and return the merged manifest's ``counts``, ``quality`` and ``shards``,
    and the first shard's manifest (for its options and inputs)."""
    shards = check_shards([ShardFolder(folder) for folder in folders])
    position = {row_id: at for shard in shards for row_id, at in shard.positions.items()}
    _merge_lines(shards, position, out)
    quality = _merge_quality(shards, position, out)
    counts = merge_counts([shard.manifest.get("counts", {}) for shard in shards])
    listed = [{"dir": str(shard.folder), "shard": f"{shard.index}/{shard.count}"} for shard in shards]
    return {"counts": counts, "quality": quality, "shards": listed, "first": shards[0].manifest}


def check_shards(shards: list[ShardFolder]) -> list[ShardFolder]:
    """The shards in shard order; a foreign, missing or repeated shard is an exit-2 error."""
    first = shards[0]
    errors = []
    for shard in shards[1:]:
        for key in ("kind", "inputs"):
            if shard.manifest.get(key) != first.manifest.get(key):
                errors.append(f"{shard.folder}: its {key} differ from {first.folder}'s: not a shard of the same build")
        mine, theirs = (build_options(folder.manifest.get("options", {})) for folder in (shard, first))
        differ = sorted(key for key in mine.keys() | theirs.keys() if mine.get(key) != theirs.get(key))
        if differ:
            errors.append(f"{shard.folder}: options {', '.join(differ)} differ from {first.folder}'s")
        if shard.count != first.count:
            errors.append(f"{shard.folder}: shard {shard.index}/{shard.count}, but {first.folder} is of {first.count}")
    seen: dict[int, Path] = {}
    for shard in shards:
        if shard.index in seen:
            errors.append(f"shard {shard.index}/{shard.count} given twice: {seen[shard.index]} and {shard.folder}")
        seen[shard.index] = shard.folder
    missing = sorted(set(range(first.count)) - set(seen))
    if missing and not errors:
        names = ", ".join(f"{index}/{first.count}" for index in missing)
        errors.append(f"missing shard(s) {names}: give all {first.count} folders of the build")
    if errors:
        raise UsageError(*errors)
    return sorted(shards, key=lambda shard: shard.index)


def build_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options that decide what a shard holds (those all shards of one build share)."""
    return {k: v for k, v in options.items() if k not in PER_SHARD_OPTIONS}


def _merge_lines(shards: list[ShardFolder], position: dict[str, int], out: Path) -> None:
    """records.jsonl in input order (a heap over the shards' next records), and each record's
    train or eval row copied from its shard's next line of that split."""
    splits = {shard.index: {"train": shard.lines("train.jsonl"), "eval": shard.lines("eval.jsonl")} for shard in shards}

    def keyed(shard: ShardFolder) -> Iterator[tuple[int, int, int, bytes, str]]:
        for order, line in enumerate(shard.lines("records.jsonl")):
            record = json.loads(line)
            yield position[record["source_id"]], shard.index, order, line, record["split"]

    with (
        open(out / "records.jsonl", "wb") as records,
        open(out / "train.jsonl", "wb") as train,
        open(out / "eval.jsonl", "wb") as evaluation,
    ):
        rows = {"train": train, "eval": evaluation}
        for _, index, _, line, split in heapq.merge(*(keyed(shard) for shard in shards)):
            records.write(line)
            rows[split].write(next(splits[index][split]))


def _merge_quality(shards: list[ShardFolder], position: dict[str, int], out: Path) -> Quality:
    """Summed checks; each check's first flagged rows in input order. Empty splits are checked
    again on the merged folder, by the caller."""
    quality = Quality()
    flagged: dict[str, list[tuple[int, int, dict[str, Any]]]] = {}
    for shard in shards:
        for check, count in shard.manifest.get("quality", {}).items():
            if check != "empty_split":
                quality.counts[check] += count
        path = shard.folder / "quality.jsonl"
        if path.is_file():
            for order, line in enumerate(shard.lines("quality.jsonl")):
                row = json.loads(line)
                if row["check"] != "empty_split":
                    flagged.setdefault(row["check"], []).append((position.get(row["id"], -1), order, row))
    for check in sorted(flagged):
        quality.flagged[check] = [row for _, _, row in sorted(flagged[check], key=lambda item: item[:2])][:FLAGGED_KEPT]
    return quality


def merge_counts(counts: list[dict[str, Any]]) -> dict[str, Any]:
    """Numbers summed key by key (nested sections too); :data:`SHARED_COUNTS` taken once."""
    merged: dict[str, Any] = {}
    for shard_counts in counts:
        for key, value in shard_counts.items():
            if key not in merged:
                merged[key] = merge_counts([value]) if isinstance(value, dict) else value
            elif isinstance(value, dict):
                merged[key] = merge_counts([merged[key], value])
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in SHARED_COUNTS:
                merged[key] += value
    return merged


def _read_json(path: Path) -> dict[str, Any]:
    missing = f"{path.parent}: no {path.name}: not the --out folder of a `build-data --shard I/N` build"
    return read_json_object(path, missing, f"{path}: not valid JSON")
