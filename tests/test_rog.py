"""`build-data rog`: records, counts of what was skipped or cut, and bad KG input."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import read_jsonl, write_jsonl

RECIPE = Path(__file__).parent.parent / "data_recipes" / "rog_sample.yaml"


def test_sample_recipe_records(cli, tmp_path: Path) -> None:
    out = tmp_path / "rog"
    code, stdout, _ = cli("--recipe", RECIPE, "--out", out, "--json")
    assert code == 0
    records = {r["id"]: r for r in read_jsonl(out / "records.jsonl")}
    reason = records["rog-reason-wq-1"]
    # Parallel edges (directed_by, written_by) and a reversed edge (director.film) all count.
    assert reason["relation_paths"] == [["film.director.film"], ["film.film.directed_by"], ["film.film.written_by"]]
    assert reason["reasoning_paths"] == [
        [["Christopher Nolan", "film.director.film", "Inception"]],
        [["Inception", "film.film.directed_by", "Christopher Nolan"]],
        [["Inception", "film.film.written_by", "Christopher Nolan"]],
    ]
    assert [records[f"rog-plan-wq-1-{n}"]["relation_paths"] for n in range(3)] == [
        [p] for p in reason["relation_paths"]
    ]
    counts = json.loads(stdout)["counts"]
    assert counts["skipped"]["no_path"] == 2  # wq-4 (answer not connected), wq-9 (no path)
    assert counts["plan"] == 13 and counts["reason"] == 8
    train = read_jsonl(out / "train.jsonl")
    plan_row = next(r for r in train if r["messages"][1]["content"] == "<PATH>film.film.directed_by</PATH>")
    assert "who directed inception" in plan_row["messages"][0]["content"]


def test_reason_prompt_renders_reversed_steps_truthfully(cli, tmp_path: Path) -> None:
    out = tmp_path / "rog"
    assert (
        cli(
            "--recipe",
            RECIPE,
            "--out",
            out,
            "--tasks",
            "reason",
            "--format",
            "prompt-completion",
            "--eval-fraction",
            "0",
        )[0]
        == 0
    )
    rows = read_jsonl(out / "train.jsonl")
    row = next(r for r in rows if "leonardo dicaprio" in r["prompt"])
    assert "Reasoning Paths:\nLeonardo DiCaprio <- film.film.starring <- Inception\n\nQuestion:\n" in row["prompt"]
    assert row["completion"] == "Inception"
    assert all(r["completion"] for r in rows)


def test_same_seed_same_bytes(cli, tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert cli("--recipe", RECIPE, "--out", tmp_path / name)[0] == 0
    for file in ("records.jsonl", "train.jsonl", "eval.jsonl"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()


def question(qid: str, **fields) -> dict:
    return {"id": qid, "question": f"{qid}?", "answer": ["x"], "q_entity": ["A"], "a_entity": ["B"], **fields}


def test_missing_entities_and_empty_graphs_are_counted_skips(cli, tmp_path: Path) -> None:
    rows = [
        question("ok", graph=[["A", "r", "B"]]),
        question("no-q", graph=[["C", "r", "B"]]),
        question("no-a", graph=[["A", "r", "C"]]),
        question("empty", graph=[]),
        question("relation-only", graph=[["A", "r", "B"]], q_entity=["r"]),
    ]
    questions = write_jsonl(tmp_path / "q.jsonl", rows)
    code, stdout, _ = cli("rog", "--questions", questions, "--out", tmp_path / "out", "--json")
    assert code == 0
    assert json.loads(stdout)["counts"]["skipped"] == {
        "no_path": 0,
        "empty_graph": 1,
        "no_question_entity_in_graph": 2,
        "no_answer_entity_in_graph": 1,
    }


def test_bad_kg_input_exits_2_and_names_the_place(cli, tmp_path: Path) -> None:
    rows = [question("ok", graph=[["A", "r", "B"]]), question("g", graph=[["A", "r", "B"], ["A", "r"]])]
    code, _, stderr = cli("rog", "--questions", write_jsonl(tmp_path / "q.jsonl", rows), "--out", tmp_path / "out")
    assert code == 2 and "q.jsonl:2: graph: triple 1 is ['A', 'r']" in stderr

    no_graph = write_jsonl(tmp_path / "ng.jsonl", [question("n")])
    code, _, stderr = cli("rog", "--questions", no_graph, "--out", tmp_path / "out")
    assert code == 2 and "ng.jsonl:1: row has no graph; give a global KG with --kg" in stderr

    kg = tmp_path / "kg.tsv"
    kg.write_text("A\tr\tB\nA\tr\n")
    code, _, stderr = cli("rog", "--questions", no_graph, "--kg", kg, "--out", tmp_path / "out")
    assert code == 2 and "kg.tsv:2: expected head<TAB>relation<TAB>tail" in stderr
    assert not (tmp_path / "out").exists()


def test_global_kg_in_jsonl(cli, tmp_path: Path) -> None:
    kg = tmp_path / "kg.jsonl"
    kg.write_text('["A", "r", "M"]\n["B", "s", "M"]\n')
    questions = write_jsonl(tmp_path / "q.jsonl", [question("n")])
    out = tmp_path / "out"
    assert cli("rog", "--questions", questions, "--kg", kg, "--out", out, "--eval-fraction", "0")[0] == 0
    assert [r["relation_paths"] for r in read_jsonl(out / "records.jsonl")] == [[["r", "s"]], [["r", "s"]]]


def test_gzipped_tsv_kg_with_a_bad_line_is_named(cli, tmp_path: Path) -> None:
    import gzip

    kg = tmp_path / "kg.tsv.gz"
    with gzip.open(kg, "wt") as handle:
        handle.write("A\tr\tM\nB\ts\tM\nB\tonly-two\n")
    questions = write_jsonl(tmp_path / "q.jsonl", [question("n")])
    code, _, stderr = cli("rog", "--questions", questions, "--kg", kg, "--out", tmp_path / "out")
    assert code == 2 and "kg.tsv.gz:3: expected head<TAB>relation<TAB>tail" in stderr


def test_rows_are_written_as_json_dumps_writes_them(tmp_path: Path) -> None:
    """The writer builds its JSON encoder once (a RoG build writes two rows per relation path):
    the bytes stay json.dumps(row, ensure_ascii=False)'s, escapes, non-ASCII and numbers included."""
    from hybridft.core.outputs import write_jsonl

    rows = [
        {"question": 'who "directed" Amélie?\n\t\x01\\', "answers": ["Jean-Pierre Jeunet", "北京", "\u2028"]},
        {"n": [0, -1, 10**20, 1.5, 1e16, 1e-7, float("nan"), float("inf")], "ok": [True, False, None]},
        {"nested": [[["h", "r", "t"]], []], "empty": {}, "emoji": "🙂"},
    ]
    write_jsonl(tmp_path / "rows.jsonl", rows)
    expected = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    assert (tmp_path / "rows.jsonl").read_bytes() == expected.encode("utf-8")
