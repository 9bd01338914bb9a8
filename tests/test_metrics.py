"""RAFT and RoG metrics against values computed by hand (SPEC §5)."""

from __future__ import annotations

import pytest

from hybridft.evaluation.metrics import final_answer, mean, prediction_list, raft_scores, rog_scores, token_f1

DOCS = ["Paris is the capital of France.", "The Seine flows through Paris."]


def test_final_answer_is_after_the_last_tag_or_the_whole_output() -> None:
    assert final_answer("##Reason: x <ANSWER>: Lyon <ANSWER>: Paris ") == "Paris"
    assert final_answer("  just Paris ") == "just Paris"


def test_raft_exact_answer_with_a_verbatim_quote() -> None:
    output = "##Reason: ##begin_quote##Paris is the capital of France.##end_quote## so\n<ANSWER>: Paris"
    assert raft_scores(output, ["Paris"], DOCS) == {
        "exact_match": 1.0,
        "f1": 1.0,
        "contains": 1.0,
        "answer_format": 1.0,
        "quote_precision": 1.0,
    }


def test_raft_articles_punctuation_and_several_gold_answers() -> None:
    scores = raft_scores("<ANSWER>: The Seine!", ["Rhine", "seine"], DOCS)
    assert scores["exact_match"] == 1.0 and scores["f1"] == 1.0


def test_raft_partial_answer_f1_by_hand() -> None:
    # prediction "river seine in france" vs gold "seine river": common 2, p = 2/4, r = 2/2, f1 = 2/3
    scores = raft_scores("<ANSWER>: the river Seine in France", ["Seine river"], DOCS)
    assert scores["exact_match"] == 0.0
    assert scores["f1"] == pytest.approx(2 / 3)


def test_raft_answer_without_tag_is_scored_on_the_whole_output() -> None:
    scores = raft_scores("Paris", ["Paris"], DOCS)
    assert scores["exact_match"] == 1.0 and scores["answer_format"] == 0.0
    assert scores["quote_precision"] is None  # no quote: the metric does not apply


def test_raft_empty_prediction() -> None:
    assert raft_scores("", ["Paris"], DOCS) == {
        "exact_match": 0.0,
        "f1": 0.0,
        "contains": 0.0,
        "answer_format": 0.0,
        "quote_precision": None,
    }


def test_raft_contains_and_quote_precision_by_hand() -> None:
    output = (
        "##begin_quote##The Seine flows through Paris.##end_quote## "
        "##begin_quote##Paris is big.##end_quote## <ANSWER>: it is Paris, I think"
    )
    scores = raft_scores(output, ["Paris"], DOCS)
    assert scores["exact_match"] == 0.0 and scores["contains"] == 1.0
    assert scores["quote_precision"] == 0.5  # one of the two quotes is in the documents
    assert scores["f1"] == pytest.approx(1 / 3)  # "it is paris i think" vs "paris": p = 1/5, r = 1


def test_token_f1_edge_cases() -> None:
    assert token_f1("", "") == 1.0
    assert token_f1("a", "Paris") == 0.0  # "a" is an article: nothing left to match


def test_rog_substring_counts_for_hit_not_for_hits_at_1() -> None:
    # "Nolan" (gold) is inside "Christopher Nolan Jr" (a wrong prediction)
    scores = rog_scores("Christopher Nolan Jr\nInception", ["Nolan"])
    assert scores["hit"] == 1.0 and scores["hits@1"] == 0.0
    assert scores["precision"] == 0.0 and scores["recall"] == 0.0 and scores["f1"] == 0.0


def test_rog_precision_recall_f1_by_hand() -> None:
    # predictions: the Nolan (gold), Emma Thomas (gold), Paris (wrong); gold has 4 answers
    scores = rog_scores(["The Nolan", "Emma Thomas", "Paris"], ["Nolan", "Emma Thomas", "X", "Y"])
    assert scores["hits@1"] == 1.0 and scores["hit"] == 1.0
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 4)
    assert scores["f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))


def test_rog_empty_prediction_and_blank_lines() -> None:
    assert prediction_list("\n Nolan \n\n") == ["Nolan"]
    assert rog_scores("", ["Nolan"]) == {
        "hits@1": 0.0,
        "hit": 0.0,
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "rog_f1": 0.0,
    }


def test_mean_skips_values_that_do_not_apply() -> None:
    assert mean([1.0, None, 0.0]) == 0.5
    assert mean([None]) is None
