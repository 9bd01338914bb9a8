"""``hybridft eval retrieval``: predictions scored by hand, bad predictions, bm25 and MiniLM rankers
over a tiny Invar-RAG dataset built here, report.json shape."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import CORPUS, QA, read_jsonl, write_jsonl

from hybridft.cli import build_data
from hybridft.cli import eval as eval_cli
from hybridft.cli.common import run_guarded
from hybridft.evaluation.retrieval import candidates_of

LOG3 = math.log2(3)
DOCUMENTS = cast(list[dict[str, Any]], CORPUS)
QUESTIONS = cast(list[dict[str, Any]], QA)


def doc(doc_id: str) -> dict[str, str]:
    return {"id": doc_id, "text": f"text of {doc_id}"}


def record(rid: str, positives: list[str], negatives: list[str], variants: list[str]) -> dict[str, Any]:
    return {
        "id": rid,
        "source_id": rid,
        "kind": "invar",
        "stage": "retrieval",
        "split": "eval",
        "query": f"query {rid}",
        "variants": variants,
        "answers": ["x"],
        "positives": [doc(d) for d in positives],
        "negatives": [doc(d) for d in negatives],
        "teacher_scores": None,
    }


# r1: one positive and two variants; r2: two positives, no variant; r3: no positive; r4: no prediction.
RECORDS = [
    record("r1", ["p1"], ["n1", "n2"], ["variant one", "variant two"]),
    record("r2", ["p2", "p3"], ["n1"], []),
    record("r3", [], ["n1", "n2"], []),
    record("r4", ["p1"], ["n1"], []),
]
PREDICTIONS: list[dict[str, Any]] = [
    {"id": "r1", "ranking": ["n1", "p1", "n2"], "variant_rankings": [["n1", "p1", "n2"], ["n2", "p1", "n1"]]},
    {"id": "r2", "ranking": ["p2", "n1", "p3"]},
    {"id": "r3", "ranking": ["n1", "n2"]},
]


@pytest.fixture
def run_eval(capsys: pytest.CaptureFixture[str]):
    def run(*tokens: Any) -> tuple[int, str, str]:
        code = run_guarded(eval_cli.main, ["retrieval", *(str(t) for t in tokens)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture
def records_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "records.jsonl", RECORDS)


@pytest.fixture(scope="module")
def invar_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny Invar-RAG dataset (bm25 negatives, two variants, no teacher), every row in train."""
    tmp = tmp_path_factory.mktemp("invar")
    docs, qa = write_jsonl(tmp / "docs.jsonl", DOCUMENTS), write_jsonl(tmp / "qa.jsonl", QUESTIONS)
    tokens = ["invar", "--qa", qa, "--docs", docs, "--teacher", "none", "--negatives", "3", "--out", tmp / "data"]
    assert run_guarded(build_data.main, [str(t) for t in tokens]) == 0
    return {"data": tmp / "data", "docs": docs, "tmp": tmp}


def test_predictions_scored_by_hand(tmp_path: Path, records_file: Path, run_eval) -> None:
    predictions = write_jsonl(tmp_path / "predictions.jsonl", PREDICTIONS)
    out = tmp_path / "report"
    code, stdout, _ = run_eval(
        "--data",
        records_file,
        "--predictions",
        predictions,
        "--k",
        "1,2",
        "--invariance-k",
        "2",
        "--out",
        out,
        "--json",
    )
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert json.loads(stdout) == report
    assert set(report) == {"kind", "count", "metrics", "skipped", "ranker", "ranked"}
    assert (report["kind"], report["count"], report["ranked"], report["ranker"]) == (
        "retrieval",
        2,
        "predictions",
        None,
    )
    # r3 has no positive and r4 no prediction: both counted, neither scored.
    assert report["skipped"] == {"no_positive": 1, "no_prediction": 1}
    # r1: positive at rank 2.  r2: positives at ranks 1 and 3 of two.
    # Invariance (r1 only): variant one identical (overlap 1, tau 1), variant two top-2 {n2, p1}
    # against {n1, p1} (overlap 1/2) and fully reversed (tau -1).
    expected = {
        "hit@1": (0 + 1) / 2,
        "hit@2": (1 + 1) / 2,
        "recall@1": (0 + 1 / 2) / 2,
        "recall@2": (1 + 1 / 2) / 2,
        "ndcg@1": (0 + 1) / 2,
        "ndcg@2": (1 / LOG3 + 1 / (1 + 1 / LOG3)) / 2,
        "mrr": (1 / 2 + 1) / 2,
        "invariance_overlap@2": (1 + 1 / 2) / 2,
        "invariance_kendall_tau": (1 + -1) / 2,
    }
    assert list(report["metrics"]) == list(expected)
    assert report["metrics"] == pytest.approx(expected, abs=1e-6)
    examples = read_jsonl(out / "examples.jsonl")
    assert [e["id"] for e in examples] == ["r1", "r2"]
    # examples.jsonl keeps the top max(k, invariance_k) of each ranking
    assert examples[0]["ranking"] == ["n1", "p1"]
    assert examples[0]["variant_rankings"] == [["n1", "p1"], ["n2", "p1"]]
    assert "invariance_kendall_tau" not in examples[1]["scores"]


