"""``hybridft inspect BUILD_DIR``: the data-quality counts of a build, with flagged rows."""

from __future__ import annotations

import json
from typing import Any

from hybridft.cli.common import EXIT_OK, emit, options_command
from hybridft.core.options import Option

USAGE = """\
usage: hybridft inspect BUILD_DIR [--examples N] [--json]

What a `hybridft build-data` folder says about its rows: the counts of its manifest and each
data-quality check (doubtful oracles, distractors or negatives passed over for holding the answer,
quotes chosen by fallback, rows with fewer query variants, empty splits), with the first rows each
check flagged (from quality.jsonl; the counts cover every row).

  --json     print the result as one JSON document
  --debug    show tracebacks
"""

OPTIONS = [
    Option("dir", "path", None, "the --out folder of `hybridft build-data`", required=True),
    Option("examples", "int", 3, "flagged rows shown per check", minimum=0),
]


def main(tokens: list[str]) -> int:
    parsed = options_command(tokens, OPTIONS, lambda config: [], name="inspect", usage=USAGE, positional="dir")
    if parsed is None:
        return EXIT_OK
    config, control = parsed
    from hybridft.builders.inspection import inspect_build

    result = inspect_build(config["dir"], config["examples"])
    emit(result, bool(control.get("json")), _human(result))
    return EXIT_OK


def _human(result: dict[str, Any]) -> str:
    counts = result["counts"]
    rows = f"{counts.get('train', '?')} train, {counts.get('eval', '?')} eval rows"
    lines = [f"{result['kind']} build in {result['dir']}: {rows}"]
    skipped = {k: v for k, v in counts.get("skipped", {}).items() if v}
    if skipped:
        lines.append("skipped: " + ", ".join(f"{k}={v}" for k, v in skipped.items()))
    if result["quality"] is None:
        lines.append("no quality checks: built by a hybridft older than the checks (build it again to see them)")
        return "\n".join(lines)
    lines.append("quality checks (rows flagged):")
    width = max((len(check) for check in result["quality"]), default=0)
    for check, found in result["quality"].items():
        lines.append(f"  {check:<{width}}  {found['count']}")
        for row in found["flagged"]:
            detail = {k: v for k, v in row.items() if k != "id"}
            lines.append(f"      {row['id']}: {json.dumps(detail, ensure_ascii=False)[:300]}")
    return "\n".join(lines)
