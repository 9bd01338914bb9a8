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


# --- RAFT -------------------------------------------------------------------------------------


def raft_from_docs(cli, docs: Path, server: FakeOpenAI, tmp_path: Path, out: Path, *extra: Any) -> tuple:
    return cli(
        "raft",
        "--docs",
        docs,
        "--distractors",
        "2",
        "--cot",
        "generator",
        *endpoint(server, tmp_path),
        *extra,
        "--out",
        out,
        "--json",
    )


def test_raft_from_documents_without_a_qa_set(cli, sample: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "raft"
    prices = ["--price-input-per-1m", "2", "--price-output-per-1m", "8"]
    with FakeOpenAI(key=KEY) as server:
        code, stdout, stderr = raft_from_docs(
            cli, sample["docs"], server, tmp_path, out, "--questions-per-chunk", "2", *prices
        )
        assert code == 0, stderr
        assert len(server.log) == 8 + 16  # 8 chunks -> 16 questions -> 16 answers
        records = read_jsonl(out / "records.jsonl")
        assert len(records) == 16
        for record in records:
            [oracle] = record["oracles"]
            assert oracle["id"] == record["source_id"].rsplit("#q", 1)[0]  # the chunk the question came from
            assert record["question"].startswith("What is fact ")
            assert record["answers"][0] in oracle["text"]
            assert record["cot_answer"].endswith(f"<ANSWER>: {record['answers'][0]}")
            assert all(record["answers"][0] not in d["text"] for d in record["docs"] if not d["is_oracle"])
            assert len(record["docs"]) == 3 and any(d["is_oracle"] for d in record["docs"]) == record["oracle_present"]
        paris = next(r for r in records if r["source_id"] == "paris#q0")
        assert paris["question"] == "What is fact 0 about Paris?" and paris["answers"] == ["France"]
        counts = json.loads(stdout)["counts"]
        assert counts["generated"]["questions"] == {
            "items": 8,
            "accepted": 8,
            "failed": 0,
            "rejected": {},
            "questions": 16,
            "duplicates_dropped": 8,
            "extra_dropped": 0,
            "lines_skipped": 8,
        }
        assert counts["generated"]["cot_answers"]["accepted"] == 16
        manifest = json.loads((out / "manifest.json").read_text())
        generator = manifest["generator"]
        assert set(generator["prompts"]) == {"questions", "cot_answer"}
        assert all(len(p["sha256"]) == 64 and p["user"] for p in generator["prompts"].values())
        tokens = generator["tokens"]
        assert tokens["prompt"] > 0 and tokens["completion"] > 0
        assert generator["cost_usd"] == round((tokens["prompt"] * 2 + tokens["completion"] * 8) / 1e6, 6)
        assert generator["this_run"]["requests"] == 24 and manifest["options"]["qa"] is None
        # The same command again: nothing sent, the same bytes.
        again = tmp_path / "again"
        code, stdout2, stderr2 = raft_from_docs(
            cli, sample["docs"], server, tmp_path, again, "--questions-per-chunk", "2", *prices
        )
        assert code == 0 and len(server.log) == 24
        for name in ("records.jsonl", "train.jsonl", "eval.jsonl"):
            assert (out / name).read_bytes() == (again / name).read_bytes()
        assert json.loads((again / "manifest.json").read_text())["generator"]["tokens"] == tokens
    assert_key_absent(out, again, tmp_path, texts=(stdout, stderr, stdout2, stderr2))


def test_raft_build_killed_midway_resumes_without_paying_twice(cli, sample: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "raft"
    with FakeOpenAI(key=KEY) as server:
        server.decide = lambda body, n: "500" if n >= 12 else None  # the endpoint dies for good
        code, stdout, stderr = raft_from_docs(cli, sample["docs"], server, tmp_path, out, "--max-retries", "1")
        assert code == 1 and not out.exists()
        assert "run the same command again to resume" in stderr and KEY not in stderr
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".raft")]
        paid = server.answered()
        assert len(paid) == 12
        server.decide = None
        code, _, stderr = raft_from_docs(cli, sample["docs"], server, tmp_path, out, "--max-retries", "1")
        assert code == 0, stderr
    answered = server.answered()
    assert len(answered) == len(set(answered)) == 8 + 24  # every item paid for once
    assert len(read_jsonl(out / "records.jsonl")) == 24