def test_no_invariance_metrics_without_variant_rankings(tmp_path: Path, records_file: Path, run_eval) -> None:
    predictions = write_jsonl(tmp_path / "predictions.jsonl", [{"id": "r1", "ranking": ["p1"]}])
    code, _, _ = run_eval("--data", records_file, "--predictions", predictions, "--out", tmp_path / "out")
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert list(report["metrics"]) == [
        *(f"{m}@{k}" for m in ("hit", "recall", "ndcg") for k in (1, 5, 20)),
        "mrr",
    ]
    assert report["skipped"] == {"no_positive": 1, "no_prediction": 2}


BAD_PREDICTIONS = [
    ('{"id": "r1", "ranking": ["p1"]}\n{"id": "zzz", "ranking": []}\n', "predictions.jsonl:2: id 'zzz' is not"),
    ('{"id": "r1", "ranking": ["p1"]}\n{"id": "r2", "ranking": [\n', "predictions.jsonl:2: invalid JSON"),
    ('{"id": "r1", "ranks": ["p1"]}\n', 'predictions.jsonl:1: missing field "ranking"'),
    ('{"ranking": ["p1"]}\n', 'predictions.jsonl:1: missing field "id"'),
    ('{"id": 3, "ranking": ["p1"]}\n', 'predictions.jsonl:1: field "id" must be a string'),
    ('{"id": "r1", "ranking": "p1"}\n', 'predictions.jsonl:1: field "ranking" must be a list of document ids'),
    ('{"id": "r1", "ranking": ["p1", "n1", "p1"]}\n', 'jsonl:1: field "ranking" must be a list of document ids'),
    ('{"id": "r1", "ranking": ["p1"], "variant_rankings": [["p1", "p1"], []]}\n', ':1: field "variant_rankings"'),
    ('{"id": "r2", "ranking": []}\n{"id": "r2", "ranking": []}\n', "predictions.jsonl:2: second row for id 'r2'"),
    (
        '{"id": "r1", "ranking": ["p1"], "variant_rankings": [["p1"]]}\n',
        'predictions.jsonl:1: "variant_rankings" must be a list of 2 rankings',
    ),
]


@pytest.mark.parametrize(("content", "message"), BAD_PREDICTIONS)
def test_bad_predictions_exit_2_naming_the_line(
    tmp_path: Path, records_file: Path, run_eval, content: str, message: str
) -> None:
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(content, encoding="utf-8")
    out = tmp_path / "out"
    code, stdout, stderr = run_eval("--data", records_file, "--predictions", predictions, "--out", out)
    assert code == 2
    assert message in stderr
    assert stdout == ""
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no half-written sibling


@pytest.mark.parametrize(
    ("tokens", "message"),
    [
        (["--predictions", "{pred}", "--ranker", "bm25"], "not both"),
        ([], "give --predictions FILE, or --ranker"),
        (["--predictions", "{pred}", "--docs", "{pred}"], "--docs is the corpus a --ranker ranks"),
        (["--ranker", "bm25", "--k", "1,0"], "k=1,0: expected whole numbers"),
        (["--ranker", "tfidf"], "tfidf"),
    ],
)
def test_bad_options_exit_2(tmp_path: Path, records_file: Path, run_eval, tokens: list[str], message: str) -> None:
    predictions = write_jsonl(tmp_path / "predictions.jsonl", PREDICTIONS)
    filled = [t.replace("{pred}", str(predictions)) for t in tokens]
    code, _, stderr = run_eval("--data", records_file, *filled, "--out", tmp_path / "out")
    assert code == 2
    assert message in stderr
    assert not (tmp_path / "out").exists()


