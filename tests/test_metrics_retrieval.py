"""Retrieval metrics (SPEC §5) against values computed by hand."""

from __future__ import annotations

import math

import pytest

from hybridft.evaluation.metrics import kendall_tau, mean, retrieval_scores, top_k_overlap

LOG3 = math.log2(3)


def test_one_positive_at_rank_two() -> None:
    scores = retrieval_scores(["a", "b", "c"], {"b"}, [1, 5])
    assert scores == pytest.approx(
        {"hit@1": 0, "hit@5": 1, "recall@1": 0, "recall@5": 1, "ndcg@1": 0, "ndcg@5": 1 / LOG3, "mrr": 0.5}
    )
    assert list(scores) == ["hit@1", "hit@5", "recall@1", "recall@5", "ndcg@1", "ndcg@5", "mrr"]


def test_several_positives_one_never_ranked() -> None:
    # positives a (rank 1), c (rank 3), x (absent): ideal DCG puts all three first.
    scores = retrieval_scores(["a", "b", "c", "d"], {"a", "c", "x"}, [2, 4])
    assert scores == pytest.approx(
        {
            "hit@2": 1,
            "hit@4": 1,
            "recall@2": 1 / 3,
            "recall@4": 2 / 3,
            "ndcg@2": 1 / (1 + 1 / LOG3),
            "ndcg@4": (1 + 1 / 2) / (1 + 1 / LOG3 + 1 / 2),
            "mrr": 1,
        }
    )


def test_no_positive_retrieved_scores_zero() -> None:
    scores = retrieval_scores(["a", "b"], {"z"}, [1, 20])
    assert set(scores.values()) == {0.0}


def test_query_without_positives_has_no_scores() -> None:
    # Nothing applies: the evaluation counts such a query as skipped ("no_positive").
    assert set(retrieval_scores(["a", "b"], set(), [1, 5]).values()) == {None}


def test_repeated_document_counts_once() -> None:
    scores = retrieval_scores(["b", "b", "a"], {"b", "c"}, [3])
    assert scores["recall@3"] == 0.5
    assert scores["ndcg@3"] == pytest.approx(1 / (1 + 1 / LOG3))
    assert scores["mrr"] == 1


def test_top_k_overlap() -> None:
    assert top_k_overlap(["a", "b", "c"], ["a", "b", "c"], 2) == 1
    assert top_k_overlap(["a", "b", "c", "d"], ["d", "c", "b", "a"], 2) == 0
    assert top_k_overlap(["a", "b", "c", "d"], ["d", "c", "b", "a"], 4) == 1
    assert top_k_overlap(["a", "b", "c"], ["a", "x", "y"], 3) == pytest.approx(1 / 3)
    # Fewer than k documents: divide by the longer top-k list, so it stays symmetric.
    assert top_k_overlap(["a"], ["a", "b"], 5) == 0.5
    assert top_k_overlap(["a", "b"], ["a"], 5) == 0.5
    assert top_k_overlap([], [], 5) == 1


def test_kendall_tau() -> None:
    assert kendall_tau(["a", "b", "c", "d"], ["a", "b", "c", "d"]) == 1
    assert kendall_tau(["a", "b", "c", "d"], ["d", "c", "b", "a"]) == -1
    # pairs (a,b) and (a,c) agree, (b,c) disagree: (2 - 1) / 3
    assert kendall_tau(["a", "b", "c"], ["a", "c", "b"]) == pytest.approx(1 / 3)
    # only the shared documents count: a, b, c appear in reverse order in the second ranking
    assert kendall_tau(["a", "b", "c", "x"], ["c", "b", "y", "a"]) == -1
    # fewer than two shared documents: no pair, no value (left out of the mean)
    assert kendall_tau(["a", "x"], ["a", "y"]) is None
    assert kendall_tau([], []) is None


def test_mean_skips_values_that_do_not_apply() -> None:
    assert mean([1.0, None, 0.0]) == 0.5
    assert mean([None]) is None
