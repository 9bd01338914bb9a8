"""The RAG system: `hybridft index`, `eval rag` and `ask` — rankings known by hand, a saved index
that ranks as a fresh one, refusals of mismatched or foreign input, and metrics recomputed here."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import read_jsonl, sample_files, write_jsonl

from hybridft.cli import ask as ask_cli
from hybridft.cli import eval as eval_cli
from hybridft.cli import index as index_cli
from hybridft.cli.common import run_guarded
from hybridft.core.answers import holds_answer
from hybridft.core.errors import UsageError
from hybridft.evaluation.metrics import raft_scores
from hybridft.retrieval.index import corpus_index, open_saved

FIVE = [
    {"id": "d1", "title": "Apples", "text": "Apples grow on trees in orchards."},
    {"id": "d2", "title": "Bananas", "text": "Bananas grow in tropical climates."},
    {"id": "d3", "title": "Orchard", "text": "The orchard keeps apples and pears."},
    {"id": "d4", "title": "Rivers", "text": "Rivers flow into the sea."},
    {"id": "d5", "title": "Sea", "text": "The sea is salty."},
]
QUESTIONS = [
    {"id": "q1", "question": "Which orchard keeps apples?", "answers": ["orchard"], "doc_ids": ["d3"]},
    {"id": "q2", "question": "Is the sea salty?", "answers": ["salty"], "doc_ids": ["d5"]},
    {"id": "q3", "question": "Where do bananas grow?", "answers": ["tropical climates"]},
]
CHUNKING = {"chunk_size": 64, "chunk_overlap": 0, "tokenizer": None}


def run(command: Any, capsys: pytest.CaptureFixture[str], *tokens: Any) -> tuple[int, str, str]:
    code = run_guarded(command.main, [str(t) for t in tokens])
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    return sample_files(tmp_path, FIVE, QUESTIONS)


def ids_of(index: Any, questions: list[str], k: int) -> list[list[str]]:
    found, _ = index.search(questions, k)
    return [[index.chunks.ids[i] for i in row] for row in found]


def test_bm25_top_k_is_known_by_hand(corpus: dict[str, Path]) -> None:
    index = corpus_index(None, str(corpus["docs"]), "bm25", CHUNKING)
    # "apples" + "orchard": d3 holds both, d1 "apples" only ("orchards" is another word); the rest neither.
    # "sea" + "salty": d5 holds both, d4 "sea" only.
    assert ids_of(index, ["apples orchard", "salty sea"], 2) == [["d3", "d1"], ["d5", "d4"]]


@pytest.mark.parametrize("retriever", ["bm25", "minilm"])
def test_a_saved_index_ranks_as_a_fresh_one(corpus, capsys, retriever: str) -> None:
    out = corpus["tmp"] / "index"
    code, _, err = run(index_cli, capsys, "--docs", corpus["docs"], "--retriever", retriever, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["chunks.arrow", "manifest.json", "bm25" if retriever == "bm25" else "embeddings.npy"]
    )
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["retriever"]["kind"] == ("bm25" if retriever == "bm25" else "dense")
    assert manifest["counts"]["chunks"] == 5 and manifest["chunking"]["chunk_size"] == 512
    saved = open_saved(out, docs=str(corpus["docs"]))
    fresh = corpus_index(None, str(corpus["docs"]), retriever, {**CHUNKING, "chunk_size": 512})
    queries = ["apples orchard", "salty sea", "tropical bananas", "trees"]
    saved_ids, saved_scores = saved.search(queries, 5)
    fresh_ids, fresh_scores = fresh.search(queries, 5)
    assert np.array_equal(saved_ids, fresh_ids)
    assert np.allclose(saved_scores, fresh_scores, atol=1e-5)


def test_an_index_that_does_not_match_is_refused(corpus, capsys) -> None:
    out = corpus["tmp"] / "index"
    assert run(index_cli, capsys, "--docs", corpus["docs"], "--chunk-size", "64", "--out", out)[0] == 0
    other = write_jsonl(corpus["tmp"] / "other.jsonl", FIVE[:4])
    common = ["rag", "--qa", corpus["qa"], "--index", out, "--model", "tiny"]
    code, _, err = run(eval_cli, capsys, *common, "--docs", other, "--chunk-size", "64", "--out", corpus["tmp"] / "r")
    assert code == 2 and f"--docs {other}: not the corpus the index was built from" in err
    code, _, err = run(eval_cli, capsys, *common, "--docs", corpus["docs"], "--out", corpus["tmp"] / "r")
    assert code == 2 and "chunk_size=512: the index was chunked with chunk_size=64" in err
    assert not (corpus["tmp"] / "r").exists()


def test_bad_input_is_exit_2_and_writes_nothing(corpus, capsys) -> None:
    tmp = corpus["tmp"]
    foreign = tmp / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("not an index")
    bad_qa = tmp / "bad.jsonl"
    bad_qa.write_text(json.dumps(QUESTIONS[0]) + "\n{not json\n")
    index = tmp / "index"
    assert run(index_cli, capsys, "--docs", corpus["docs"], "--out", index)[0] == 0
    cases = [
        (
            eval_cli,
            ["rag", "--qa", corpus["qa"], "--index", tmp / "missing", "--model", "tiny"],
            "no such file or folder",
        ),
        (eval_cli, ["rag", "--qa", corpus["qa"], "--index", foreign, "--model", "tiny"], "no manifest.json"),
        (eval_cli, ["rag", "--qa", bad_qa, "--index", index, "--model", "tiny"], "bad.jsonl:2"),
        (index_cli, ["--docs", corpus["docs"], "--retriever", foreign], f"retriever={foreign}: expected bm25"),
        (ask_cli, ["what?", "--index", foreign, "--model", "tiny"], "no manifest.json"),
        # none unset the retriever (a TypeError later); none is no retriever's name
        (
            eval_cli,
            ["rag", "--qa", corpus["qa"], "--docs", corpus["docs"], "--retriever", "none", "--model", "tiny"],
            "--retriever=none: expected a string (leave it out for the default, bm25)",
        ),
    ]
    for command, tokens, message in cases:
        out = tmp / "out"
        extra = ["--out", out] if command is not ask_cli else []
        code, stdout, err = run(command, capsys, *tokens, *extra)
        assert code == 2, (tokens, err)
        assert message in err, (message, err)
        assert not out.exists()


def test_eval_rag_metrics_are_those_computed_here(corpus, capsys) -> None:
    out = corpus["tmp"] / "report"
    index = corpus["tmp"] / "index"
    assert run(index_cli, capsys, "--docs", corpus["docs"], "--out", index)[0] == 0
    tokens = ["rag", "--qa", corpus["qa"], "--index", index, "--model", "tiny", "--k", "1,2,9"]
    code, stdout, err = run(eval_cli, capsys, *tokens, "--max-new-tokens", "8", "--out", out, "--json")
    assert code == 0, err
    report = json.loads(stdout)
    assert report["skipped"] == {"k_above_chunks": 1}  # 9 > 5 chunks: evaluated at 5 and counted
    assert list(report["by_k"]) == ["1", "2", "5"]
    examples = read_jsonl(out / "examples.jsonl")
    assert len(examples) == 3 * len(QUESTIONS)
    texts = {doc["id"]: doc["text"] for doc in FIVE}
    relevant = {q["id"]: set(q.get("doc_ids", [])) for q in QUESTIONS}
    for k in (1, 2, 5):
        rows = [e for e in examples if e["k"] == k]
        assert [len(e["retrieved"]) for e in rows] == [k] * len(QUESTIONS)
        recall, hits, exact = [], [], []
        for row in rows:
            retrieved = [texts[c["id"]] for c in row["retrieved"]]
            recall.append(any(holds_answer(t, row["answers"]) for t in retrieved))
            if relevant[row["id"]]:
                hits.append(any(c["id"] in relevant[row["id"]] for c in row["retrieved"]))
            exact.append(raft_scores(row["output"], row["answers"], retrieved)["exact_match"])
        assert report["by_k"][str(k)]["answer_recall"] == pytest.approx(sum(recall) / len(recall))
        assert report["by_k"][str(k)]["hit"] == pytest.approx(sum(hits) / len(hits))
        assert report["by_k"][str(k)]["exact_match"] == pytest.approx(sum(exact) / len(exact))
        assert report["metrics"][f"answer_recall@{k}"] == report["by_k"][str(k)]["answer_recall"]
    # Known by hand at k=1: q1 finds d3 (holds "orchard"), q2 finds d5 ("salty"), q3 finds d2.
    first = {e["id"]: e["retrieved"][0]["id"] for e in examples if e["k"] == 1}
    assert first == {"q1": "d3", "q2": "d5", "q3": "d2"}
    assert report["by_k"]["1"]["answer_recall"] == 1.0 and report["by_k"]["1"]["hit"] == 1.0
    assert (out / "by_k.png").is_file()


def test_ask_json_rows_have_the_documented_fields(corpus, capsys, monkeypatch) -> None:
    index = corpus["tmp"] / "index"
    assert run(index_cli, capsys, "--docs", corpus["docs"], "--out", index)[0] == 0
    code, stdout, err = run(ask_cli, capsys, "Is the sea salty?", "--index", index, "--model", "tiny", "--k", "2")
    assert code == 0, err
    one = json.loads(run(ask_cli, capsys, "Is the sea salty?", "--index", index, "--model", "tiny", "--json")[1])
    assert set(one) == {"question", "answer", "chunks"} and isinstance(one["answer"], str)
    assert [set(c) for c in one["chunks"]] == [{"id", "title", "score"}] * 5
    assert one["chunks"][0] == {"id": "d5", "title": "Sea", "score": one["chunks"][0]["score"]}
    code, stdout, err = run(
        ask_cli, capsys, "Is the sea salty?", "--index", index, "--model", "tiny", "--k", "9", "--json"
    )
    assert code == 0 and "k=9: the index holds 5 chunks; answering from all 5" in err
    assert len(json.loads(stdout)["chunks"]) == 5
    monkeypatch.setattr("sys.stdin", io.StringIO("Is the sea salty?\n\nWhere do bananas grow?\n"))
    code, stdout, err = run(ask_cli, capsys, "--index", index, "--model", "tiny", "--k", "1")
    assert code == 0, err
    lines = [json.loads(line) for line in stdout.splitlines()]
    assert [row["question"] for row in lines] == ["Is the sea salty?", "Where do bananas grow?"]
    assert [[c["id"] for c in row["chunks"]] for row in lines] == [["d5"], ["d2"]]


def test_an_interrupted_index_leaves_nothing_and_the_rerun_continues(corpus, capsys, monkeypatch) -> None:
    from hybridft.retrieval import rankers

    monkeypatch.setattr(rankers, "SHARD_TEXTS", 2)  # 5 chunks: 3 shards
    encode = rankers.encode_texts
    calls = []

    def interrupted(model, texts, batch_size=64, description=None):
        calls.append(len(texts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return encode(model, texts, batch_size, description)

    monkeypatch.setattr(rankers, "encode_texts", interrupted)
    out = corpus["tmp"] / "index"
    tokens = ["--docs", corpus["docs"], "--retriever", "minilm", "--out", out]
    assert run(index_cli, capsys, *tokens)[0] == 130
    assert not out.exists() and not list(corpus["tmp"].glob(".index*"))
    code, _, err = run(index_cli, capsys, *tokens)
    assert code == 0, err
    assert "1 of 3 shard(s) already" in err
    assert calls == [2, 2, 2, 1]  # the first shard was not encoded again
    monkeypatch.setattr(rankers, "encode_texts", encode)
    fresh = corpus_index(None, str(corpus["docs"]), "minilm", {**CHUNKING, "chunk_size": 512})
    assert np.array_equal(open_saved(out).search(["salty sea"], 5)[0], fresh.search(["salty sea"], 5)[0])


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("raft", ["--distractors", "2"]),
        ("invar", ["--negatives", "2", "--teacher", "none"]),
        ("invar", ["--stage", "generation", "--top-k", "2"]),
    ],
)
def test_builds_with_a_saved_index_write_the_same_bytes(corpus, capsys, cli, kind: str, extra: list[str]) -> None:
    index = corpus["tmp"] / "index"
    assert run(index_cli, capsys, "--docs", corpus["docs"], "--chunk-size", "64", "--out", index)[0] == 0
    common = [kind, "--qa", corpus["qa"], "--docs", corpus["docs"], "--chunk-size", "64", *extra]
    code, _, err = cli(*common, "--out", corpus["tmp"] / "fresh")
    assert code == 0, err
    code, _, err = cli(*common, "--index", index, "--out", corpus["tmp"] / "saved")
    assert code == 0, err
    assert "indexing" not in err  # the saved bm25 index ranked; nothing was indexed again
    for name in ("records.jsonl", "train.jsonl", "eval.jsonl"):
        assert (corpus["tmp"] / "fresh" / name).read_bytes() == (corpus["tmp"] / "saved" / name).read_bytes()
    code, _, err = cli(*common, "--index", index, "--chunk-size", "32", "--out", corpus["tmp"] / "other")
    assert code == 2 and "chunk_size=32: the index was chunked with chunk_size=64" in err
    assert not (corpus["tmp"] / "other").exists()


def test_eval_retrieval_ranks_the_corpus_with_a_saved_index(corpus, capsys, cli) -> None:
    data = corpus["tmp"] / "data"
    tokens = ["invar", "--qa", corpus["qa"], "--docs", corpus["docs"], "--negatives", "2", "--teacher", "none"]
    assert cli(*tokens, "--eval-fraction", "0", "--out", data)[0] == 0
    index = corpus["tmp"] / "index"
    assert run(index_cli, capsys, "--docs", corpus["docs"], "--out", index)[0] == 0
    reports = {}
    for name, extra in (("fresh", []), ("saved", ["--index", index])):
        out = corpus["tmp"] / name
        tokens = ["retrieval", "--data", data, "--split", "all", "--ranker", "bm25", "--docs", corpus["docs"]]
        code, stdout, err = run(eval_cli, capsys, *tokens, *extra, "--out", out, "--json")
        assert code == 0, err
        reports[name] = (json.loads(stdout)["metrics"], read_jsonl(out / "examples.jsonl"))
    assert reports["fresh"] == reports["saved"]


def test_eval_rag_reads_the_questions_of_an_invar_generation_build(corpus, capsys, cli) -> None:
    data = corpus["tmp"] / "gen"
    tokens = ["invar", "--qa", corpus["qa"], "--docs", corpus["docs"], "--stage", "generation", "--top-k", "2"]
    assert cli(*tokens, "--eval-fraction", "0", "--out", data)[0] == 0
    out = corpus["tmp"] / "report"
    tokens = ["rag", "--qa", data, "--split", "all", "--docs", corpus["docs"], "--model", "tiny", "--k", "1"]
    code, stdout, err = run(
        eval_cli, capsys, *tokens, "--chunk-size", "64", "--max-new-tokens", "4", "--out", out, "--json"
    )
    assert code == 0, err
    report = json.loads(stdout)
    assert report["count"] == len(QUESTIONS) and report["metrics"]["hit@1"] is None  # generation rows name no positives
    damaged = corpus["tmp"] / "damaged"
    damaged.mkdir()
    rows = read_jsonl(data / "records.jsonl")
    write_jsonl(damaged / "records.jsonl", [rows[0], {k: v for k, v in rows[1].items() if k != "answers"}])
    code, _, err = run(
        eval_cli,
        capsys,
        "rag",
        "--qa",
        damaged,
        "--split",
        "all",
        "--docs",
        corpus["docs"],
        "--model",
        "tiny",
        "--out",
        corpus["tmp"] / "r2",
    )
    assert code == 2 and 'records.jsonl:2: missing field "answers"' in err


def test_a_saved_index_keeps_its_texts_in_the_mapped_file(corpus, capsys) -> None:
    from hybridft.retrieval.chunking import ArrowStrings
    from hybridft.retrieval.index import open_saved

    index = corpus["tmp"] / "index"
    assert run(index_cli, capsys, "--docs", corpus["docs"], "--out", index)[0] == 0
    saved = open_saved(index)
    assert isinstance(saved.chunks.texts, ArrowStrings) and isinstance(saved.chunks.titles, ArrowStrings)
    texts = {row["id"]: row["text"] for row in FIVE}
    assert [saved.chunks.texts[i] for i in range(len(saved.chunks))] == [texts[i] for i in saved.chunks.ids]
    assert list(saved.chunks.texts) == [texts[i] for i in saved.chunks.ids]
    # An index from before (chunks.jsonl) or a damaged file: exit 2, saying to rebuild it.
    (index / "chunks.arrow").write_bytes(b"not arrow")
    with pytest.raises(UsageError, match="chunks.arrow is damaged"):
        open_saved(index)
    (index / "chunks.arrow").unlink()
    with pytest.raises(UsageError, match="no chunks.arrow"):
        open_saved(index)


def test_eval_rag_answer_metrics_equal_values_worked_out_by_hand(corpus, capsys, monkeypatch) -> None:
    """Outputs fixed per question (the model's generate replaced), so every answer metric is known."""
    from hybridft.core.generation import ChatModel

    outputs = {
        # EM 1 ("the" is dropped), f1 1, contains 1, format 1, its one quote is in d3: quote_precision 1.
        "Which orchard keeps apples?": "##begin_quote##The orchard keeps apples##end_quote## <ANSWER>: the orchard",
        # EM 0, f1 2/3 ("very salty" against "salty"), contains 1, format 1, a quote no chunk holds: 0.
        "Is the sea salty?": "##begin_quote##The sea is sweet.##end_quote## <ANSWER>: very salty",
        # Everything 0, and no quote: quote_precision None (left out of the mean).
        "Where do bananas grow?": "I do not know",
    }

    def generate(self, messages, description="", **options):
        return [[next(out for question, out in outputs.items() if question in m)] for m in messages]

    monkeypatch.setattr(ChatModel, "generate", generate)
    index = corpus["tmp"] / "index"
    assert run(index_cli, capsys, "--docs", corpus["docs"], "--out", index)[0] == 0
    tokens = ["rag", "--qa", corpus["qa"], "--index", index, "--model", "tiny", "--k", "1,2"]
    code, stdout, err = run(eval_cli, capsys, *tokens, "--out", corpus["tmp"] / "report", "--json")
    assert code == 0, err
    expected = {"exact_match": 1 / 3, "f1": 5 / 9, "contains": 2 / 3, "answer_format": 2 / 3, "quote_precision": 0.5}
    by_k = json.loads(stdout)["by_k"]
    for k in ("1", "2"):
        assert {name: by_k[k][name] for name in expected} == pytest.approx(expected)


def test_a_build_folder_is_refused_with_an_index_of_another_corpus_or_chunking(corpus, capsys) -> None:
    from hybridft.cli import build_data

    tmp = corpus["tmp"]
    build = tmp / "build"
    tokens = ["raft", "--qa", corpus["qa"], "--docs", corpus["docs"], "--distractors", "2", "--chunk-size", "64"]
    assert run(build_data, capsys, *tokens, "--eval-fraction", "0", "--out", build)[0] == 0
    other_docs = write_jsonl(tmp / "other.jsonl", [*FIVE, {"id": "d6", "text": "Pears grow in orchards too."}])
    fits, coarser, other = tmp / "fits", tmp / "coarser", tmp / "other"
    assert run(index_cli, capsys, "--docs", corpus["docs"], "--chunk-size", "64", "--out", fits)[0] == 0
    assert run(index_cli, capsys, "--docs", corpus["docs"], "--chunk-size", "32", "--out", coarser)[0] == 0
    assert run(index_cli, capsys, "--docs", other_docs, "--chunk-size", "64", "--out", other)[0] == 0
    ask = ["rag", "--qa", build, "--split", "all", "--model", "tiny", "--k", "1", "--max-new-tokens", "2"]
    for index, message in (
        (coarser, "chunk_size=64: the index was chunked with chunk_size=32"),
        (other, "is not the one the index was built from"),
    ):
        code, _, err = run(eval_cli, capsys, *ask, "--index", index, "--out", tmp / "report")
        assert code == 2 and f"qa={build}: " in err and message in err, err
        assert not (tmp / "report").exists()
    code, _, err = run(eval_cli, capsys, *ask, "--index", fits, "--out", tmp / "report")
    assert code == 0, err


def test_ask_answers_with_a_raft_adapter_in_its_training_prompt(corpus, capsys, monkeypatch) -> None:
    from conftest import TINY_TRAINING

    from hybridft.cli import build_data
    from hybridft.core.options import resolve
    from hybridft.retrieval import pipeline
    from hybridft.training.config import OPTIONS
    from hybridft.training.sft import train

    tmp = corpus["tmp"]
    data = tmp / "raft"
    tokens = ["raft", "--qa", corpus["qa"], "--docs", corpus["docs"], "--distractors", "1", "--eval-fraction", "0"]
    assert run(build_data, capsys, *tokens, "--out", data)[0] == 0
    adapter = tmp / "run"
    train(resolve(OPTIONS, {**TINY_TRAINING, "max_steps": 1, "data": str(data), "out": str(adapter)}, {}))
    index = tmp / "index"
    assert run(index_cli, capsys, "--docs", corpus["docs"], "--out", index)[0] == 0
    rendered = []
    render = pipeline.render_prompt
    monkeypatch.setattr(pipeline, "render_prompt", lambda *a: rendered.append(render(*a)) or rendered[-1])
    code, stdout, err = run(ask_cli, capsys, "Is the sea salty?", "--index", index, "--adapter", adapter, "--json")
    assert code == 0, err
    row = json.loads(stdout)
    assert row["question"] == "Is the sea salty?" and isinstance(row["answer"], str)
    assert [c["id"] for c in row["chunks"]][0] == "d5"
    # The RAFT training prompt: the retrieved chunks as <DOCUMENT> lines, then the question.
    assert len(rendered) == 1 and rendered[0].count("<DOCUMENT>") == 5
    assert rendered[0].startswith(f"<DOCUMENT>{FIVE[4]['text']}</DOCUMENT>\n")
    assert rendered[0].endswith("\nIs the sea salty?")
