"""`hybridft demo`: every stage runs and leaves its outputs; the full demo really improves the model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hybridft.cli import demo
from hybridft.cli.common import run_guarded


def test_demo_stages_and_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert run_guarded(demo.main, ["--out", str(out), "--max-steps", "2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert set(summary) == {"command", "out", "train_loss", "questions", "base", "tuned", "delta"}
    for folder in ("raft", "rog", "invar", "mix"):
        assert (out / "data" / folder / "train.jsonl").is_file(), folder
    mix = json.loads((out / "data" / "mix" / "manifest.json").read_text())
    assert mix["kind"] == "mix"
    run = json.loads((out / "run" / "run.json").read_text())
    assert run["status"] == "complete" and run["steps"] == 2
    tuned = json.loads((out / "eval" / "tuned" / "report.json").read_text())
    raft_records = [json.loads(line) for line in (out / "data" / "raft" / "records.jsonl").read_text().splitlines()]
    held_out = {r["source_id"] for r in raft_records if r["split"] == "eval"}
    assert tuned["kind"] == "rag" and tuned["count"] == len(held_out) > 0 and "delta" in tuned["compare"]
    examples = [json.loads(line) for line in (out / "eval" / "tuned" / "examples.jsonl").read_text().splitlines()]
    assert {e["id"] for e in examples} == held_out  # only questions the model was not trained on
    assert (out / "index" / "manifest.json").is_file()
    assert json.loads((out / "demo.json").read_text()) == summary
    # a second demo replaces the first; a folder that is not a demo's is never touched
    assert run_guarded(demo.main, ["--out", str(out), "--max-steps", "1"]) == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    assert run_guarded(demo.main, ["--out", str(other)]) == 2
    assert (other / "notes.txt").read_text() == "keep"
    assert run_guarded(demo.main, ["--bogus"]) == 2


@pytest.mark.slow
def test_full_demo_on_held_out_questions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """On questions it never saw, the tiny model starts to write RAFT's answer format and does not
    learn the answers. The size of the format gain on these 6 questions is not stable (0.67 before
    one sample row's quote was fixed, 0.17 after; README), so only its direction is asserted; the
    effects bench (issue 21) measures effects over seeds."""
    assert run_guarded(demo.main, ["--out", str(tmp_path / "demo"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["base"]["answer_format"] == 0.0
    assert summary["tuned"]["answer_format"] > 0.0
    assert summary["base"]["answer_recall@3"] == summary["tuned"]["answer_recall@3"] == 1.0  # same retrieval
