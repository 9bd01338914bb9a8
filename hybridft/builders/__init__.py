"""The data builders, one module per method (``raft`` with ``raft_examples`` and ``raft_generated``,
``rog``, ``invar``, ``mix``), what they share (``common``), and the table the CLI dispatches on.

May import: ``hybridft.core``, ``hybridft.kg``, ``hybridft.retrieval``, ``hybridft.generators``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hybridft.builders import invar, mix, raft, rog
from hybridft.builders.common import BuildResult
from hybridft.core.options import Option


@dataclass(frozen=True)
class BuilderSpec:
    summary: str
    options: list[Option]
    build: Callable[[dict[str, Any]], BuildResult]
    check: Callable[[dict[str, Any]], list[str]]
    # Record -> trainer row in a format; None: hybridft.core.render.render (RAFT, RoG, Invar-RAG records).
    render: Callable[[dict[str, Any], str], dict[str, Any]] | None = None
    # Reads and checks the inputs without building (what --dry-run runs after the option checks).
    read_inputs: Callable[[dict[str, Any]], Any] | None = None


BUILDERS: dict[str, BuilderSpec] = {
    "raft": BuilderSpec(
        "RAFT: question + oracle + distractor documents, chain-of-thought answers",
        raft.OPTIONS,
        raft.build,
        raft.check,
        read_inputs=raft.read_inputs,
    ),
    "rog": BuilderSpec(
        "RoG: relation-path planning and reasoning over knowledge-graph paths",
        rog.OPTIONS,
        rog.build,
        rog.check,
        read_inputs=rog.read_inputs,
    ),
    "invar": BuilderSpec(
        "Invar-RAG: retriever rows (query variants, positives, hard negatives, teacher scores) or generation rows",
        invar.OPTIONS,
        invar.build,
        invar.check,
        read_inputs=invar.read_inputs,
    ),
    "mix": BuilderSpec(
        "the hybrid: seeded weighted sampling of built datasets into one train/eval pair",
        mix.OPTIONS,
        mix.build,
        mix.check,
        mix.render,
    ),
}
