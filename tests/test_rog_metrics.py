"""RoG's own metrics (``hit``, ``rog_f1``) beside the strict ones, on a hand-made predictions file.

The expected values are worked out by hand from RoG's evaluation (src/qa_prediction/
evaluate_results.py in RManLuo/reasoning-on-graphs): a string prediction is split on newlines
(empty lines kept), a list is reduced to its distinct items; the items are joined with spaces and
normalised; a gold answer matches when it is a substring of that; precision = matched / items,
recall = matched / gold answers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_jsonl

from hybridft.cli import eval as eval_cli
from hybridft.cli.common import run_guarded
from hybridft.evaluation.metrics import rog_paper_items, rog_paper_scores, rog_scores

# (answers, prediction, RoG hit, RoG F1, strict hits@1, strict f1) — each worked out by hand below.
CASES = {
    # one line holding both golds: 2 matched / 1 item -> precision 2, recall 1, F1 = 2*2*1/3
    "q1": (["Christopher Nolan", "Emma Thomas"], "Christopher Nolan and Emma Thomas", 1.0, 4 / 3, 0.0, 0.0),
    # "Lyon\nParis\n" is 3 items for RoG (the empty last line counts): p = 1/3, r = 1, F1 = 0.5;
    # strict: 2 items, the second gold: p = 1/2, r = 1, f1 = 2/3, hits@1 = 0
    "q2": (["Paris"], "Lyon\nParis\n", 1.0, 0.5, 0.0, 2 / 3),
    # list -> distinct items ["New", "York"], joined "new york" holds the first gold: p = 1/2, r = 1/2
    "q3": (["New York", "Boston"], ["New", "York", "New"], 1.0, 0.5, 0.0, 0.0),
    # "beatles" is not inside "beatle"
    "q4": (["The Beatles"], "Beatle", 0.0, 0.0, 0.0, 0.0),
    # 2 items, 1 matched: p = 1/2, r = 1, F1 = 2/3 (strict gives the same here)
    "q5": (["1984"], ["1984", "Animal Farm"], 1.0, 2 / 3, 1.0, 2 / 3),
}


@pytest.mark.parametrize("key", sorted(CASES))
def test_rog_paper_scores_by_hand(key: str) -> None:
    answers, prediction, hit, rog_f1, hits_at_1, f1 = CASES[key]
    assert rog_paper_scores(prediction, answers) == {"hit": hit, "rog_f1": pytest.approx(rog_f1)}
    strict = rog_scores(prediction, answers)
    assert strict["hits@1"] == hits_at_1 and strict["f1"] == pytest.approx(f1)
    # eval rog reports both kinds from rog_scores: RoG's own pass through unchanged.
    assert strict["hit"] == hit and strict["rog_f1"] == pytest.approx(rog_f1)


def test_rog_paper_items_keep_empty_lines_and_count_list_items_once() -> None:
    assert rog_paper_items("a\n\nb\n") == ["a", "", "b", ""]
    assert rog_paper_items(["b", "a", "a", "c"]) == ["a", "b", "c"]  # most frequent first, ties in order


def test_rog_paper_scores_edge_cases() -> None:
    assert rog_paper_scores("Paris", []) == {"hit": 0.0, "rog_f1": 0.0}  # RoG divides by zero here
    assert rog_paper_scores([], ["Paris"]) == {"hit": 0.0, "rog_f1": 0.0}
    # gold answers count as listed: two matched of one item -> p = 2, r = 1, F1 = 4/3
    assert rog_paper_scores("Paris", ["Paris", "paris"])["rog_f1"] == pytest.approx(4 / 3)
    # an empty string is one (empty) line: nothing matches
    assert rog_paper_scores("", ["Nolan"]) == {"hit": 0.0, "rog_f1": 0.0}


def test_eval_rog_reports_rog_f1_and_hit_from_a_predictions_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    questions = write_jsonl(
        tmp_path / "questions.jsonl",
        [
            {"id": key, "question": f"question {key}?", "answer": answers, "q_entity": ["x"], "a_entity": answers}
            for key, (answers, *_) in CASES.items()
        ],
    )
    predictions = write_jsonl(
        tmp_path / "pred.jsonl", [{"id": key, "prediction": case[1]} for key, case in CASES.items()]
    )
    out = tmp_path / "report"
    code = run_guarded(
        eval_cli.main, ["rog", "--data", str(questions), "--predictions", str(predictions), "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    metrics = json.loads((out / "report.json").read_text())["metrics"]
    # by hand: rog_f1 = (4/3 + 1/2 + 1/2 + 0 + 2/3) / 5 = 0.6; hit = 4/5
    assert metrics["rog_f1"] == pytest.approx(0.6)
    assert metrics["hit"] == pytest.approx(0.8)
    # strict: f1 = (0 + 2/3 + 0 + 0 + 2/3) / 5 = 4/15; hits@1 = 1/5
    assert metrics["f1"] == pytest.approx(4 / 15, abs=1e-6)
    assert metrics["hits@1"] == pytest.approx(0.2)
