"""``hybridft demo``: the pipeline on the sample data bundled with the package, on the CPU.

Today the pipeline is its first stage: RAFT data built from the bundled sample recipe.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from hybridft.cli import build_data
from hybridft.cli.common import EXIT_OK
from hybridft.errors import UsageError
from hybridft.progress import log

USAGE = """\
usage: hybridft demo [--out DIR] [--json]

Builds RAFT data from the sample corpus and QA set bundled with hybridft into DIR/raft
(default DIR: hybridft-demo), replacing what an earlier demo left there. No network, seconds.
"""


def main(tokens: list[str]) -> int:
    out, passthrough = "hybridft-demo", []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token in ("--help", "-h"):
            print(USAGE)
            return EXIT_OK
        if token == "--out" and i + 1 < len(tokens):
            out = tokens[i + 1]
            i += 2
            continue
        if token.startswith("--out="):
            out = token.split("=", 1)[1]
        elif token in ("--json", "--debug"):
            passthrough.append(token)
        else:
            raise UsageError(f"demo: unknown option {token} (allowed: --out DIR, --json)")
        i += 1
    recipes = resources.files("hybridft.data_recipes")
    with resources.as_file(recipes / "raft_sample.yaml") as recipe:
        log(f"[1/1] building RAFT data from the bundled sample ({recipe.name})")
        stage_out = str(Path(out) / "raft")
        return build_data.main(["raft", "--recipe", str(recipe), "--out", stage_out, "--overwrite", *passthrough])
