"""One schema per record kind (hybridft.core.records), used by every reader: a damaged record is
exit 2 naming the file, line and field, and nothing is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_jsonl

from hybridft.cli import eval as eval_cli
from hybridft.cli.common import run_guarded
from hybridft.core.errors import InputError
from hybridft.core.records import (
    INVAR_GENERATION_RECORD,
    INVAR_RECORD,
    MESSAGES_ROW,
    PROMPT_COMPLETION_ROW,
    RAFT_RECORD,
    RETRIEVAL_ROW,
    ROG_RECORD,
)

DOC = {"id": "d1", "title": "T", "text": "Paris is the capital of France.", "is_oracle": True}
RAFT = {
    "id": "raft-q1",
    "kind": "raft",
    "split": "eval",
    "question": "What is the capital of France?",
    "answers": ["Paris"],
    "cot_answer": "<ANSWER>: Paris",
    "docs": [DOC],
    "oracles": [DOC],
    "oracle_present": True,
}
ROG = {
    "id": "rog-q1-reason",
    "source_id": "q1",
    "kind": "rog",
    "split": "eval",
    "task": "reason",
    "question": "Where is the Eiffel Tower?",
    "q_entity": ["Eiffel Tower"],
    "a_entity": ["Paris"],
    "answers": ["Paris"],
    "relation_paths": [["located_in"]],
    "reasoning_paths": [[["Eiffel Tower", "located_in", "Paris"]]],
}
INVAR = {
    "id": "invar-q1",
    "kind": "invar",
    "stage": "retrieval",
    "split": "eval",
    "query": "capital of France?",
    "answers": ["Paris"],
    "variants": ["France capital?"],
    "positives": [{"id": "d1", "text": "Paris."}],
    "negatives": [{"id": "d2", "text": "Lyon."}],
}


@pytest.mark.parametrize(
    ("schema", "row", "problem"),
    [
        (RAFT_RECORD, RAFT, None),
        (RAFT_RECORD, {**RAFT, "cot_answer": None}, None),
        (RAFT_RECORD, {k: v for k, v in RAFT.items() if k != "docs"}, 'missing field "docs"'),
        (RAFT_RECORD, {**RAFT, "answers": []}, 'field "answers" must not be empty'),
        (RAFT_RECORD, {**RAFT, "answers": "Paris"}, 'field "answers" must be a list of texts'),
        (RAFT_RECORD, {**RAFT, "docs": [{"id": "d1"}]}, 'field "docs" must be a list of {"id", "text"} documents'),
        (RAFT_RECORD, {**RAFT, "cot_answer": 3}, 'field "cot_answer" must be a string or null'),
        (ROG_RECORD, ROG, None),
        (ROG_RECORD, {k: v for k, v in ROG.items() if k != "task"}, 'missing field "task"'),
        (ROG_RECORD, {**ROG, "q_entity": "Eiffel Tower"}, 'field "q_entity" must be a list of texts'),
        (INVAR_RECORD, INVAR, None),
        (INVAR_RECORD, {k: v for k, v in INVAR.items() if k != "variants"}, None),
        (INVAR_RECORD, {**INVAR, "stage": "generation"}, "field \"stage\" is 'generation'; expected 'retrieval'"),
        (INVAR_RECORD, {**INVAR, "negatives": ["Lyon."]}, 'field "negatives" must be a list of {"id", "text"}'),
        (INVAR_GENERATION_RECORD, {**INVAR, "stage": "generation", "docs": [{"id": "d1", "text": "Paris."}]}, None),
        (INVAR_GENERATION_RECORD, {**INVAR, "stage": "generation"}, 'missing field "docs"'),
        (RETRIEVAL_ROW, {"query": "q", "positives": ["p"], "negatives": ["n"], "teacher_scores": [0.5, 0.1]}, None),
        (RETRIEVAL_ROW, {"query": "q", "positives": []}, 'field "positives" must not be empty'),
        (MESSAGES_ROW, {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, None),
        (
            MESSAGES_ROW,
            {"messages": [{"role": "assistant", "content": "a"}]},
            "the last message must be the assistant's",
        ),
        (MESSAGES_ROW, {"messages": [{"role": "user"}]}, 'field "messages" must be a list of {"role", "content"}'),
        (MESSAGES_ROW, {"messages": []}, 'field "messages" must not be empty'),
        (PROMPT_COMPLETION_ROW, {"prompt": "q", "completion": "a"}, None),
        (PROMPT_COMPLETION_ROW, {"prompt": "q"}, 'missing field "completion"'),
        (
            RETRIEVAL_ROW,
            {"query": "q", "positives": ["p"], "teacher_scores": [0.5, 0.1]},
            '"teacher_scores" has 2 values for 1 positives + negatives',
        ),
        (
            RETRIEVAL_ROW,
            {"query": "q", "positives": ["p"], "teacher_scores": [True]},
            'field "teacher_scores" must be a list of numbers or null',
        ),
    ],
)
def test_schema_names_the_first_problem(schema, row, problem) -> None:
    found = schema.problem(row)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


def test_every_problem_is_reported_with_where_it_is() -> None:
    rows = [("r.jsonl:1", RAFT), ("r.jsonl:2", {**RAFT, "docs": 5}), ("r.jsonl:3", {**RAFT, "question": None})]
    with pytest.raises(InputError) as caught:
        RAFT_RECORD.checked(rows)
    assert str(caught.value).splitlines() == [
        'r.jsonl:2: field "docs" must be a list of {"id", "text"} documents',
        'r.jsonl:3: field "question" must be a string',
    ]


@pytest.mark.parametrize(
    ("kind", "record", "missing"),
    [("raft", RAFT, "oracles"), ("rog", ROG, "q_entity")],
)
def test_eval_refuses_a_damaged_record_by_file_line_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, record: dict, missing: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "records.jsonl", [record, {k: v for k, v in record.items() if k != missing}])
    predictions = write_jsonl(tmp_path / "pred.jsonl", [{"id": record["id"], "prediction": "Paris"}])
    out = tmp_path / "report"
    code = run_guarded(eval_cli.main, [kind, "--data", str(data), "--predictions", str(predictions), "--out", str(out)])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2
    assert f'records.jsonl:2: missing field "{missing}"' in err
    assert not out.exists()
