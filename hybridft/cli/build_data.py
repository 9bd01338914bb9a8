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


def main(tokens: list[str]) -> int:
    from hybridft.builders import BUILDERS

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


def _check_splits(quality: Any, written: dict[str, int], config: dict[str, Any]) -> None:
    """An empty split is a warning (and a quality count) that names the option to change."""
    fraction = config.get("eval_fraction")
    quality.counts.setdefault("empty_split", 0)
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