def test_generation_stage_records_are_refused(tmp_path: Path, run_eval) -> None:
    data = write_jsonl(tmp_path / "records.jsonl", [{**RECORDS[0], "stage": "generation"}])
    code, _, stderr = run_eval("--data", data, "--ranker", "bm25", "--split", "all", "--out", tmp_path / "out")
    assert code == 2 and "retrieval-stage records" in stderr


def test_candidate_order_ignores_which_are_positives() -> None:
    # Ties keep the seeded candidate order, which must not depend on positives being listed first.
    first = record("r", ["a"], ["b", "c", "d", "e"], [])
    second = record("r", ["e"], ["d", "c", "b", "a"], [])
    order = [d["id"] for d in candidates_of(first, 0)]
    assert order == [d["id"] for d in candidates_of(second, 0)]
    assert sorted(order) == ["a", "b", "c", "d", "e"]
    assert order != [d["id"] for d in candidates_of(first, 1)] or order != [d["id"] for d in candidates_of(first, 2)]


def test_bm25_over_each_records_candidates(invar_data: dict[str, Path], run_eval) -> None:
    out = invar_data["tmp"] / "bm25-candidates"
    code, _, stderr = run_eval("--data", invar_data["data"], "--split", "all", "--ranker", "bm25", "--out", out)
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert (report["count"], report["ranker"], report["ranked"]) == (4, "bm25", "candidates")
    assert report["skipped"] == {"no_positive": 0}
    # Every tiny query names its answer's document (capital, country, river, city): bm25 ranks it first.
    assert report["metrics"]["hit@1"] == 1.0 and report["metrics"]["mrr"] == 1.0
    # Four candidates per record: all of them lie in every top-5, so the overlap is 1.
    assert report["metrics"]["invariance_overlap@5"] == 1.0
    assert -1 <= report["metrics"]["invariance_kendall_tau"] <= 1
    records = {r["id"]: r for r in read_jsonl(invar_data["data"] / "records.jsonl")}
    for example in read_jsonl(out / "examples.jsonl"):
        source = records[example["id"]]
        assert sorted(example["ranking"]) == sorted(d["id"] for d in source["positives"] + source["negatives"])
        assert len(example["variant_rankings"]) == len(source["variants"]) == 2


def test_bm25_over_a_corpus_counts_positives_it_lacks(invar_data: dict[str, Path], run_eval) -> None:
    without_rome = write_jsonl(invar_data["tmp"] / "no-rome.jsonl", [d for d in DOCUMENTS if d["id"] != "rome"])
    out = invar_data["tmp"] / "bm25-corpus"
    code, _, stderr = run_eval(
        "--data", invar_data["data"], "--split", "all", "--ranker", "bm25", "--docs", without_rome, "--out", out
    )
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert (report["count"], report["ranked"]) == (3, "docs")
    assert report["skipped"] == {"no_positive": 0, "positive_not_in_docs": 1}
    assert report["metrics"]["hit@1"] == 1.0
    examples = read_jsonl(out / "examples.jsonl")
    assert all(len(e["ranking"]) == len(CORPUS) - 1 for e in examples)  # top 20 of a 7-document corpus

    unrelated = write_jsonl(invar_data["tmp"] / "unrelated.jsonl", [{"id": "other", "text": "Nothing here."}])
    code, _, stderr = run_eval(
        "--data",
        invar_data["data"],
        "--split",
        "all",
        "--ranker",
        "bm25",
        "--docs",
        unrelated,
        "--out",
        out,
        "--overwrite",
    )
    assert code == 2 and "no record's positives are in this corpus" in stderr


def test_minilm_ranks_candidates(invar_data: dict[str, Path], run_eval) -> None:
    out = invar_data["tmp"] / "minilm"
    code, _, stderr = run_eval(
        "--data", invar_data["data"], "--split", "all", "--ranker", "minilm", "--k", "1,3", "--out", out
    )
    assert code == 0, stderr
    report = json.loads((out / "report.json").read_text())
    assert (report["count"], report["ranker"]) == (4, "minilm")
    assert report["metrics"]["hit@1"] == 1.0
    assert list(report["metrics"])[:2] == ["hit@1", "hit@3"]
