"""What every data builder shares: common options, the split rule and the build result."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hybridft.core.options import Option

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


SHARD_OPTION = Option(
    "shard",
    "str",
    None,
    "I/N: build only the questions whose id hash falls in shard I of N (merge the N folders with "
    "`hybridft build-data merge`)",
)


RAY_OPTIONS = [
    Option("shards", "int", None, "build as N shards on Ray (with --ray) and merge them into --out", minimum=2),
    Option("ray", "str", None, "with --shards: local (a Ray on this machine; --ray alone) or a Ray cluster ADDRESS"),
    Option("ray_gpus", "float", 0.0, "GPUs each shard task asks Ray for", minimum=0),
    Option("ray_retries", "int", 3, "times Ray reruns a shard task whose worker or node died", minimum=0),
]


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: the questions whose id hash falls in it."""

    index: int
    count: int

    @classmethod
    def parse(cls, spec: str | None) -> Shard | None:
        """``"I/N"`` (0 <= I < N) -> Shard; None -> None. A malformed spec is a ValueError."""
        if spec is None:
            return None
        index, slash, count = spec.partition("/")
        if not (slash and index.isdigit() and count.isdigit()) or not 0 <= int(index) < int(count):
            raise ValueError(f"shard={spec}: expected I/N with 0 <= I < N, such as 0/4")
        return cls(int(index), int(count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, question_id: str) -> bool:
        """From the sha256 of the id, as :func:`split_of`, but bytes 8-16, so that a question's
        split does not depend on the number of shards."""
        digest = hashlib.sha256(question_id.encode("utf-8")).digest()
        return int.from_bytes(digest[8:16], "big") % self.count == self.index


def check_shard(config: dict[str, Any]) -> list[str]:
    """--shard I/N, or --shards N with --ray."""
    try:
        Shard.parse(config.get("shard"))
    except ValueError as error:
        return [str(error)]
    shards, ray = config.get("shards"), config.get("ray")
    if shards and config.get("shard"):
        return ["shard, shards: give one: --shard I/N builds one shard, --shards N --ray builds all N"]
    if shards and not ray:
        return [
            "shards: needs --ray (local or a cluster ADDRESS); without Ray, run each --shard I/N "
            "yourself (e.g. a Slurm array) and join them with `hybridft build-data merge`"
        ]
    if ray and not shards:
        return ["ray: needs --shards N"]
    return []


def split_of(question_id: str, eval_fraction: float) -> str:
    """``eval`` or ``train`` from a hash of the question id: stable across runs, seeds and row
    order, and a question never lands in both splits."""
    digest = hashlib.sha256(question_id.encode("utf-8")).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64
    return "eval" if position < eval_fraction else "train"


def splits_of(question_ids: list[str], eval_fraction: float) -> list[str]:
    """:func:`split_of` for many questions at once (the same answers: the position is the same
    correctly rounded float, compared with the same fraction)."""
    digests = b"".join(hashlib.sha256(qid.encode("utf-8")).digest()[:8] for qid in question_ids)
    positions = np.frombuffer(digests, dtype=">u8").astype(np.float64) / 2**64
    return np.where(positions < eval_fraction, "eval", "train").tolist()


def row_rng(seed: int, row_id: str) -> random.Random:
    """A random stream per input row, so one row's choices do not depend on the rows before it."""
    return random.Random(f"{seed}:{row_id}")


# SplitMix64 (Steele, Lea and Flood, 2014): a counter stream, key + i * gamma, through a mixing
# function gives well-distributed 64-bit numbers, computed for a whole block of rows at once.
_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_MIX = (np.uint64(30), np.uint64(0xBF58476D1CE4E5B9), np.uint64(27), np.uint64(0x94D049BB133111EB), np.uint64(31))
_BLOCK_ROWS = 4096


class RowDraws:
    """One row's uniform numbers in [0, 1), handed out in order: ``random()`` and ``shuffle()`` as
    on ``random.Random``. A row that needs more numbers than were drawn for it goes on with a
    ``random.Random`` seeded from its key."""

    __slots__ = ("_numbers", "_next", "_key", "_more")

    def __init__(self, numbers: list[float], key: str):
        self._numbers = numbers
        self._next = 0
        self._key = key
        self._more: random.Random | None = None

    def random(self) -> float:
        index = self._next
        if index < len(self._numbers):
            self._next = index + 1
            return self._numbers[index]
        if self._more is None:
            self._more = random.Random(f"{self._key}:more")
        return self._more.random()

    def shuffle(self, items: list[Any]) -> None:
        """Fisher-Yates, as ``random.Random.shuffle``."""
        for i in range(len(items) - 1, 0, -1):
            j = int(self.random() * (i + 1))
            items[i], items[j] = items[j], items[i]


def row_draws(seed: int, row_ids: list[str], count: int) -> Iterator[RowDraws]:
    """For each row, ``count`` uniform numbers that depend on the seed and the row id only (so one
    row's choices do not depend on the rows before it), as :func:`row_rng` but drawn for blocks of
    rows with numpy: seeding a Mersenne Twister per row costs more than the rest of a RAFT row's
    random choices together."""
    steps = np.arange(1, count + 1, dtype=np.uint64) * _GAMMA
    shift1, mul1, shift2, mul2, shift3 = _MIX
    for start in range(0, len(row_ids), _BLOCK_ROWS):
        keys_text = [f"{seed}:{row_id}" for row_id in row_ids[start : start + _BLOCK_ROWS]]
        digests = b"".join(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest() for key in keys_text)
        z = np.frombuffer(digests, dtype="<u8")[:, None] + steps
        z = (z ^ (z >> shift1)) * mul1
        z = (z ^ (z >> shift2)) * mul2
        z ^= z >> shift3
        numbers = ((z >> np.uint64(11)).astype(np.float64) * 2.0**-53).tolist()
        yield from map(RowDraws, numbers, keys_text)


@dataclass
class BuildResult:
    """Records in output order, counts for the manifest, the input paths to hash, and further
    top-level manifest sections (``generator``: model, prompts, tokens, cost).

    ``records`` may be an iterator that builds them as they are written; then ``counts`` and
    ``manifest`` are complete once it is exhausted."""

    records: Iterable[dict[str, Any]]
    counts: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)
    quality: Quality = field(default_factory=lambda: Quality())
    # With --shard: each built question's id -> its position among all the input's questions, so
    # that `build-data merge` restores the unsharded order (written to shard.json).
    positions: dict[str, int] | None = None


