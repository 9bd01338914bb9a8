"""``hybridft eval KIND``: score a model (or a predictions file) on build-data records."""

from __future__ import annotations

import json
from typing import Any

from hybridft.cli.common import EXIT_OK, emit, print_options
from hybridft.errors import UsageError
from hybridft.options import load_recipe, parse_tokens, peek_recipe, resolve

USAGE = """\
usage: hybridft eval KIND [--config FILE.yaml] [--OPTION VALUE ...] --out DIR

Evaluate on a build-data folder. KIND: {kinds}.
Score a predictions file (--predictions), or run a model (raft, rog: --model and/or --adapter RUN_DIR;
retrieval: --ranker).
Writes DIR/report.json, DIR/examples.jsonl and charts; a table goes to stderr.

  --config, --recipe FILE   YAML config (relative paths start at its folder)
  --dry-run                 check and print the resolved options; do no work, write nothing
  --json                    print report.json on stdout
  --debug                   show tracebacks
  hybridft eval KIND --help  lists KIND's options
"""


def main(tokens: list[str]) -> int:
    from hybridft.evaluation import EVALUATIONS

    kind = tokens[0] if tokens and not tokens[0].startswith("-") else None
    rest = tokens[1:] if kind else list(tokens)
    wants_help = "--help" in rest or "-h" in rest or not tokens
    recipe_path = peek_recipe(rest)
    recipe: dict[str, Any] = {}
    recipe_dir = None
    if recipe_path and not wants_help:
        recipe, recipe_dir = load_recipe(recipe_path)
    usage = USAGE.format(kinds=", ".join(EVALUATIONS))
    kind = kind or recipe.pop("kind", None)
    if kind is None:
        if wants_help:
            print(usage)
            return EXIT_OK
        raise UsageError(f"eval needs a KIND ({', '.join(EVALUATIONS)})")
    if kind not in EVALUATIONS:
        raise UsageError(f"eval KIND={kind}: expected one of {', '.join(EVALUATIONS)}")
    spec = EVALUATIONS[kind]
    if wants_help:
        print(usage)
        print_options(f"eval {kind}: {spec.summary}", spec.options)
        return EXIT_OK
    command = parse_tokens(rest, spec.options)
    if command.positional:
        raise UsageError(f"unexpected argument(s): {' '.join(command.positional)}")
    config = resolve(
        spec.options,
        recipe,
        command.values,
        recipe_name=recipe_path or "config",
        recipe_dir=recipe_dir,
        errors=command.errors,
    )
    errors = spec.check(config)
    if errors:
        raise UsageError(*errors)
    as_json = bool(command.control.get("json"))
    if command.control.get("dry_run"):
        print(json.dumps({"command": "eval", "kind": kind, "options": config}, indent=2))
        return EXIT_OK

    from hybridft.evaluation.report import print_table, read_report, write_report
    from hybridft.io import check_output_dir

    check_output_dir(config["out"], config["overwrite"])
    other = read_report(config["compare"]) if config["compare"] else None
    report = spec.evaluate(config)
    if not report.examples:
        raise UsageError(f"nothing to score; skipped: {json.dumps(report.skipped)}")
    content = write_report(config["out"], config["overwrite"], report, other)
    print_table(content)
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in content["metrics"].items() if v is not None)
    emit(content, as_json, f"eval {kind}: {content['count']} examples, {metrics} -> {config['out']}")
    return EXIT_OK
