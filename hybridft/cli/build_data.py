"""``hybridft build-data KIND``: inputs -> records -> trainer rows, written atomically."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hybridft.cli.common import EXIT_OK, emit, parse_kind_command, print_resolved
from hybridft.core.errors import UsageError
from hybridft.core.progress import log

USAGE = """\
usage: hybridft build-data KIND [--recipe FILE.yaml] [--OPTION VALUE ...] --out DIR

Build RAG-aware fine-tuning data. KIND: {kinds}.
A recipe may carry `kind:`, and then KIND may be left out. Every recipe key is also a
long option (max_hops <-> --max-hops); the command line wins over the recipe.

  --recipe, --config FILE   YAML recipe (relative input paths start at its folder)
  --dry-run                 check and print the resolved options; do no work, write nothing
  --json                    print the result as one JSON document on stdout
  --debug                   show tracebacks
  hybridft build-data KIND --help   lists KIND's options
"""


MERGE_USAGE = """\
usage: hybridft build-data merge SHARD_DIR... --out DIR [--overwrite] [--json]

Join the folders of a `build-data KIND ... --shard I/N` build (all N of them, any order) into the
folder the unsharded build writes: records.jsonl, train.jsonl and eval.jsonl byte for byte; the
manifest sums the counts and lists the shards.
"""


def main(tokens: list[str]) -> int:
    from hybridft.builders import BUILDERS

    if tokens[:1] == ["merge"]:
        return _merge(tokens[1:])
    command = parse_kind_command(tokens, BUILDERS, name="build-data", usage=USAGE)
    if command is None:
        return EXIT_OK
    as_json = bool(command.control.get("json"))
    if command.control.get("dry_run"):
        if command.spec.read_inputs is not None:
            command.spec.read_inputs(command.config)  # a malformed row or too small a corpus: exit 2 now
        print_resolved("build-data", command.kind, command.config, as_json)
        return EXIT_OK
    return _run(command.kind, command.spec, command.config, as_json)


def _run(kind: str, spec: Any, config: dict[str, Any], as_json: bool) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from hybridft.core.outputs import (
        atomic_output_dir,
        check_output_dir,
        input_hashes,
        write_jsonl,
        write_manifest,
        write_records_and_splits,
    )
    from hybridft.core.readers import paused_gc
    from hybridft.core.render import render

    check_output_dir(config["out"], config["overwrite"])
    fmt = config.get("format", "")  # mix has no --format: its rows keep their inputs' format
    render_row = spec.render or render
    # sha256 of inputs and outputs runs on other threads (hashlib and file reads release the GIL):
    # the inputs' while the records are built and written, the three outputs' side by side.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="sha256") as hasher, paused_gc():
        result = spec.build(config)
        input_digests = [hasher.submit(input_hashes, source) for source in result.inputs]
        with atomic_output_dir(config["out"], config["overwrite"]) as temp:
            # A builder may hand its records over as they are built (RoG): its counts are complete
            # once they are all written.
            written = write_records_and_splits(temp, result.records, lambda record: render_row(record, fmt))
            if not written["records"]:
                reasons = json.dumps(result.counts.get("skipped", {}))
                sources = ", ".join(str(path) for path in result.inputs) or "the inputs"
                raise UsageError(f"{sources}: no {kind} examples could be built; skipped: {reasons}")
            counts = {**result.counts, "train": written["train"], "eval": written["eval"]}
            _check_splits(result.quality, written, config)
            write_jsonl(temp / "quality.jsonl", result.quality.rows())
            if result.positions is not None:  # a shard: what `build-data merge` needs to restore the order
                from hybridft.builders.merge import SHARD_FILE

                shard = {"shard": config["shard"], "positions": result.positions}
                (temp / SHARD_FILE).write_text(json.dumps(shard, ensure_ascii=False), encoding="utf-8")
            outputs = _output_hashes(hasher, temp)
            inputs = {path: digest for future in input_digests for path, digest in future.result().items()}
            extra = {**result.manifest, "quality": result.quality.manifest()}
            manifest = write_manifest(
                temp, kind=kind, options=config, inputs=inputs, outputs=outputs, counts=counts, extra=extra
            )
    log(f"wrote {counts['train']} train and {counts['eval']} eval rows to {config['out']}")
    skipped = {k: v for k, v in counts.get("skipped", {}).items() if v}
    human = (
        f"{kind}: {written['records']} examples ({counts['train']} train, {counts['eval']} eval) -> {config['out']}"
        + (f"\nskipped: {', '.join(f'{k}={v}' for k, v in skipped.items())}" if skipped else "")
    )
    emit(
        {
            "command": "build-data",
            "kind": kind,
            "out": str(config["out"]),
            "counts": counts,
            "outputs": manifest["outputs"],
        },
        as_json,
        human,
    )
    return EXIT_OK


def _merge(tokens: list[str]) -> int:
    from hybridft.builders.merge import merge_shards
    from hybridft.core.outputs import atomic_output_dir, check_output_dir, write_jsonl, write_manifest

    if not tokens or "--help" in tokens or "-h" in tokens:
        print(MERGE_USAGE)
        return EXIT_OK
    folders, out, flags = _merge_arguments(tokens)
    check_output_dir(out, "--overwrite" in flags)
    with atomic_output_dir(out, "--overwrite" in flags) as temp:
        merged = merge_shards(folders, temp)
        first, counts = merged["first"], merged["counts"]
        options = {**first["options"], "shard": None, "out": str(out)}
        _check_splits(merged["quality"], {"records": counts["train"] + counts["eval"], **counts}, options)
        write_jsonl(temp / "quality.jsonl", merged["quality"].rows())
        manifest = write_manifest(
            temp,
            kind=first["kind"],
            options=options,
            inputs=first["inputs"],
            counts=counts,
            extra={"quality": merged["quality"].manifest(), "shards": merged["shards"]},
        )
    human = f"merge: {len(folders)} shards, {counts['train']} train and {counts['eval']} eval rows -> {out}"
    result = {"command": "build-data merge", "kind": first["kind"], "out": str(out), "counts": counts}
    emit({**result, "outputs": manifest["outputs"]}, "--json" in flags, human)
    return EXIT_OK


def _merge_arguments(tokens: list[str]) -> tuple[list[str], Path, set[str]]:
    folders: list[str] = []
    flags: set[str] = set()
    out = None
    rest = iter(tokens)
    for token in rest:
        if token == "--out":
            out = next(rest, None)
            if out is None:
                raise UsageError("--out needs a folder")
        elif token in ("--overwrite", "--json"):
            flags.add(token)
        elif token.startswith("-"):
            raise UsageError(f"{token}: unknown option of build-data merge (see `hybridft build-data merge --help`)")
        else:
            folders.append(token)
    errors = [] if folders else ["give the shard folders: hybridft build-data merge SHARD_DIR... --out DIR"]
    errors += [] if out else ["--out is required"]
    errors += [f"{folder}: no such folder" for folder in folders if not Path(folder).is_dir()]
    if errors:
        raise UsageError(*errors)
    assert out is not None
    return folders, Path(out), flags


def _check_splits(quality: Any, written: dict[str, int], config: dict[str, Any]) -> None:
    """An empty split is a warning (and a quality count) that names the option to change. (Not
    for one shard of a build: `build-data merge` checks the whole.)"""
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


def _output_hashes(hasher: Any, folder: Path) -> dict[str, str]:
    """sha256 of the output files, by name, computed side by side on ``hasher``'s threads."""
    from hybridft.core.outputs import sha256_file

    names = ("eval.jsonl", "quality.jsonl", "records.jsonl", "train.jsonl")
    digests = [hasher.submit(sha256_file, folder / name) for name in names]
    return {name: digest.result() for name, digest in zip(names, digests, strict=True)}
