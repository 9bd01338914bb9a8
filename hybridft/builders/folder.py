"""A build's output folder, written atomically: records, trainer rows by split, the quality report,
the manifest, and for a shard its ``shard.json``; and the merge of a sharded build's folders.
``hybridft build-data`` and the Ray shard tasks (``builders.ray_shards``) both write through here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hybridft.builders.common import Quality
from hybridft.builders.merge import SHARD_FILE, merge_shards
from hybridft.core.errors import UsageError
from hybridft.core.outputs import (
    atomic_output_dir,
    check_output_dir,
    input_hashes,
    sha256_file,
    write_jsonl,
    write_manifest,
    write_records_and_splits,
)
from hybridft.core.progress import log

OUTPUT_FILES = ("eval.jsonl", "quality.jsonl", "records.jsonl", "train.jsonl")


def write_build(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """Build ``kind`` with ``config`` (resolved options) into ``config["out"]``; returns
    ``{"examples", "counts", "outputs"}``."""
    from hybridft.builders import BUILDERS
    from hybridft.core.readers import paused_gc
    from hybridft.core.render import render

    spec = BUILDERS[kind]
    check_output_dir(config["out"], config["overwrite"])
    fmt = config.get("format", "")  # mix has no --format: its rows keep their inputs' format
    render_row = spec.render or render
    # sha256 of inputs and outputs runs on other threads (hashlib and file reads release the GIL):
    # the inputs' while the records are built and written, the outputs' side by side.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sha256") as hasher, paused_gc():
        result = spec.build(config)
        input_digests = [hasher.submit(input_hashes, source) for source in result.inputs]
        with atomic_output_dir(config["out"], config["overwrite"]) as temp:
            # A builder may hand its records over as they are built (RoG): its counts are complete
            # once they are all written.
            written = write_records_and_splits(temp, result.records, lambda record: render_row(record, fmt))
            if not config.get("shard"):  # a shard of a small set may be empty: the merge checks the whole
                refuse_empty(kind, written["records"], result.counts, result.inputs)
            counts = {**result.counts, "train": written["train"], "eval": written["eval"]}
            check_splits(result.quality, written, config)
            write_jsonl(temp / "quality.jsonl", result.quality.rows())
            if result.positions is not None:  # a shard: what `build-data merge` needs to restore the order
                shard = {"shard": config["shard"], "positions": result.positions}
                (temp / SHARD_FILE).write_text(json.dumps(shard, ensure_ascii=False), encoding="utf-8")
            digests = [hasher.submit(sha256_file, temp / name) for name in OUTPUT_FILES]
            outputs = {name: digest.result() for name, digest in zip(OUTPUT_FILES, digests, strict=True)}
            inputs = {path: digest for future in input_digests for path, digest in future.result().items()}
            extra = {**result.manifest, "quality": result.quality.manifest()}
            manifest = write_manifest(
                temp, kind=kind, options=config, inputs=inputs, outputs=outputs, counts=counts, extra=extra
            )
    log(f"wrote {counts['train']} train and {counts['eval']} eval rows to {config['out']}")
    return {"examples": written["records"], "counts": counts, "outputs": manifest["outputs"]}


def write_merge(
    folders: Sequence[str | Path], out: str | Path, overwrite: bool, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Merge a sharded build's folders into ``out`` (see :mod:`hybridft.builders.merge`), ``extra``
    added to its manifest; returns ``{"kind", "examples", "counts", "outputs"}``."""
    check_output_dir(out, overwrite)
    with atomic_output_dir(out, overwrite) as temp:
        merged = merge_shards(folders, temp)
        first, counts = merged["first"], merged["counts"]
        refuse_empty(first["kind"], counts["train"] + counts["eval"], counts, list(first["inputs"]))
        options = {**first["options"], "shard": None, "out": str(out)}
        check_splits(merged["quality"], {"records": counts["train"] + counts["eval"], **counts}, options)
        write_jsonl(temp / "quality.jsonl", merged["quality"].rows())
        sections = {"quality": merged["quality"].manifest(), "shards": merged["shards"], **(extra or {})}
        manifest = write_manifest(
            temp, kind=first["kind"], options=options, inputs=first["inputs"], counts=counts, extra=sections
        )
    examples = counts["train"] + counts["eval"]
    return {"kind": first["kind"], "examples": examples, "counts": counts, "outputs": manifest["outputs"]}


def refuse_empty(kind: str, examples: int, counts: dict[str, Any], inputs: Sequence[Any]) -> None:
    """A build (or the merge of a sharded one) with no example is an exit-2 error saying why."""
    if examples:
        return
    reasons = json.dumps(counts.get("skipped", {}))
    sources = ", ".join(str(path) for path in inputs) or "the inputs"
    raise UsageError(f"{sources}: no {kind} examples could be built; skipped: {reasons}")


def check_splits(quality: Quality, written: dict[str, int], config: dict[str, Any]) -> None:
    """An empty split is a warning (and a quality count) that names the option to change. (Not
    for one shard of a build: the merge checks the whole.)"""
    fraction = config.get("eval_fraction")
    quality.counts.setdefault("empty_split", 0)
    if config.get("shard"):
        return
    for split in ("train", "eval"):
        if written[split] or (split == "eval" and fraction == 0):
            continue  # no eval split was asked for
        if fraction is None:  # mix: its rows keep their inputs' splits
            fix = f"rebuild the inputs so that their {split} splits hold rows"
        elif split == "eval":
            fix = f"raise --eval-fraction (now {fraction}) or add questions"
        else:
            fix = f"lower --eval-fraction (now {fraction}) or add questions"
        quality.note("empty_split", split, split=split, rows=written["records"], fix=fix)
        log(f"warning: the {split} split is empty ({written['records']} rows in all): {fix}")
