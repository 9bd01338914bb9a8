"""``hybridft build-data KIND``: inputs -> records -> trainer rows, written atomically."""

from __future__ import annotations

import json
from typing import Any

from hybridft.cli.common import EXIT_OK, emit, parse_kind_command
from hybridft.errors import UsageError
from hybridft.progress import log

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
        _print_config(command.kind, command.config, as_json)
        return EXIT_OK
    return _run(command.kind, command.spec, command.config, as_json)


def _print_config(kind: str, config: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps({"command": "build-data", "kind": kind, "options": config}, indent=2))
        return
    import yaml

    print(yaml.safe_dump({"kind": kind, **config}, sort_keys=False, allow_unicode=True), end="")


def _run(kind: str, spec: Any, config: dict[str, Any], as_json: bool) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from hybridft.io import (
        atomic_output_dir,
        check_output_dir,
        input_hashes,
        paused_gc,
        sha256_file,
        write_jsonl,
        write_manifest,
    )
    from hybridft.render import render

    check_output_dir(config["out"], config["overwrite"])
    with paused_gc():
        result = spec.build(config)
    if not result.records:
        raise UsageError(f"no {kind} examples could be built; skipped: {json.dumps(result.counts.get('skipped', {}))}")
    fmt = config.get("format", "")  # mix has no --format: its rows keep their inputs' format
    render_row = spec.render or render
    counts = dict(result.counts)
    # sha256 of inputs and outputs runs on a second thread (hashlib and file reads release the
    # GIL), so hashing overlaps the serialising of the next file instead of following it.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as hasher:
        input_digests = [hasher.submit(input_hashes, source) for source in result.inputs]
        output_digests = {}
        with paused_gc(), atomic_output_dir(config["out"], config["overwrite"]) as temp:
            write_jsonl(temp / "records.jsonl", result.records)
            output_digests["records.jsonl"] = hasher.submit(sha256_file, temp / "records.jsonl")
            for split in ("train", "eval"):
                rows = (render_row(r, fmt) for r in result.records if r["split"] == split)
                counts[split] = write_jsonl(temp / f"{split}.jsonl", rows)
                output_digests[f"{split}.jsonl"] = hasher.submit(sha256_file, temp / f"{split}.jsonl")
            inputs = {path: digest for future in input_digests for path, digest in future.result().items()}
            outputs = {name: future.result() for name, future in sorted(output_digests.items())}
            manifest = write_manifest(
                temp, kind=kind, options=config, inputs=inputs, outputs=outputs, counts=counts, extra=result.manifest
            )
    log(f"wrote {counts['train']} train and {counts['eval']} eval rows to {config['out']}")
    skipped = {k: v for k, v in counts.get("skipped", {}).items() if v}
    human = (
        f"{kind}: {len(result.records)} examples ({counts['train']} train, {counts['eval']} eval) -> {config['out']}"
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
