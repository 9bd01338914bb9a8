"""Invar-RAG builder: positives, negatives without answers, variants, teacher scores, generation
stage, determinism and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, read_jsonl, write_jsonl
from test_raft import synthetic

from hybridft.builders import invar
from hybridft.builders.common import split_of
from hybridft.core import answers
from hybridft.core.options import resolve
from hybridft.core.render import render

OUTPUT_FILES = ("records.jsonl", "train.jsonl", "eval.jsonl")


def config(qa: Path, docs: Path, **overrides: Any) -> dict[str, Any]:
    values = {"qa": str(qa), "docs": str(docs), "out": "unused", "teacher": "none", **overrides}
    resolved = resolve(invar.OPTIONS, values, {})
    assert invar.check(resolved) == []
    return resolved


def holds_answer(record: dict[str, Any], text: str) -> bool:
    return answers.holds_answer(text, record["answers"])


def test_exact_record_for_a_small_input(sample: dict[str, Path]) -> None:
    result = invar.build(config(sample["qa"], sample["docs"], negatives=2, n_variants=0))
    record = result.records[0]
    negatives = record.pop("negatives")
    assert record == {
        "id": "invar-q-paris",
        "source_id": "q-paris",
        "kind": "invar",
        "stage": "retrieval",
        "split": split_of("q-paris", 0.1),
        "query": "What is the capital of France?",
        "variants": [],
        "variant_kinds": [],
        "answers": ["Paris"],
        "positives": [{"id": "paris", "text": CORPUS[0]["text"]}],
        "teacher_scores": None,
    }
    # bm25 hard negatives: other capitals, never the tea/coffee documents.
    assert len(negatives) == 2 and {n["id"] for n in negatives} <= {"berlin", "rome", "madrid", "lisbon", "vienna"}
    assert result.counts["positives"] == 4 and result.counts["negatives"] == 8
    # The Seine row has no doc_ids: its positive is the document holding "Seine".
    seine = next(r for r in result.records if r["source_id"] == "q-seine")
    assert [p["id"] for p in seine["positives"]] == ["paris"]


def test_retrieval_rows_carry_texts_for_the_retriever_trainer(sample: dict[str, Path]) -> None:
    record = invar.build(config(sample["qa"], sample["docs"], negatives=1)).records[0]
    assert render(record, "retrieval") == {
        "id": "invar-q-paris",
        "query": record["query"],
        "variants": record["variants"],
        "positives": [CORPUS[0]["text"]],
        "negatives": [record["negatives"][0]["text"]],
        "teacher_scores": None,
    }


@pytest.mark.parametrize("strategy", ["bm25", "random", "dense"])
def test_negatives_never_hold_a_gold_answer(tmp_path: Path, strategy: str) -> None:
    qa, docs = synthetic(tmp_path)  # each colour is the answer of many rows and in many documents
    result = invar.build(config(qa, docs, negatives=5, negative_strategy=strategy))
    assert len(result.records) == 60
    for record in result.records:
        ids = [n["id"] for n in record["negatives"]]
        assert len(ids) == 5 == len(set(ids))
        assert not {p["id"] for p in record["positives"]} & set(ids)
        assert not any(holds_answer(record, n["text"]) for n in record["negatives"])


def test_positives_by_answer_up_to_max_positives(tmp_path: Path) -> None:
    docs = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"id": "a", "text": "The zebra crossing is striped."},
            {"id": "b", "text": "Zebra herds roam the plains."},
            {"id": "c", "text": "Lions hunt on the plains."},
            {"id": "d", "text": "Tea is brewed from leaves."},
        ],
    )
    qa = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"id": "z", "question": "Which striped animal roams?", "answers": ["zebra"]},
            {"id": "none", "question": "Who is Zorp?", "answers": ["Zorp the Great"]},
            {"id": "ctx", "question": "What is Zed?", "answers": ["a letter"], "context": "Zed is a letter."},
        ],
    )
    result = invar.build(config(qa, docs, negatives=1, max_positives=2))
    by_id = {r["source_id"]: r for r in result.records}
    assert sorted(p["id"] for p in by_id["z"]["positives"]) == ["a", "b"]
    assert by_id["ctx"]["positives"] == [{"id": "ctx#context", "text": "Zed is a letter."}]
    assert "none" not in by_id and result.counts["skipped"]["no_positive"] == 1
    # Every other chunk holds "zebra" or is a positive: only c and d can be negatives.
    result = invar.build(config(qa, docs, negatives=3, max_positives=1))
    assert result.counts["skipped"]["not_enough_negatives"] == 1


def test_variants_differ_from_the_query_and_repeat_by_seed(sample: dict[str, Path]) -> None:
    def variants(seed: int, strategy: str = "bm25") -> dict[str, list[str]]:
        options = {"negatives": 1, "n_variants": 3, "seed": seed, "negative_strategy": strategy}
        resolved = config(sample["qa"], sample["docs"], **options)
        records = invar.build(resolved).records
        return {r["id"]: r["variants"] for r in records}

    first = variants(0)
    records = invar.build(config(sample["qa"], sample["docs"], negatives=1, n_variants=3)).records
    for record in records:
        assert len(record["variants"]) == 3 == len(set(record["variants"]))
        assert record["query"] not in record["variants"]
        assert len(record["variant_kinds"]) == 3
    assert first == variants(0) == variants(0, "random")  # variants do not depend on the negatives
    assert first != variants(1)


def test_teacher_scores_follow_positives_then_negatives(tmp_path: Path) -> None:
    docs = write_jsonl(tmp_path / "docs.jsonl", [*CORPUS, {"id": "echo", "text": "Which river flows through Lisbon?"}])
    qa = write_jsonl(
        tmp_path / "qa.jsonl",
        [{"id": "t", "question": "Which river flows through Lisbon?", "answers": ["Tagus"], "doc_ids": ["lisbon"]}],
    )
    record = invar.build(config(qa, docs, negatives=8, negative_strategy="random", teacher="minilm")).records[0]
    documents = record["positives"] + record["negatives"]
    assert len(record["teacher_scores"]) == len(documents) == 9
    score = {d["id"]: s for d, s in zip(documents, record["teacher_scores"], strict=True)}
    assert score["echo"] > 0.99  # the document is the query
    assert score["echo"] > score["lisbon"] > score["coffee"]
    assert score["echo"] > score["tea"]
    assert all(-1 <= s <= 1 and round(s, 4) == s for s in score.values())


def test_same_seed_same_bytes_with_teacher_scores(cli, sample: dict[str, Path]) -> None:
    outs = {}
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        out = sample["tmp"] / name
        code, _, stderr = cli(
            "invar", "--qa", sample["qa"], "--docs", sample["docs"], "--negatives", "2",
            "--negative-strategy", "random", "--seed", seed, "--out", out,
        )  # fmt: skip
        assert code == 0, stderr
        outs[name] = {f: (out / f).read_bytes() for f in OUTPUT_FILES}
    assert outs["a"] == outs["b"]
    assert outs["a"]["records.jsonl"] != outs["c"]["records.jsonl"]
    manifest = json.loads((sample["tmp"] / "a" / "manifest.json").read_text())
    assert manifest["options"]["format"] == "retrieval"
    assert manifest["counts"]["teacher_scored"] == 4
    rows = read_jsonl(sample["tmp"] / "a" / "train.jsonl")
    assert all(len(r["teacher_scores"]) == len(r["positives"]) + len(r["negatives"]) for r in rows)


def test_generation_stage_rows(cli, sample: dict[str, Path]) -> None:
    out = sample["tmp"] / "gen"
    code, _, stderr = cli(
        "invar", "--stage", "generation", "--qa", sample["qa"], "--docs", sample["docs"], "--top-k", "3",
        "--eval-fraction", "0", "--format", "prompt-completion", "--out", out,
    )  # fmt: skip
    assert code == 0, stderr
    records = read_jsonl(out / "records.jsonl")
    rows = read_jsonl(out / "train.jsonl")
    assert [r["stage"] for r in records] == ["generation"] * 4
    paris = records[0]
    assert len(paris["docs"]) == 3 and paris["docs"][0]["id"] == "paris" and paris["answer_in_docs"]
    assert rows[0]["completion"] == "Paris"
    assert rows[0]["prompt"].endswith("Question: What is the capital of France?")
    assert "<DOCUMENT>Paris is the capital of France." in rows[0]["prompt"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["answer_in_docs"] + manifest["counts"]["answer_not_in_docs"] == 4


def test_generation_stage_defaults_to_messages(sample: dict[str, Path]) -> None:
    resolved = config(sample["qa"], sample["docs"], stage="generation", top_k=2)
    assert resolved["format"] == "messages"
    record = invar.build(resolved).records[0]
    assert [m["role"] for m in render(record, "messages")["messages"]] == ["user", "assistant"]


def test_bad_input_exits_2_and_leaves_nothing(cli, sample: dict[str, Path], tmp_path: Path) -> None:
    qa, docs = str(sample["qa"]), str(sample["docs"])
    cases = [
        (["--variants", "reword,typos"], "variants=reword needs a model: give --generator"),
        (["--variants", "jumble"], "variants=jumble: expected one of reword, drop-words"),
        (["--teacher", str(tmp_path / "nowhere")], "expected minilm, none, or a local sentence-transformers folder"),
        (["--format", "messages"], "format=messages: --stage retrieval writes retrieval rows"),
        (["--stage", "generation", "--format", "retrieval"], "--stage generation writes messages or prompt-completion"),
        (["--negatives", "8"], "8 chunk(s), but every row needs 9"),
        (["--stage", "generation", "--top-k", "9"], "fewer than top_k=9"),
        (["--n-variants", "-1"], "n_variants=-1: must be at least 0"),
    ]
    write_jsonl(tmp_path / "unknown.jsonl", [{"id": "x", "question": "q?", "answers": ["a"], "doc_ids": ["nope"]}])
    write_jsonl(tmp_path / "nowhere.jsonl", [{"id": "x", "question": "Who is Zorp?", "answers": ["Zorp"]}])
    for arguments, message in cases:
        out = tmp_path / "out"
        code, stdout, stderr = cli("invar", "--qa", qa, "--docs", docs, "--teacher", "none", *arguments, "--out", out)
        assert code == 2, (arguments, stderr)
        assert message in stderr, (message, stderr)
        assert stdout == "" and not out.exists()
    code, _, stderr = cli("invar", "--qa", tmp_path / "unknown.jsonl", "--docs", docs, "--out", tmp_path / "out")
    assert code == 2 and 'unknown.jsonl:1: doc_ids names "nope"' in stderr
    # A QA set whose answers occur in no document: every row skipped and counted, no output.
    code, _, stderr = cli("invar", "--qa", tmp_path / "nowhere.jsonl", "--docs", docs, "--out", tmp_path / "out")
    assert code == 2 and '"no_positive": 1' in stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_dry_run_shows_the_resolved_format(cli, sample: dict[str, Path]) -> None:
    code, stdout, _ = cli("invar", "--qa", sample["qa"], "--docs", sample["docs"], "--out", "x", "--dry-run", "--json")
    assert code == 0 and json.loads(stdout)["options"]["format"] == "retrieval"


@pytest.mark.parametrize("kind", ["invar", "mix"])
def test_help_imports_no_heavy_library(kind: str) -> None:
    code = (
        "import sys\n"
        "from hybridft.cli.main import app\n"
        f"sys.argv = ['hybridft', 'build-data', {kind!r}, '--help']\n"
        "try:\n    app()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'sentence_transformers', 'bm25s')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("HEAVY []")


def test_dense_negatives_lend_their_chunk_embeddings_to_the_same_teacher(
    sample: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybridft.retrieval import rankers as retrieval

    encoded: list[int] = []
    encode = retrieval.encode_texts

    def counting(model: Any, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        encoded.append(len(texts))
        return encode(model, texts, *args, **kwargs)

    monkeypatch.setattr(retrieval, "encode_texts", counting)
    options = {"negatives": 3, "negative_strategy": "dense", "teacher": "minilm"}
    reused = invar.build(config(sample["qa"], sample["docs"], **options)).records
    # The index encodes the 8 chunks and the 4 queries; the teacher only the 4 queries again.
    assert encoded == [8, 4, 0, 4]
    encoded.clear()
    monkeypatch.setattr(invar, "teacher_scores", _without_reuse(invar.teacher_scores))
    fresh = invar.build(config(sample["qa"], sample["docs"], **options)).records
    assert encoded[2] > 0  # the teacher encoded the documents itself
    assert [r["negatives"] for r in reused] == [r["negatives"] for r in fresh]
    for a, b in zip(reused, fresh, strict=True):  # other batches, so the last digit may differ
        assert a["teacher_scores"] == pytest.approx(b["teacher_scores"], abs=2e-4)


def _without_reuse(teacher_scores: Any) -> Any:
    return lambda *args: teacher_scores(*args[:4])


def test_variants_keep_the_positive_title_and_count_the_kinds_that_made_none(tmp_path: Path) -> None:
    docs = write_jsonl(
        tmp_path / "docs.jsonl",
        [
            {"id": "song", "title": "The Long Road", "text": "The Long Road is a song recorded by Mira Sol."},
            {"id": "other", "title": "Rivers", "text": "Rivers carry water to the sea."},
        ],
    )
    question = "who recorded the very song the long road"  # lower case, as Natural Questions asks
    qa = write_jsonl(tmp_path / "qa.jsonl", [{"id": "q1", "question": question, "answers": ["Mira Sol"]}])
    result = invar.build(
        config(qa, docs, negatives=1, n_variants=2, variants=["drop-words", "shuffle-clauses"], doubtful_oracles="keep")
    )
    (record,) = result.records
    # "the" is a word of the positive's title: only "very" may go.
    assert record["variants"] == ["who recorded the song the long road"]
    assert result.quality.counts["variants_rejected"] == 2 and result.quality.counts["fewer_variants"] == 1
    assert result.quality.flagged["variants_rejected"] == [
        {"check": "variants_rejected", "id": "q1", "query": question, "kinds": ["drop-words", "shuffle-clauses"]}
    ]