# Flagged rows kept per check in quality.jsonl: enough to see what a check catches (the counts in
# the manifest are complete).
FLAGGED_KEPT = 20


class Quality:
    """The data-quality checks of one build: how often each fired (the manifest's ``quality``)
    and the first :data:`FLAGGED_KEPT` rows each flagged (``quality.jsonl``, which
    ``hybridft inspect`` prints). Every check that ran is listed, at 0 when nothing was flagged."""

    def __init__(self, *checks: str):
        self.counts: Counter[str] = Counter(dict.fromkeys(checks, 0))
        self.flagged: dict[str, list[dict[str, Any]]] = {}

    def note(self, check: str, row_id: str, times: int = 1, **detail: Any) -> None:
        """Count ``times`` findings of ``check`` in one row (and keep the row as an example)."""
        self.counts[check] += times
        kept = self.flagged.setdefault(check, [])
        if len(kept) < FLAGGED_KEPT:
            kept.append({"check": check, "id": row_id, **detail})

    def manifest(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def rows(self) -> list[dict[str, Any]]:
        return [row for check in sorted(self.flagged) for row in self.flagged[check]]


def shard_rows(rows: list[Any], config: dict[str, Any]) -> tuple[list[Any], dict[str, int] | None]:
    """The rows of ``config["shard"]`` (all of them without one), and each kept row's position in
    ``rows`` (None without a shard)."""
    shard = Shard.parse(config.get("shard"))
    if shard is None:
        return rows, None
    positions = {row.id: n for n, row in enumerate(rows) if shard.holds(row.id)}
    return [row for row in rows if row.id in positions], positions
