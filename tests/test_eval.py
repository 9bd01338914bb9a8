"""`hybridft eval raft` and `eval rog`: predictions files, models, reports, bad input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import read_jsonl, write_jsonl

from hybridft.cli import eval as eval_cli
from hybridft.cli.common import run_guarded

RECIPES = Path(__file__).parent.parent / "data_recipes"
ROG_QUESTIONS = RECIPES / "samples" / "rog" / "questions.jsonl"
ROG_KG = RECIPES / "samples" / "rog" / "kg.tsv"


def run_eval(capsys: pytest.CaptureFixture[str], *tokens: Any) -> tuple[int, str, str]:
    code = run_guarded(eval_cli.main, [str(t) for t in tokens])
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


@pytest.fixture(scope="module")
def raft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hybridft.cli import build_data

    out = tmp_path_factory.mktemp("raft") / "data"
    tokens = ["--recipe", str(RECIPES / "raft_sample.yaml"), "--distractors", "2", "--eval-fraction", "0.3"]
    assert run_guarded(build_data.main, [*tokens, "--out", str(out)]) == 0
    return out


def eval_records(data: Path) -> list[dict[str, Any]]:
    return [r for r in read_jsonl(data / "records.jsonl") if r["split"] == "eval"]


def test_raft_predictions_scored_as_computed_by_hand(
    raft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = eval_records(raft_data)
    assert len(records) >= 4
    first, second, third = records[:3]
    predictions = [
        {"id": first["id"], "prediction": first["cot_answer"]},  # the reference answer: all correct
        {"id": second["id"], "prediction": f"I believe it is {second['answers'][0]}"},  # no tag
        {"id": third["id"], "prediction": ""},  # empty
    ]  # the other records have no prediction: counted as skipped
    path = write_jsonl(tmp_path / "pred.jsonl", predictions)
    out = tmp_path / "report"
    code, stdout, _ = run_eval(capsys, "raft", "--data", raft_data, "--predictions", path, "--out", out, "--json")
    assert code == 0
    report = json.loads(stdout)
    assert report == json.loads((out / "report.json").read_text())
    assert report["kind"] == "raft" and report["count"] == 3
    assert report["skipped"] == {"no_prediction": len(records) - 3}
    metrics = report["metrics"]
    assert metrics["exact_match"] == pytest.approx(1 / 3)
    assert metrics["contains"] == pytest.approx(2 / 3)
    assert metrics["answer_format"] == pytest.approx(1 / 3)
    # only the first prediction quotes, and its quote is in its oracle document
    assert metrics["quote_precision"] == (1.0 if "##begin_quote##" in first["cot_answer"] else None)
    examples = read_jsonl(out / "examples.jsonl")
    assert [e["id"] for e in examples] == [first["id"], second["id"], third["id"]]
    assert examples[2]["scores"]["f1"] == 0.0


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "nope", "prediction": "x"}\n', "pred.jsonl:1: id 'nope' is not in the evaluated records"),
        ('{"id": "x", "prediction": \n', "pred.jsonl:1:"),
        ('{"prediction": "x"}\n', 'pred.jsonl:1: missing field "id"'),
        ('{"id": "x", "prediction": ["a list"]}\n', 'pred.jsonl:1: field "prediction" must be a string'),
    ],
)
def test_bad_predictions_exit_2_and_write_nothing(
    raft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    path = tmp_path / "pred.jsonl"
    path.write_text(line)
    out = tmp_path / "report"
    code, _, err = run_eval(capsys, "raft", "--data", raft_data, "--predictions", path, "--out", out)
    assert code == 2 and message in err
    assert not out.exists()


def test_usage_errors(raft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_eval(capsys, "raft", "--data", raft_data, "--out", tmp_path / "r")
    assert code == 2 and "give --predictions FILE, or --model" in err
    tokens = ["--model", "tiny", "--distractors", "0,x", "--out", tmp_path / "o"]
    code, _, err = run_eval(capsys, "raft", "--data", raft_data, *tokens)
    assert code == 2 and "expected whole numbers" in err
    code, _, err = run_eval(capsys, "retrieval-ish", "--data", raft_data, "--out", "r")
    assert code == 2 and "expected one of" in err


def test_compare_reports_deltas_and_draws_a_chart(
    raft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = eval_records(raft_data)
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{"id": r["id"], "prediction": "no idea"} for r in records])
    right = write_jsonl(tmp_path / "right.jsonl", [{"id": r["id"], "prediction": r["cot_answer"]} for r in records])
    assert run_eval(capsys, "raft", "--data", raft_data, "--predictions", wrong, "--out", tmp_path / "base")[0] == 0
    code, _, err = run_eval(
        capsys,
        "raft",
        "--data",
        raft_data,
        "--predictions",
        right,
        "--out",
        tmp_path / "tuned",
        "--compare",
        tmp_path / "base" / "report.json",
    )
    assert code == 0 and "delta" in err
    report = json.loads((tmp_path / "tuned" / "report.json").read_text())
    assert report["compare"]["delta"]["exact_match"] == pytest.approx(1.0)
    assert (tmp_path / "tuned" / "compare.png").stat().st_size > 1000


def test_raft_with_a_model_draws_the_robustness_curve(
    raft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    code, _, err = run_eval(
        capsys,
        "raft",
        "--data",
        raft_data,
        "--model",
        "tiny",
        "--distractors",
        "0,1,2,3",
        "--limit",
        "3",
        "--max-new-tokens",
        "4",
        "--out",
        out,
    )
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    records = eval_records(raft_data)[:3]
    # 2 distractors per record, 3 where the oracle was dropped (RAFT's 1 - P share)
    with_three = sum(1 for r in records if sum(not d["is_oracle"] for d in r["docs"]) >= 3)
    assert report["skipped"] == ({"fewer_than_3_distractors": 3 - with_three} if with_three < 3 else {})
    assert report["count"] == 9 + with_three and (out / "robustness.png").is_file()
    assert list(report["by_distractors"]) == ["0", "1", "2", "3"][: 4 if with_three else 3]


def test_batched_generation_gives_the_same_outputs_as_one_at_a_time(raft_data: Path) -> None:
    from hybridft.core.generation import load_generator
    from hybridft.evaluation.raft import prompt_for

    generator = load_generator("tiny", None)
    prompts = [prompt_for(r, [d["text"] for d in r["docs"]]) for r in eval_records(raft_data)[:5]]
    batched = generator.generate(prompts, batch_size=5, max_new_tokens=6)
    alone = generator.generate(prompts, batch_size=1, max_new_tokens=6)
    assert batched == alone


def test_rog_predictions_on_a_kg_questions_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    predictions = write_jsonl(
        tmp_path / "pred.jsonl",
        [
            {"id": "wq-1", "prediction": "Christopher Nolan"},
            {"id": "wq-2", "prediction": ["The Revenant", "Inception"]},
            {"id": "wq-3", "prediction": ""},
        ],
    )
    out = tmp_path / "report"
    code, _, err = run_eval(capsys, "rog", "--data", ROG_QUESTIONS, "--predictions", predictions, "--out", out)
    assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert report["count"] == 3 and report["skipped"]["no_prediction"] == 7
    assert report["metrics"]["hits@1"] == pytest.approx(1 / 3)
    assert report["metrics"]["hit"] == pytest.approx(2 / 3)
    assert report["metrics"]["recall"] == pytest.approx(2 / 3)
    assert report["metrics"]["precision"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert report["metrics"]["path_validity"] is None


def test_constrained_planning_only_uses_relations_of_the_graph(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hybridft.core.readers import iter_kg_questions
    from hybridft.kg.graph import read_kg

    out = tmp_path / "report"
    code, _, err = run_eval(
        capsys,
        "rog",
        "--data",
        ROG_QUESTIONS,
        "--kg",
        ROG_KG,
        "--model",
        "tiny",
        "--beams",
        "3",
        "--max-new-tokens",
        "40",
        "--out",
        out,
    )
    assert code == 0, err
    global_relations = set(read_kg(str(ROG_KG)).relation_ids())
    relations = {
        row.id: {t[1] for t in row.graph} if row.graph else global_relations for row in iter_kg_questions(ROG_QUESTIONS)
    }
    examples = read_jsonl(out / "examples.jsonl")
    planned = [(e["id"], path) for e in examples for path in e["plans"]]
    assert planned  # an untrained model still plans, inside the grammar
    for question_id, path in planned:
        assert 1 <= len(path) <= 3 and set(path) <= relations[question_id], (question_id, path)


def test_path_grammar_by_hand() -> None:
    from hybridft.core.models import load_tokenizer, resolve_model
    from hybridft.evaluation.path_grammar import PathGrammar

    tokenizer = load_tokenizer(resolve_model("tiny"))
    grammar = PathGrammar(tokenizer, ["people.person.spouse", "film.film.directed_by"], max_hops=2)

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    assert grammar.allowed([]) == [grammar.open[0]]
    start = grammar.open
    first_tokens = {ids("people.person.spouse")[0], ids("film.film.directed_by")[0]}
    assert set(grammar.allowed(start)) == first_tokens
    one = start + ids("film.film.directed_by")
    assert set(grammar.allowed(one)) == {grammar.sep[0], grammar.close[0]}
    two = one + grammar.sep + ids("people.person.spouse")
    assert grammar.allowed(two) == [grammar.close[0]]  # max_hops reached
    assert tokenizer.eos_token_id in grammar.allowed(two + grammar.close)


def test_rog_on_a_build_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hybridft.cli import build_data

    data = tmp_path / "rog"
    assert run_guarded(build_data.main, ["--recipe", str(RECIPES / "rog_sample.yaml"), "--out", str(data)]) == 0
    reason = [r for r in read_jsonl(data / "records.jsonl") if r["task"] == "reason"]
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": r["id"], "prediction": r["answers"]} for r in reason])
    code, _, err = run_eval(
        capsys, "rog", "--data", data, "--split", "all", "--predictions", predictions, "--out", tmp_path / "a"
    )
    assert code == 0, err
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["count"] == len(reason) and report["metrics"]["hits@1"] == 1.0 and report["metrics"]["f1"] == 1.0
    # a model needs the graphs: without --questions it is a usage error naming the fix
    code, _, err = run_eval(capsys, "rog", "--data", data, "--model", "tiny", "--out", tmp_path / "b")
    assert code == 2 and "give --questions FILE" in err
    code, _, err = run_eval(
        capsys,
        "rog",
        "--data",
        data,
        "--split",
        "all",
        "--questions",
        ROG_QUESTIONS,
        "--kg",
        ROG_KG,
        "--model",
        "tiny",
        "--max-new-tokens",
        "8",
        "--beams",
        "2",
        "--out",
        tmp_path / "c",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "c" / "report.json").read_text())["count"] == len(reason)


def test_dry_run_reads_the_inputs_as_the_run_would(raft_data: Path, tmp_path: Path, capsys) -> None:
    """Each of these passed --dry-run (exit 0) and failed in the real run."""
    not_built = tmp_path / "notes"
    not_built.mkdir()
    bad_predictions = tmp_path / "pred.jsonl"
    first = eval_records(raft_data)[0]["id"]
    bad_predictions.write_text(json.dumps({"id": first, "prediction": "x"}) + "\n{not json\n")
    bad_qa = tmp_path / "qa.jsonl"
    bad_qa.write_text('{"id": "q1", "question": "Why?", "answers": ["because"]}\n{"id": "q2"}\n')
    cases = [
        (["raft", "--data", not_built, "--model", "tiny"], f"data={not_built}: no records.jsonl"),
        (["raft", "--data", raft_data, "--predictions", bad_predictions], "pred.jsonl:2: invalid JSON"),
        (["rog", "--data", not_built, "--model", "tiny"], f"data={not_built}: no records.jsonl"),
        (["retrieval", "--data", raft_data, "--ranker", "bm25"], "a 'raft' record; this evaluation reads"),
        (["rag", "--qa", bad_qa, "--docs", not_built, "--model", "tiny"], 'qa.jsonl:2: missing field "question"'),
    ]
    for tokens, message in cases:
        code, _, err = run_eval(capsys, *tokens, "--out", tmp_path / "report", "--dry-run")
        assert code == 2 and message in err, (tokens, err)
        assert not (tmp_path / "report").exists()
    good = ["raft", "--data", raft_data, "--model", "tiny", "--out", tmp_path / "report", "--dry-run"]
    assert run_eval(capsys, *good)[0] == 0
