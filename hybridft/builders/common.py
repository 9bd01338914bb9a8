"""What every data builder shares: common options, the split rule and the build result."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Any

from hybridft.options import Option

FORMATS = ("messages", "prompt-completion")


def common_options(formats: tuple[str, ...] = FORMATS) -> list[Option]:
    return [
        Option("out", "outpath", None, "output folder (must not exist or be empty)", required=True),
        Option("overwrite", "bool", False, "replace a non-empty --out"),
        Option("seed", "int", 0, "seed for every random choice", minimum=0),
        Option(
            "eval_fraction",
            "float",
            0.1,
            "share of questions in the eval split",
            minimum=0,
            maximum=1,
            below_maximum=True,
        ),
        Option("format", "str", "messages", "trainer rows in train.jsonl / eval.jsonl", choices=formats),
    ]


def split_of(question_id: str, eval_fraction: float) -> str:
    """``eval`` or ``train`` from a hash of the question id: stable across runs, seeds and row
    order, and a question never lands in both splits."""
    digest = hashlib.sha256(question_id.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "eval" if position < eval_fraction else "train"


def row_rng(seed: int, row_id: str, reuse: random.Random | None = None) -> random.Random:
    """A random stream per input row, so one row's choices do not depend on the rows before it.

    ``reuse``, when given, is re-seeded and returned: the same stream as a new generator, without
    allocating a generator's 2.5 KB state for every row of a large build.
    """
    if reuse is None:
        return random.Random(f"{seed}:{row_id}")
    reuse.seed(f"{seed}:{row_id}")
    return reuse


@dataclass
class BuildResult:
    """Records in output order, counts for the manifest, the input paths to hash, and further
    top-level manifest sections (``generator``: model, prompts, tokens, cost)."""

    records: list[dict[str, Any]]
    counts: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
