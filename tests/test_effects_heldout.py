"""The effects bench's domain (data_recipes/effects/domain.py): held out means held out.

Built with the bench's own recipes and hybridft's build-data, the training rows of every method
hold no test person's name, no test question and no test document text; and the check itself finds
a leak when one is planted.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

from hybridft.cli import build_data
from hybridft.cli.common import run_guarded

RECIPES = Path(__file__).resolve().parent.parent / "data_recipes" / "effects"
sys.path.insert(0, str(RECIPES))
import domain  # noqa: E402

SMALL = {"families": 12, "per_family": 4, "held_out_families": 3}


@pytest.fixture(scope="module")
def small_domain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("domain")
    return folder, domain.write_domain(folder, seed=5, **SMALL)


def _build(kind: str, recipe: str, out: Path, *inputs: str | Path) -> Path:
    with contextlib.redirect_stdout(io.StringIO()):
        code = run_guarded(
            build_data.main, [kind, "--recipe", str(RECIPES / recipe), *map(str, inputs), "--out", str(out)]
        )
    assert code == 0
    return out


def test_domain_is_deterministic_and_splits_whole_families(tmp_path: Path, small_domain: tuple[Path, dict]) -> None:
    folder, test = small_domain
    again = domain.write_domain(tmp_path, seed=5, **SMALL)
    assert again == test
    for name in ("qa_train.jsonl", "docs_test.jsonl", "kg_train.jsonl"):
        assert (tmp_path / name).read_bytes() == (folder / name).read_bytes()
    assert len(test["entities"]) == 3 * 4
    family_names = {e.split()[1] for e in test["entities"]}
    train_people = {json.loads(line)["title"] for line in (folder / "docs_train.jsonl").read_text().splitlines()}
    assert len(train_people) == 9 * 4 and not {p.split()[1] for p in train_people} & family_names


@pytest.mark.parametrize(
    ("kind", "recipe", "inputs"),
    [
        ("raft", "raft_oracle.yaml", ["--qa", "qa_train.jsonl", "--docs", "docs_train.jsonl"]),
        ("raft", "raft_distractors.yaml", ["--qa", "qa_train.jsonl", "--docs", "docs_train.jsonl"]),
        ("raft", "raft_oracle_p08.yaml", ["--qa", "qa_train.jsonl", "--docs", "docs_train.jsonl"]),
        ("rog", "rog.yaml", ["--questions", "kg_train.jsonl"]),
        ("invar", "invar.yaml", ["--qa", "qa_train.jsonl", "--docs", "docs_train.jsonl"]),
    ],
)
def test_training_rows_hold_nothing_held_out(
    tmp_path: Path, small_domain: tuple[Path, dict], kind: str, recipe: str, inputs: list[str]
) -> None:
    folder, test = small_domain
    resolved = [str(folder / x) if x.endswith(".jsonl") else x for x in inputs]
    out = _build(kind, recipe, tmp_path / kind, *resolved)
    rows = (out / "train.jsonl").read_text()
    assert rows.count("\n") > 20
    assert domain.leaks(out / "train.jsonl", test) == []
    # the check finds a planted leak of each kind
    planted = tmp_path / "planted.jsonl"
    for text in (test["entities"][0], test["questions"][-1], test["documents"][3]):
        planted.write_text(rows + json.dumps({"text": text}) + "\n")
        assert len(domain.leaks(planted, test)) >= 1


def test_test_rows_are_about_held_out_people(tmp_path: Path, small_domain: tuple[Path, dict]) -> None:
    folder, test = small_domain
    out = _build(
        "raft",
        "raft_test.yaml",
        tmp_path / "test",
        "--qa",
        folder / "qa_test.jsonl",
        "--docs",
        folder / "docs_test.jsonl",
    )
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == len(test["entities"]) * 3
    assert all(any(e in r["question"] for e in test["entities"]) for r in records)
