"""``hybridft eval KIND``: score a model (or a predictions file) on build-data records."""

from __future__ import annotations

import json
from pathlib import Path

from hybridft.cli.common import EXIT_OK, emit, parse_kind_command, print_resolved
from hybridft.core.errors import UsageError

USAGE = """\
usage: hybridft eval KIND [--config FILE.yaml] [--OPTION VALUE ...] --out DIR

Evaluate on a build-data folder. KIND: {kinds}.
Score a predictions file (--predictions), or run a model (raft, rog: --model and/or --adapter RUN_DIR;
retrieval: --ranker; rag: --qa QA|BUILD_DIR --index INDEX_DIR and --model and/or --adapter RUN_DIR).
Writes DIR/report.json, DIR/examples.jsonl and charts; a table goes to stderr.

  --config, --recipe FILE   YAML config (relative paths start at its folder)
  --dry-run                 check and print the resolved options; do no work, write nothing
  --json                    print report.json on stdout
  --debug                   show tracebacks
  hybridft eval KIND --help  lists KIND's options
"""


def main(tokens: list[str]) -> int:
    from hybridft.evaluation import EVALUATIONS

    command = parse_kind_command(tokens, EVALUATIONS, name="eval", usage=USAGE)
    if command is None:
        return EXIT_OK
    kind, spec, config = command.kind, command.spec, command.config
    as_json = bool(command.control.get("json"))
    if config.get("compare") and Path(config["compare"]).is_dir():
        raise UsageError(f"--compare {config['compare']}: a folder; give the report.json of another eval")
    if command.control.get("dry_run"):
        spec.read_inputs(config)  # the inputs read and checked as the run would: exit 2 here, not later
        print_resolved("eval", kind, config, as_json)
        return EXIT_OK

    from hybridft.core.outputs import check_output_dir
    from hybridft.evaluation.report import print_table, read_report, write_report

    check_output_dir(config["out"], config["overwrite"])
    other = read_report(config["compare"]) if config["compare"] else None
    report = spec.evaluate(config)
    if not report.examples:
        source = config.get("predictions") or config.get("data") or config.get("qa")
        raise UsageError(f"{source}: nothing to score; skipped: {json.dumps(report.skipped)}")
    content = write_report(config["out"], config["overwrite"], report, other)
    print_table(content)
    metrics = ", ".join(f"{k}={v:.4f}" for k, v in content["metrics"].items() if v is not None)
    emit(content, as_json, f"eval {kind}: {content['count']} examples, {metrics} -> {config['out']}")
    return EXIT_OK
