"""Fuzzed inputs for the readers, through the commands that read them: whatever the bytes, the
command succeeds, or exits 2 with a message naming the file (and line or key) — never another
exit code, never a traceback, never an output folder left behind.

The default suite tries 25 inputs per reader, the same ones in every run (hypothesis profile
`ci`); a longer, random search: `pytest tests/test_fuzz_readers.py --hypothesis-profile long`
(2,000 inputs per reader).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, QA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridft.cli import build_data, finetune
from hybridft.cli import eval as eval_cli
from hybridft.cli.common import run_guarded

# pyarrow reports a bad TSV row with invalid UTF-8 as an exception "ignored" in the row handler
# (it cannot make the row a str); the read then fails and the command exits 2, as asserted.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

# Profiles registered in conftest.py: ``ci`` unless --hypothesis-profile long was given.
CHOSEN = "long" if settings._current_profile == "long" else "ci"  # noqa: SLF001 - hypothesis has no public getter
FUZZ = settings(
    settings.get_profile(CHOSEN),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# JSON values of every type, deep nesting included.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def mutated_rows(rows: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """A valid JSONL file, then damaged: a field given another type or dropped, a line cut,
    random bytes (invalid UTF-8 included), empty or huge values."""
    keys = sorted({key for row in rows for key in row})

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        lines = [dict(row) for row in rows]
        for _ in range(draw(st.integers(1, 3))):
            row = lines[draw(st.integers(0, len(lines) - 1))]
            how = draw(st.sampled_from(["type", "drop", "empty", "huge"]))
            key = draw(st.sampled_from(keys))
            if how == "type":
                row[key] = draw(json_values)
            elif how == "drop":
                row.pop(key, None)
            elif how == "empty":
                row[key] = draw(st.sampled_from(["", [], {}, None]))
            else:
                row[key] = "x" * 20_000
        text = b"".join(json.dumps(row).encode() + b"\n" for row in lines)
        damage = draw(st.sampled_from(["none", "cut", "bytes", "blank"]))
        if damage == "cut":
            text = text[: draw(st.integers(0, len(text)))]
        elif damage == "bytes":
            at = draw(st.integers(0, len(text)))
            text = text[:at] + draw(st.binary(min_size=1, max_size=12)) + text[at:]
        elif damage == "blank":
            text = b"\n\n" + text
        return text

    return build()


def check(code: int, err: str, file: Path, out: Path) -> None:
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert file.name in err, err
        assert not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


def build(tmp_path: Path, capsys: Any, *tokens: Any) -> tuple[int, str]:
    code = run_guarded(build_data.main, [str(t) for t in tokens])
    return code, capsys.readouterr().err


@pytest.fixture
def work(tmp_path: Path):
    """A fresh folder per example (hypothesis reuses the test's tmp_path)."""
    folder = tmp_path / "case"

    def fresh() -> Path:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        return folder

    return fresh


@FUZZ
@given(data=mutated_rows(QA))
def test_qa_files(work, capsys, data: bytes) -> None:
    folder = work()
    qa, docs, out = folder / "qa.jsonl", folder / "docs.jsonl", folder / "out"
    qa.write_bytes(data)
    docs.write_text("".join(json.dumps(d) + "\n" for d in CORPUS))
    check(*build(folder, capsys, "raft", "--qa", qa, "--docs", docs, "--distractors", "2", "--out", out), qa, out)


@FUZZ
@given(data=mutated_rows(CORPUS))
def test_document_files(work, capsys, data: bytes) -> None:
    folder = work()
    qa, docs, out = folder / "qa.jsonl", folder / "docs.jsonl", folder / "out"
    qa.write_text("".join(json.dumps(q) + "\n" for q in QA))
    docs.write_bytes(data)
    code, err = build(folder, capsys, "raft", "--qa", qa, "--docs", docs, "--distractors", "2", "--out", out)
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:  # the corpus, or the QA rows that name documents it no longer has
        assert docs.name in err or qa.name in err, err
        assert not out.exists()


KG_QUESTIONS = [
    {
        "id": "q1",
        "question": "Where is the Eiffel Tower?",
        "answer": ["Paris"],
        "q_entity": ["Eiffel Tower"],
        "a_entity": ["Paris"],
        "graph": [["Eiffel Tower", "located_in", "Paris"], ["Paris", "capital_of", "France"]],
    },
    {
        "id": "q2",
        "question": "Which country is Paris the capital of?",
        "answer": ["France"],
        "q_entity": ["Paris"],
        "a_entity": ["France"],
        "graph": [["Paris", "capital_of", "France"]],
    },
]


@FUZZ
@given(data=mutated_rows(KG_QUESTIONS))
def test_kg_question_files(work, capsys, data: bytes) -> None:
    folder = work()
    questions, out = folder / "questions.jsonl", folder / "out"
    questions.write_bytes(data)
    check(*build(folder, capsys, "rog", "--questions", questions, "--out", out), questions, out)


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_global_kg_files(work, capsys, data: bytes) -> None:
    folder = work()
    questions, kg, out = folder / "questions.jsonl", folder / "kg.tsv", folder / "out"
    rows = [{k: v for k, v in q.items() if k != "graph"} for q in KG_QUESTIONS]
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    kg.write_bytes(b"Eiffel Tower\tlocated_in\tParis\n" + data)
    code, err = build(folder, capsys, "rog", "--questions", questions, "--kg", kg, "--out", out)
    check(code, err, kg, out)


@FUZZ
@given(data=st.dictionaries(st.text(max_size=12), json_values, max_size=5) | json_values)
def test_recipes(work, capsys, data: Any) -> None:
    import yaml

    folder = work()
    recipe, out = folder / "recipe.yaml", folder / "out"
    recipe.write_text(yaml.safe_dump(data))
    code, err = build(folder, capsys, "raft", "--recipe", recipe, "--out", out)
    assert code == 2 and "Traceback" not in err  # no fuzzed recipe names a QA set and a corpus that exist
    assert not out.exists()


@FUZZ
@given(data=mutated_rows([{"id": "raft-q-paris", "prediction": "Paris"}, {"id": "raft-q-rome", "prediction": "x"}]))
def test_prediction_files(raft_build: Path, work, capsys, data: bytes) -> None:
    folder = work()
    predictions, out = folder / "predictions.jsonl", folder / "report"
    predictions.write_bytes(data)
    tokens = ["raft", "--data", raft_build, "--split", "all", "--predictions", predictions, "--out", out]
    code = run_guarded(eval_cli.main, [str(t) for t in tokens])
    check(code, capsys.readouterr().err, predictions, out)


@FUZZ
@given(data=mutated_rows([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}] * 2))
def test_build_folders_fed_to_finetune(raft_build: Path, work, capsys, data: bytes) -> None:
    folder = work() / "data"
    shutil.copytree(raft_build, folder)
    (folder / "train.jsonl").write_bytes(data)
    out = folder.parent / "run"
    tokens = ["--model", "tiny", "--data", folder, "--out", out, "--max-steps", "1", "--dry-run"]
    code = run_guarded(finetune.main, [str(t) for t in tokens])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err
    assert not out.exists()


