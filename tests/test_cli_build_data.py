"""`hybridft build-data` as a user runs it: outputs, determinism, splits and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_jsonl, write_jsonl

from hybridft.builders.common import split_of

OUTPUT_FILES = ("records.jsonl", "train.jsonl", "eval.jsonl")


def build(cli, sample: dict[str, Path], out: Path, *extra: str) -> tuple[int, str, str]:
    return cli("raft", "--qa", sample["qa"], "--docs", sample["docs"], "--distractors", "2", "--out", out, *extra)


def test_outputs_and_manifest(cli, sample: dict[str, Path]) -> None:
    out = sample["tmp"] / "out"
    code, stdout, _ = build(cli, sample, out, "--json", "--eval-fraction", "0.5")
    assert code == 0
    result = json.loads(stdout)
    records = read_jsonl(out / "records.jsonl")
    assert sorted(p.name for p in out.iterdir()) == [
        "eval.jsonl",
        "manifest.json",
        "quality.jsonl",
        "records.jsonl",
        "train.jsonl",
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "raft" and manifest["seed"] == 0
    assert manifest["options"]["distractors"] == 2
    assert set(manifest["inputs"]) == {str(sample["qa"]), str(sample["docs"])}
    assert set(manifest["outputs"]) == {*OUTPUT_FILES, "quality.jsonl"}
    counts = manifest["counts"]
    assert counts == result["counts"]
    assert counts["train"] + counts["eval"] == len(records) == counts["examples"] == 4
    assert counts["train"] == len(read_jsonl(out / "train.jsonl"))
    assert len({r["id"] for r in records}) == len(records)


def test_same_seed_same_bytes_other_seed_other_bytes(cli, sample: dict[str, Path]) -> None:
    outs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        out = sample["tmp"] / name
        assert build(cli, sample, out, "--seed", seed, "--oracle-p", "0.5")[0] == 0
        outs[name] = {f: (out / f).read_bytes() for f in OUTPUT_FILES}
    assert outs["a"] == outs["b"]
    assert outs["a"]["records.jsonl"] != outs["c"]["records.jsonl"]


def test_no_question_in_both_splits(cli, tmp_path: Path, sample: dict[str, Path]) -> None:
    qa = write_jsonl(
        tmp_path / "many.jsonl",
        [
            {"id": f"q{i}", "question": f"Which river flows through {city}?", "answers": [river]}
            for i, (city, river) in enumerate([("Paris", "Seine"), ("Berlin", "Spree"), ("Rome", "Tiber")] * 1)
        ]
        + [
            {
                "id": f"p{i}",
                "question": "What is the capital of France?",
                "answers": ["Paris"],
                "doc_ids": ["paris"],
            }
            for i in range(40)
        ],
    )
    out = tmp_path / "out"
    assert cli("raft", "--qa", qa, "--docs", sample["docs"], "--out", out, "--eval-fraction", "0.3")[0] == 0
    records = read_jsonl(out / "records.jsonl")
    splits: dict[str, set[str]] = {}
    for record in records:
        splits.setdefault(record["source_id"], set()).add(record["split"])
    assert all(len(s) == 1 for s in splits.values())
    n_eval = sum(r["split"] == "eval" for r in records)
    assert 0 < n_eval < len(records)


def test_recipe_with_kind_and_command_line_override(cli, sample: dict[str, Path]) -> None:
    recipe = sample["tmp"] / "r.yaml"
    recipe.write_text("kind: raft\nqa: qa.jsonl\ndocs: docs.jsonl\ndistractors: 3\n")
    out = sample["tmp"] / "out"
    code, _, _ = cli("--recipe", recipe, "--distractors", "1", "--out", out)
    assert code == 0
    assert all(len(r["docs"]) == 2 for r in read_jsonl(out / "records.jsonl"))


def test_dry_run_prints_options_and_writes_nothing(cli, sample: dict[str, Path]) -> None:
    out = sample["tmp"] / "out"
    code, stdout, _ = build(cli, sample, out, "--dry-run", "--json")
    assert code == 0
    assert json.loads(stdout)["options"]["distractors"] == 2
    assert not out.exists()


def test_overwrite(cli, sample: dict[str, Path]) -> None:
    out = sample["tmp"] / "out"
    assert build(cli, sample, out)[0] == 0
    code, _, err = build(cli, sample, out)
    assert code == 2 and "not empty" in err
    assert build(cli, sample, out, "--overwrite")[0] == 0


def bad_inputs(tmp: Path, sample: dict[str, Path]) -> list[tuple[list[str], str]]:
    """(arguments, message) pairs for the mistakes a new user makes."""
    (tmp / "malformed.jsonl").write_text('{"id": "1", "question": "q?", "answers": ["a"]}\n{oops\n')
    write_jsonl(
        tmp / "nofield.jsonl",
        [{"id": "1", "question": "q?", "answers": ["a"]}, {"id": "2", "question": "r?"}],
    )
    write_jsonl(tmp / "empty_docs.jsonl", [{"id": "x", "text": ""}])
    (tmp / "latin1").mkdir()
    (tmp / "latin1" / "doc.txt").write_bytes(b"Caf\xe9 au lait")
    qa, docs = str(sample["qa"]), str(sample["docs"])
    return [
        (
            ["--qa", str(tmp / "missing.jsonl"), "--docs", docs],
            "qa=" + str(tmp / "missing.jsonl") + ": no such file",
        ),
        (["--qa", str(tmp / "malformed.jsonl"), "--docs", docs], "malformed.jsonl:2: invalid JSON"),
        (["--qa", str(tmp / "nofield.jsonl"), "--docs", docs], 'nofield.jsonl:2: missing field "answers"'),
        (["--qa", qa, "--docs", str(tmp / "empty_docs.jsonl")], "no documents with text"),
        (["--qa", qa, "--docs", docs, "--distractors", "8"], "every example needs 9"),
        (["--qa", qa, "--docs", str(tmp / "latin1")], "doc.txt: not valid UTF-8"),
        (
            ["--qa", qa, "--docs", docs, "--distractor", "2"],
            "unknown option --distractor (did you mean --distractors?)",
        ),
        (["--qa", qa, "--docs", docs, "--oracle-p", "1.5"], "oracle_p=1.5: must be between 0 and 1"),
        (["--qa", qa, "--docs", docs, "--format", "alpaca"], "format=alpaca: expected one of messages"),
        (
            ["--qa", qa, "--docs", docs, "--chunk-size", "8", "--chunk-overlap", "8"],
            "chunk_overlap=8: must be below",
        ),
    ]


def test_bad_inputs_exit_2_name_the_problem_and_leave_nothing(cli, sample: dict[str, Path], tmp_path: Path) -> None:
    for arguments, message in bad_inputs(tmp_path, sample):
        out = tmp_path / "out"
        code, stdout, stderr = cli("raft", *arguments, "--out", out)
        assert code == 2, (arguments, stderr)
        assert message in stderr, (message, stderr)
        assert stdout == ""
        assert not out.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_all_option_errors_are_reported_together(cli, sample: dict[str, Path]) -> None:
    code, _, stderr = cli("raft", "--docs", sample["docs"], "--oracle-p", "2", "--distractors", "-1", "--out", "x")
    assert code == 2
    assert "oracle_p=2.0: must be between 0 and 1" in stderr
    assert "distractors=-1: must be at least 0" in stderr
    assert "--qa is required" in stderr


def test_missing_kind_and_unknown_kind(cli) -> None:
    assert cli("--out", "x")[0] == 2
    code, _, stderr = cli("graph", "--out", "x")
    assert code == 2 and "expected one of raft" in stderr


def test_failure_midway_leaves_no_output(cli, sample: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    import hybridft.core.render

    def broken(record, fmt):
        raise RuntimeError("disk full")

    monkeypatch.setattr(hybridft.core.render, "render", broken)
    out = sample["tmp"] / "out"
    code, _, stderr = build(cli, sample, out)
    assert code == 1 and "disk full" in stderr
    assert not out.exists()
    assert not [p for p in sample["tmp"].iterdir() if p.name.startswith(".out")]


def test_real_process_exit_code_and_streams(sample: dict[str, Path]) -> None:
    out = sample["tmp"] / "out"
    command = [
        sys.executable,
        "-m",
        "hybridft",
        "build-data",
        "raft",
        "--qa",
        str(sample["qa"]),
        "--docs",
        str(sample["docs"]),
        "--oracle-p",
        "1.5",
        "--out",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stdout == ""
    assert "oracle_p=1.5" in done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["build-data", "raft", "--help"], ["build-data", "--help"]])
def test_help_imports_no_heavy_library(argv: list[str]) -> None:
    code = (
        "import sys\n"
        "from hybridft.cli.main import app\n"
        f"sys.argv = ['hybridft', *{argv!r}]\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'bitsandbytes', 'sentence_transformers')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("HEAVY []")


def test_error_messages_keep_brackets(cli, sample: dict[str, Path]) -> None:
    (sample["tmp"] / "bad.jsonl").write_text('["x"] [bold]\n')
    code, _, stderr = cli("raft", "--qa", sample["tmp"] / "bad.jsonl", "--docs", sample["docs"], "--out", "o")
    assert code == 2 and "bad.jsonl:1: invalid JSON" in stderr
    code, _, stderr = cli("raft", "--qa", sample["qa"], "--docs", sample["docs"], "--format", "[red]x", "--out", "o")
    assert code == 2 and "format=[red]x: expected one of" in stderr


def test_inspect_prints_the_quality_checks_with_flagged_rows(cli, sample: dict[str, Path], capsys) -> None:
    from hybridft.cli import inspect
    from hybridft.cli.common import run_guarded

    out = sample["tmp"] / "out"
    assert build(cli, sample, out, "--eval-fraction", "0.5")[0] == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["quality"]) == {
        "distractor_holding_answer",
        "doubtful_oracle",
        "empty_split",
        "quote_fallback",
        "quote_missing",
    }
    flagged = read_jsonl(out / "quality.jsonl")
    assert sum(manifest["quality"].values()) >= len(flagged) and all(
        row["check"] in manifest["quality"] for row in flagged
    )

    assert run_guarded(inspect.main, [str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "raft"
    assert {check: found["count"] for check, found in result["quality"].items()} == manifest["quality"]
    assert run_guarded(inspect.main, [str(out)]) == 0
    text = capsys.readouterr().out
    assert "quality checks" in text and "distractor_holding_answer" in text
    # Not a build folder, or a damaged manifest: exit 2 naming the file.
    assert run_guarded(inspect.main, [str(sample["tmp"])]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    (out / "manifest.json").write_text("{")
    assert run_guarded(inspect.main, [str(out)]) == 2
    assert "manifest.json: not valid JSON" in capsys.readouterr().err


def test_an_empty_eval_split_is_a_warning_that_names_the_option(cli, sample: dict[str, Path]) -> None:
    out = sample["tmp"] / "small"
    code, _, stderr = build(cli, sample, out, "--eval-fraction", "0.01")
    assert code == 0
    message = "warning: the eval split is empty (4 rows in all): raise --eval-fraction (now 0.01) or add questions"
    assert message in " ".join(stderr.split())  # (the terminal may wrap it)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quality"]["empty_split"] == 1 and manifest["counts"]["eval"] == 0
    empty = [row for row in read_jsonl(out / "quality.jsonl") if row["check"] == "empty_split"]
    assert [(row["id"], row["fix"]) for row in empty] == [("eval", "raise --eval-fraction (now 0.01) or add questions")]
    # No eval split asked for: nothing to warn about.
    code, _, stderr = build(cli, sample, sample["tmp"] / "none", "--eval-fraction", "0", "--overwrite")
    assert code == 0 and "warning" not in stderr


def test_twelve_questions_at_a_tenth_warn_of_an_empty_eval_split(cli, sample: dict[str, Path]) -> None:
    # The real case: a 12-question set at --eval-fraction 0.1 whose ids all hash into train.
    ids = [f"nq-{n}" for n in range(200) if split_of(f"nq-{n}", 0.1) == "train"][:12]
    row = {"question": "What is the capital of France?", "answers": ["Paris"], "doc_ids": ["paris"]}
    qa = [{"id": i, **row} for i in ids]
    write_jsonl(sample["qa"], qa)
    out = sample["tmp"] / "twelve"
    code, _, stderr = build(cli, sample, out, "--eval-fraction", "0.1")
    assert code == 0
    message = "warning: the eval split is empty (12 rows in all): raise --eval-fraction (now 0.1) or add questions"
    assert message in " ".join(stderr.split())
    assert json.loads((out / "manifest.json").read_text())["quality"]["empty_split"] == 1
