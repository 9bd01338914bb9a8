"""The data builders, one module per method, and the explicit table the CLI dispatches on."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hybridft.builders import raft, rog
from hybridft.builders.common import BuildResult
from hybridft.options import Option


@dataclass(frozen=True)
class BuilderSpec:
    summary: str
    options: list[Option]
    build: Callable[[dict[str, Any]], BuildResult]
    check: Callable[[dict[str, Any]], list[str]]


BUILDERS: dict[str, BuilderSpec] = {
    "raft": BuilderSpec(
        "RAFT: question + oracle + distractor documents, chain-of-thought answers",
        raft.OPTIONS,
        raft.build,
        raft.check,
    ),
    "rog": BuilderSpec(
        "RoG: relation-path planning and reasoning over knowledge-graph paths",
        rog.OPTIONS,
        rog.build,
        rog.check,
    ),
}

# Kinds in the contract whose builders have not landed yet.
PLANNED_KINDS = ("invar", "mix")