@FUZZ
@given(
    data=mutated_rows(
        [
            {
                "id": "raft-q1",
                "kind": "raft",
                "split": "eval",
                "question": "q",
                "answers": ["a"],
                "docs": [{"id": "d", "text": "t"}],
                "oracles": [{"id": "d", "text": "t"}],
            }
        ]
    )
)
def test_build_folders_fed_to_eval(work, capsys, data: bytes) -> None:
    folder = work() / "data"
    folder.mkdir()
    (folder / "records.jsonl").write_bytes(data)
    predictions = folder.parent / "predictions.jsonl"
    predictions.write_text(json.dumps({"id": "raft-q1", "prediction": "a"}) + "\n")
    out = folder.parent / "report"
    tokens = ["raft", "--data", folder, "--split", "all", "--predictions", predictions, "--out", out]
    code = run_guarded(eval_cli.main, [str(t) for t in tokens])
    err = capsys.readouterr().err
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:  # the records, or the predictions that no longer match them
        assert "records.jsonl" in err or predictions.name in err, err
        assert not out.exists()


@pytest.fixture(scope="module")
def raft_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    qa, docs = root / "qa.jsonl", root / "docs.jsonl"
    qa.write_text("".join(json.dumps(q) + "\n" for q in QA))
    docs.write_text("".join(json.dumps(d) + "\n" for d in CORPUS))
    out = root / "raft"
    tokens = ["raft", "--qa", qa, "--docs", docs, "--distractors", "2", "--out", out]
    assert run_guarded(build_data.main, [str(t) for t in tokens]) == 0
    return out