def test_raft_changed_option_is_not_served_from_the_cache(cli, sample: dict[str, Path], tmp_path: Path) -> None:
    with FakeOpenAI(key=KEY) as server:
        assert (
            raft_from_docs(cli, sample["docs"], server, tmp_path, tmp_path / "a", "--questions-per-chunk", "1")[0] == 0
        )
        assert len(server.log) == 8 + 8
        assert (
            raft_from_docs(cli, sample["docs"], server, tmp_path, tmp_path / "b", "--questions-per-chunk", "2")[0] == 0
        )
        sent = [text for text, _ in server.log[16:]]
        # Every chunk asked again (another count is another prompt); only the new questions answered.
        assert sum("different questions" in text for text in sent) == 8
        assert sum("fact 1" in text for text in sent) == 8 and len(sent) == 16
        assert raft_from_docs(cli, sample["docs"], server, tmp_path, tmp_path / "c", "--max-new-tokens", "99")[0] == 0
        assert len(server.log) == 32 + 8 + 24


def test_raft_with_a_qa_set_and_generated_cot(cli, sample: dict[str, Path], tmp_path: Path) -> None:
    from fake_openai import default_reply

    def reply(body: dict[str, Any]) -> str:
        text = body["messages"][1]["content"]
        if "Which river flows through Lisbon?" in text:
            return "##begin_quote##The Tagus is long.##end_quote##\n<ANSWER>: Tagus"  # not in the oracle
        if "What is the capital of France?" in text:
            return "##begin_quote##Paris is the capital of France.##end_quote##\n<ANSWER>: the city of Paris"
        return default_reply(body)  # quotes the oracle's first sentence, answers its last word

    out = tmp_path / "raft"
    with FakeOpenAI(key=KEY, reply=reply) as server:
        code, stdout, stderr = raft_from_docs(cli, sample["docs"], server, tmp_path, out, "--qa", sample["qa"])
    assert code == 0, stderr
    records = {r["source_id"]: r for r in read_jsonl(out / "records.jsonl")}
    assert records["q-tagus"]["cot_answer"] == "<ANSWER>: Tagus"
    assert records["q-paris"]["cot_answer"].endswith("<ANSWER>: the city of Paris")  # holds the gold answer
    assert records["q-paris"]["answers"] == ["Paris"]  # a QA set's gold answers stay
    # "Italy" and "France" (the last words of the oracles' first sentences) are quoted well but
    # contradict the gold answers "Rome" and "Seine": both fall back to the gold answer line.
    assert records["q-rome"]["cot_answer"] == "<ANSWER>: Rome"
    assert records["q-seine"]["cot_answer"] == "<ANSWER>: Seine"
    cot = json.loads(stdout)["counts"]["generated"]["cot_answers"]
    assert cot == {
        "items": 4,
        "accepted": 3,
        "failed": 0,
        "rejected": {"quote_not_in_oracle": 1},
        "disagreed_with_gold": 2,
        "quote_not_supporting": 0,
        "fell_back_to_answer_line": 3,
    }


def test_raft_usage_errors(cli, sample: dict[str, Path], tmp_path: Path) -> None:
    code, stdout, stderr = cli("raft", "--docs", sample["docs"], "--out", tmp_path / "x")
    assert code == 2 and "--qa is required" in stderr
    code, _, stderr = cli("raft", "--docs", sample["docs"], "--qa", sample["qa"], "--cot", "generator", "--out", "x")
    assert code == 2 and "cot=generator needs a model" in stderr
    with FakeOpenAI(key="the-server-expects-another-key") as server:
        code, stdout, stderr = raft_from_docs(cli, sample["docs"], server, tmp_path, tmp_path / "out")
    assert code == 2 and stdout == "" and not (tmp_path / "out").exists()
    assert (
        "HTTP 401" in stderr and server.base_url in stderr and "fake-model" in stderr and "HYBRIDFT_TEST_KEY" in stderr
    )
    assert KEY not in stderr


def test_raft_with_the_tiny_local_model(cli, sample: dict[str, Path], tmp_path: Path) -> None:
    """hf: plumbing and the quality gate: the random tiny model never writes RAFT's format, so
    every answer is rejected, counted, and replaced by the answer line."""
    out = tmp_path / "raft"
    code, stdout, stderr = cli(
        "raft",
        "--qa",
        sample["qa"],
        "--docs",
        sample["docs"],
        "--distractors",
        "2",
        "--cot",
        "generator",
        "--generator",
        "hf:tiny",
        "--max-new-tokens",
        "6",
        "--generator-batch-size",
        "3",
        "--generator-cache",
        tmp_path / "cache.sqlite",
        "--out",
        out,
        "--json",
    )
    assert code == 0, stderr
    cot = json.loads(stdout)["counts"]["generated"]["cot_answers"]
    assert cot["items"] == 4 and cot["failed"] == 0 and cot["accepted"] == 0
    assert sum(cot["rejected"].values()) == 4 == cot["fell_back_to_answer_line"]
    records = read_jsonl(out / "records.jsonl")
    assert all(r["cot_answer"] == f"<ANSWER>: {r['answers'][0]}" for r in records)
    generator = json.loads((out / "manifest.json").read_text())["generator"]
    assert generator["generator"] == "hf:tiny" and generator["params"] == {"max_new_tokens": 6, "temperature": 0.0}
    assert 0 < generator["tokens"]["completion"] <= 4 * 6 and generator["this_run"]["requests"] == 2  # two batches


