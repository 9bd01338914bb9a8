"""Shared fixtures: small corpora and QA sets written in code, and an in-process CLI runner."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# Fuzz tests (test_fuzz_readers.py): `ci` tries the same 25 inputs per reader in every run;
# `pytest --hypothesis-profile long` searches 2,000 random ones.
settings.register_profile("ci", max_examples=25, derandomize=True)
settings.register_profile("long", max_examples=2000)

# Tests never touch the network: every model is built in code or shipped by a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The tiny model is built once per test session, in a folder of its own.
os.environ.setdefault("HYBRIDFT_CACHE", tempfile.mkdtemp(prefix="hybridft-test-cache-"))
# Trainer rows are cached by `datasets` (training/rows.py): in a folder of the session's, not the user's.
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="hybridft-test-datasets-"))

from hybridft.cli import build_data  # noqa: E402
from hybridft.cli.common import run_guarded  # noqa: E402

CORPUS = [
    {
        "id": "paris",
        "title": "Paris",
        "text": "Paris is the capital of France. The Seine flows through Paris.",
    },
    {
        "id": "berlin",
        "title": "Berlin",
        "text": "Berlin is the capital of Germany. The Spree flows through Berlin.",
    },
    {"id": "rome", "title": "Rome", "text": "Rome is the capital of Italy. The Tiber flows through Rome."},
    {
        "id": "madrid",
        "title": "Madrid",
        "text": "Madrid is the capital of Spain. The Manzanares flows through Madrid.",
    },
    {
        "id": "lisbon",
        "title": "Lisbon",
        "text": "Lisbon is the capital of Portugal. The Tagus flows through Lisbon.",
    },
    {
        "id": "vienna",
        "title": "Vienna",
        "text": "Vienna is the capital of Austria. The Danube flows through Vienna.",
    },
    {"id": "tea", "title": "Tea", "text": "Tea is brewed from the leaves of Camellia sinensis."},
    {"id": "coffee", "title": "Coffee", "text": "Coffee is brewed from roasted coffee beans."},
]

QA = [
    {
        "id": "q-paris",
        "question": "What is the capital of France?",
        "answers": ["Paris"],
        "doc_ids": ["paris"],
    },
    {"id": "q-seine", "question": "Which river flows through Paris?", "answer": "Seine"},
    {
        "id": "q-rome",
        "question": "What is the capital of Italy?",
        "golden_answers": ["Rome"],
        "doc_ids": ["rome"],
    },
    {
        "id": "q-tagus",
        "question": "Which river flows through Lisbon?",
        "answers": ["Tagus"],
        "doc_ids": ["lisbon"],
    },
]


# Settings that train the tiny model in seconds on the CPU (finetune and export tests).
TINY_TRAINING = {
    "model": "tiny",
    "max_length": 1024,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "learning_rate": 3e-3,
    "warmup_ratio": 0.0,
    "lora_dropout": 0.0,
    "batch_size": 4,
}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sample_files(folder: Path, docs: list[dict[str, Any]], qa: list[dict[str, Any]]) -> dict[str, Path]:
    """``docs.jsonl`` and ``qa.jsonl`` in ``folder``, and the folder (``tmp``)."""
    return {"docs": write_jsonl(folder / "docs.jsonl", docs), "qa": write_jsonl(folder / "qa.jsonl", qa), "tmp": folder}


@pytest.fixture
def sample(tmp_path: Path) -> dict[str, Path]:
    """The small corpus and QA set above, as files."""
    return sample_files(tmp_path, CORPUS, QA)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``hybridft build-data`` in-process; return (exit code, stdout, stderr)."""

    def run(*tokens: str) -> tuple[int, str, str]:
        code = run_guarded(build_data.main, [str(t) for t in tokens])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
