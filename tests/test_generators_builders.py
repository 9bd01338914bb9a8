"""Builders with a generator, end to end through the CLI, against a local OpenAI-compatible server
(never the internet) and the tiny local model: RAFT from raw documents, RoG explanations,
Invar-RAG rewordings; resume after a failure, cache invalidation, secrets, exit codes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import read_jsonl
from fake_openai import FakeOpenAI

from hybridft.generators import backends

KEY = "sk-test-5ecret-key-0123456789"
ROG_RECIPE = Path(__file__).parent.parent / "data_recipes" / "rog_sample.yaml"


@pytest.fixture(autouse=True)
def test_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRIDFT_TEST_KEY", KEY)
    monkeypatch.setattr(backends, "BACKOFF_BASE_S", 0.01)


def endpoint(server: FakeOpenAI, tmp_path: Path, *extra: Any) -> list[Any]:
    return [
        "--generator",
        "openai:fake-model",
        "--base-url",
        server.base_url,
        "--api-key-env",
        "HYBRIDFT_TEST_KEY",
        "--generator-cache",
        tmp_path / "cache.sqlite",
        *extra,
    ]


def assert_key_absent(*folders: Path, texts: tuple[str, ...] = ()) -> None:
    for folder in folders:
        for file in folder.rglob("*"):
            if file.is_file():
                assert KEY.encode() not in file.read_bytes(), file
    for text in texts:
        assert KEY not in text


def test_invar_reword_variants(cli, sample: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "invar"
    with FakeOpenAI(key=KEY) as server:
        code, stdout, stderr = cli(
            "invar",
            "--qa",
            sample["qa"],
            "--docs",
            sample["docs"],
            "--teacher",
            "none",
            "--variants",
            "reword,prefix",
            "--n-variants",
            "2",
            *endpoint(server, tmp_path),
            "--out",
            out,
            "--json",
        )
    assert code == 0, stderr
    records = {r["source_id"]: r for r in read_jsonl(out / "records.jsonl")}
    paris = records["q-paris"]
    assert paris["variant_kinds"].count("reword") == 1 and len(paris["variants"]) == 2
    assert "In other words, what is the capital of France?" in paris["variants"]
    counts = json.loads(stdout)["counts"]
    assert counts["generated"]["rewordings"] == {"items": 4, "accepted": 4, "failed": 0, "rejected": {}}
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["generator"]["prompts"]) == {"reword"}
    assert manifest["generator"]["this_run"]["requests"] == 4
    assert_key_absent(out, tmp_path, texts=(stdout, stderr))


def test_rog_explain_task(cli, tmp_path: Path) -> None:
    out = tmp_path / "rog"
    with FakeOpenAI(key=KEY) as server:
        tasks = ["--tasks", "plan,reason,explain"]
        code, stdout, stderr = cli("--recipe", ROG_RECIPE, *tasks, *endpoint(server, tmp_path), "--out", out, "--json")
    assert code == 0, stderr
    records = read_jsonl(out / "records.jsonl")
    explain = [r for r in records if r["task"] == "explain"]
    reason = {r["source_id"]: r for r in records if r["task"] == "reason"}
    counts = json.loads(stdout)["counts"]
    assert len(explain) == counts["explain"] == counts["generated"]["explanations"]["accepted"] > 0
    for record in explain:
        assert record["reasoning_paths"] == reason[record["source_id"]]["reasoning_paths"]
        assert record["explanation"].startswith("Following the reasoning paths")
    rows = [r for r in read_jsonl(out / "train.jsonl") + read_jsonl(out / "eval.jsonl")]
    explained = [r for r in rows if r["messages"][1]["content"].startswith("Following the reasoning paths")]
    assert len(explained) == len(explain)
    assert "explain how they lead to the answers" in explained[0]["messages"][0]["content"]
    # explain is not a default task, and needs a generator
    code, _, stderr = cli("--recipe", ROG_RECIPE, "--tasks", "explain", "--out", tmp_path / "x")
    assert code == 2 and "tasks=explain needs a model" in stderr