def test_raft_build_interrupted_midway_resends_only_unsaved_items(
    cli, sample: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybridft.generators.cache import GenerationCache

    put = GenerationCache.put
    saved: list[str] = []

    def put_then_interrupt(self: GenerationCache, key: str, completion: Any) -> None:
        if len(saved) == 6:
            raise KeyboardInterrupt  # Ctrl-C while the 7th answer is being saved
        put(self, key, completion)
        saved.append(key)

    out = tmp_path / "raft"
    with FakeOpenAI(key=KEY) as server:
        monkeypatch.setattr(GenerationCache, "put", put_then_interrupt)
        code, _, stderr = raft_from_docs(cli, sample["docs"], server, tmp_path, out, "--concurrency", "2")
        assert code == 130 and not out.exists() and "interrupted" in stderr
        server.settle()  # a request sent just before the interrupt is logged as the first run's
        first = server.answered()
        monkeypatch.setattr(GenerationCache, "put", put)
        code, _, stderr = raft_from_docs(cli, sample["docs"], server, tmp_path, out, "--concurrency", "2")
        assert code == 0, stderr
        second = [text for text, _ in server.log[len(first) :]]
    assert len(saved) == 6 and len(first) >= 7
    assert len(set(first) & set(second)) == len(first) - 6  # only what was answered but not yet saved
    assert len(second) == 8 + 24 - 6


def test_an_oracle_judge_confirms_or_rejects_oracles_found_by_answer_search(cli, tmp_path: Path) -> None:
    """--oracle-judge generator: the model reads each row's candidates (relevant ones first); the
    first it confirms is the oracle; a row with none confirmed is doubtful (skipped by default)."""
    from conftest import write_jsonl

    docs = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"id": "king", "text": "Cyrus the Great let the Jews return from captivity in Babylon."},
            {"id": "singer", "text": "Miley Cyrus freed a new album about the Jews of New York."},
            {"id": "census", "text": "The village had 291 residents at the census."},
            *({"id": f"filler{i}", "text": f"Unrelated filler sentence number {i}."} for i in range(4)),
        ],
    )
    qa = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"id": "cyrus", "question": "Who freed the Jews from captivity in Babylon?", "answers": ["Cyrus"]},
            {"id": "episodes", "question": "How many episodes of Dragon Ball Z are there?", "answers": ["291"]},
        ],
    )
    asked: list[str] = []

    def reply(body: dict[str, Any]) -> str:
        text = body["messages"][1]["content"]
        asked.append(text.split("Passage:\n", 1)[1].split("\n", 1)[0])
        return "Yes." if "Great" in text else "No, it does not."

    out = tmp_path / "out"
    with FakeOpenAI(key=KEY, reply=reply) as server:
        code, stdout, stderr = cli(
            "raft", "--qa", qa, "--docs", docs, "--distractors", "2", "--oracle-judge", "generator",
            *endpoint(server, tmp_path), "--out", out, "--json",
        )  # fmt: skip
    assert code == 0, stderr
    records = read_jsonl(out / "records.jsonl")
    assert [(r["source_id"], r["oracles"][0]["id"]) for r in records] == [("cyrus", "king")]
    # Both Cyrus passages were read (the more relevant one first); the census figures too.
    assert sorted(asked) == sorted(
        [
            "Cyrus the Great let the Jews return from captivity in Babylon.",
            "Miley Cyrus freed a new album about the Jews of New York.",
            "The village had 291 residents at the census.",
        ]
    )
    counts = json.loads(stdout)["counts"]
    assert counts["generated"]["oracle_judge"] == {
        "items": 3,
        "accepted": 3,
        "failed": 0,
        "rejected": {},
        "confirmed": 1,
        "denied": 2,
    }
    assert counts["skipped"]["doubtful_oracle"] == 1
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["quality"]["doubtful_oracle"] == 1
    assert set(manifest["generator"]["prompts"]) == {"oracle_judge"}
