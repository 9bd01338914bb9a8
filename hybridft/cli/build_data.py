"""``hybridft build-data KIND``: inputs -> records -> trainer rows, written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybridft.cli.common import EXIT_OK, emit, parse_kind_command, print_resolved
from hybridft.core.errors import UsageError

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
  hybridft build-data merge SHARD_DIR... --out DIR   joins the folders of a --shard I/N build
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
    tokens = _ray_alone_means_local(tokens)
    command = parse_kind_command(tokens, BUILDERS, name="build-data", usage=USAGE)
    if command is None:
        return EXIT_OK
    as_json = bool(command.control.get("json"))
    if command.control.get("dry_run"):
        if command.spec.read_inputs is not None:
            command.spec.read_inputs(command.config)  # a malformed row or too small a corpus: exit 2 now
        _load_models(command.config)
        print_resolved("build-data", command.kind, command.config, as_json)
        return EXIT_OK
    return _run(command.kind, command.config, as_json)


def _load_models(config: dict[str, Any]) -> None:
    """The sentence-transformers models a build names (dense distractors or negatives, the
    Invar-RAG teacher), loaded from local files as the build loads them: one that cannot load is
    exit 2 at --dry-run, naming its option."""
    from hybridft.retrieval.rankers import load_sentence_model

    strategy = config.get("distractor_strategy") or config.get("negative_strategy")
    if strategy == "dense" and config.get("dense_model"):
        load_sentence_model(config["dense_model"], "dense_model")
    if config.get("teacher") not in (None, "none"):
        load_sentence_model(config["teacher"], "teacher")


def _ray_alone_means_local(tokens: list[str]) -> list[str]:
    """``--ray`` without an address: a Ray started on this machine."""
    out = []
    for n, token in enumerate(tokens):
        out.append(token)
        if token == "--ray" and (n + 1 == len(tokens) or tokens[n + 1].startswith("-")):
            out.append("local")
    return out


def _run(kind: str, config: dict[str, Any], as_json: bool) -> int:
    from hybridft.builders.folder import write_build

    if config.get("shards"):
        from hybridft.builders.ray_shards import run_on_ray

        result = run_on_ray(kind, config)
    else:
        result = write_build(kind, config)
    counts = result["counts"]
    skipped = {k: v for k, v in counts.get("skipped", {}).items() if v}
    human = (
        f"{kind}: {result['examples']} examples ({counts['train']} train, {counts['eval']} eval) -> {config['out']}"
        + (f"\nskipped: {', '.join(f'{k}={v}' for k, v in skipped.items())}" if skipped else "")
    )
    summary = {"command": "build-data", "kind": kind, "out": str(config["out"])}
    emit({**summary, "counts": counts, "outputs": result["outputs"]}, as_json, human)
    return EXIT_OK


def _merge(tokens: list[str]) -> int:
    from hybridft.builders.folder import write_merge

    if not tokens or "--help" in tokens or "-h" in tokens:
        print(MERGE_USAGE)
        return EXIT_OK
    folders, out, flags = _merge_arguments(tokens)
    result = write_merge(folders, out, "--overwrite" in flags)
    counts = result["counts"]
    human = f"merge: {len(folders)} shards, {counts['train']} train and {counts['eval']} eval rows -> {out}"
    summary = {"command": "build-data merge", "kind": result["kind"], "out": str(out), "counts": counts}
    emit({**summary, "outputs": result["outputs"]}, "--json" in flags, human)
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
