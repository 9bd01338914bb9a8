"""RoG rows whose graphs are cut out of the line (hybridft/kg/rows.py) agree with the whole-row
parse: same questions, same packed graphs, same records, same errors."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import orjson
import pytest
from conftest import read_jsonl

from hybridft.core.errors import InputError
from hybridft.core.readers import iter_kg_questions
from hybridft.kg.batch import PackedGraph
from hybridft.kg.rows import cut_graph, iter_questions_packed

# Names of every inline length (0..12 bytes), longer ones (arrow keeps those by offset),
# non-ASCII ones, and ones that JSON writes with escapes.
NAMES = ["", "a", "m.0", "abcdefghijkl", "abcdefghijklm", "people.person.place_of_birth", "Beyoncé", "東京", "x]] ["]
ESCAPED = ["back\\slash", "tab\there", "Ångström, Ångström", "a/b"]


def _graph(seed: int, n: int = 40) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(NAMES), rng.choice(NAMES[1:4]), rng.choice(NAMES)] for _ in range(n)]


@pytest.mark.parametrize("ensure_ascii", [False, True])
@pytest.mark.parametrize("separators", [(", ", ": "), (",", ":")])
def test_cut_names_are_the_parsed_names(separators: tuple[str, str], ensure_ascii: bool) -> None:
    for seed in range(20):
        row = {"id": "q", "graph": _graph(seed), "after": [1, {"k": "v"}]}
        row["graph"][seed % 5][seed % 3] = ESCAPED[seed % 4]
        raw = json.dumps(row, separators=separators, ensure_ascii=ensure_ascii).encode() + b"\n"
        raw = raw.replace(b"a/b", b"a\\/b")  # as pandas writes a slash
        cut = cut_graph(raw)
        assert cut is not None
        rest, names = cut
        assert names.to_pylist() == [name for triple in row["graph"] for name in triple]
        assert orjson.loads(rest) == {**row, "graph": []}


@pytest.mark.parametrize(
    "line",
    [
        b'{"graph": [["a", "b"], ["c", "d", "e"]]}',  # a triple of two
        b'{"graph": [["a", "b", "c", "d"]]}',
        b'{"graph": [["a", "b", "c"], ["d", "e", 1]]}',  # a number
        b'{"graph": [["a", "b", "c"], ["d", null, "f"]]}',
        b'{"graph": [["a", "b\\"c", "d"]]}',  # an escaped quote
        b'{"graph": [["a", "b\\\\", "d"]]}',  # an escaped backslash before a quote
        b'{"graph": [["a", "\\x", "d"]]}',  # not an escape
        b'{"graph": [["a", "\\ud800", "d"]]}',  # a lone surrogate
        b'{"graph": [["a", "b\tc", "d"]]}',  # a raw control character (invalid JSON)
        b'{"graph": [["a", "\xff", "d"]]}',  # invalid UTF-8
        b'{"graph": [["a", "b", "c"] , ["d", "e", "f"]]}',  # other spacing
        b'{"graph": [["a", "b",  "c"]]}',  # a wider gap
        b'{"graph": [["a", "b", "c"], ["d", "e" "f"]]}',  # a missing comma
        b'{"graph": [["a", "b", "c"],["d", "e", "f"]]}',  # compact between triples only
        b'{"graph": [["a", "b", "c"], ["d", "e"]], "id": "x"}',  # a short last triple
        b'{"graph": [["a", "b", "c"], ["d", "e", "f"]}',  # no closing bracket
        b'{"graph": [["a","b", "c"]]}',  # mixed separators
        b'{"graph": [["a", "b", "c"], "x", ["d", "e", "f"]]}',
        b'{"graph": []}',
        b'{"q": "no graph"}',
    ],
)
def test_lines_that_are_not_plain_are_not_cut(line: bytes) -> None:
    assert cut_graph(line + b"\n") is None


def _write(path: Path, rows: list[dict], ensure_ascii: bool = False) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=ensure_ascii) + "\n" for row in rows), encoding="utf-8")
    return path


def _rows() -> list[dict]:
    rows = [
        {"id": f"q{i}", "question": f"q{i}?", "answer": ["x"], "q_entity": ["a"], "a_entity": [NAMES[i % 9]]}
        for i in range(12)
    ]
    for i, row in enumerate(rows):
        row["graph"] = _graph(i) + [["a", "m.0", NAMES[i % 9]]]
    rows[3]["graph"][0][1] = 'quo"te'  # an escape: parsed whole
    rows[4]["graph"] = []  # empty: parsed whole
    rows[5]["q_entity"] = "a"  # a string for a list: packed after the row's checks
    rows[6]["a_entity"] = [7]
    rows[7]["id"] = 8  # a number id
    rows[8].pop("graph")  # uses the global KG
    return rows


def test_questions_and_packed_graphs_agree_with_the_whole_row_parse(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", _rows())
    whole = list(iter_kg_questions(path))
    cut = list(iter_questions_packed(path))
    assert [packed is not None for _, packed in cut] == [True, True, True, False, False, True, True, True, False] + [
        True
    ] * 3
    for expected, (question, packed) in zip(whole, cut, strict=True):
        graph = expected.graph
        if packed is None:
            assert question == expected
            continue
        assert question.graph is None
        expected.graph = None
        assert question == expected
        assert graph
        reference = PackedGraph.of(graph, expected.q_entity + expected.a_entity)
        assert packed.names.to_pylist() == reference.names.to_pylist()
        for column in ("heads", "rels", "tails"):
            assert getattr(packed, column).tolist() == getattr(reference, column).tolist()
        assert packed.looked_up.tolist() == reference.looked_up.tolist()


@pytest.mark.parametrize(
    ("options", "ensure_ascii"),
    [([], False), ([], True), (["--tasks", "plan,reason", "--directed", "true"], True), (["--max-hops", "1"], False)],
)
def test_records_are_the_same_bytes_as_without_cutting(cli, tmp_path: Path, monkeypatch, options, ensure_ascii) -> None:
    rows = [row for row in _rows() if "graph" in row]
    questions = _write(tmp_path / "q.jsonl", rows, ensure_ascii)
    assert cli("rog", "--questions", questions, "--out", tmp_path / "cut", *options)[0] == 0
    monkeypatch.setattr("hybridft.kg.rows.cut_graph", lambda raw: None)
    assert cli("rog", "--questions", questions, "--out", tmp_path / "whole", *options)[0] == 0
    for file in ("records.jsonl", "train.jsonl", "eval.jsonl"):
        assert (tmp_path / "cut" / file).read_bytes() == (tmp_path / "whole" / file).read_bytes()
    assert len(read_jsonl(tmp_path / "cut" / "records.jsonl")) > 10


GRAPH = b'"graph": [["A", "r", "B"]]'
GOOD = b'{"id": "ok", "question": "q?", "answer": ["B"], "q_entity": ["A"], "a_entity": ["B"], ' + GRAPH + b"}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"b"', b'"ok"'),  # a duplicate id
        (b"]]}", b"]"),  # malformed JSON
        (b'"r"', b'"\xff"'),  # not UTF-8, in the graph
        (b'["B"], "graph"', b'["\xff"], "graph"'),  # and outside it
        (b'"q?"', b'" "'),
        (b'"answer": ["B"], ', b""),
        (b'"q_entity": ["A"], ', b""),
        (b'["A"], "a_entity"', b'{"A": 1}, "a_entity"'),
        (GRAPH, b'"graph": {"A": "B"}'),
        (b"]]}", b"]]} x"),
        (b'{"id": "b", ', b'[{"id": "b", '),
    ],
)
def test_bad_rows_give_the_same_error_as_the_whole_row_parse(tmp_path: Path, old: bytes, new: bytes) -> None:
    bad = GOOD.replace(b'"ok"', b'"b"')
    assert old in bad
    path = tmp_path / "q.jsonl"
    path.write_bytes(GOOD + b"\n\n" + bad.replace(old, new) + b"\n")
    with pytest.raises(InputError) as whole:
        list(iter_kg_questions(path))
    with pytest.raises(InputError) as cut:
        list(iter_questions_packed(path))
    assert str(cut.value) == str(whole.value)
    assert str(cut.value).startswith(f"{path}:3: ")


def test_bad_triples_in_a_cut_file_are_named_by_line(cli, tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(GOOD + b"\n" + GOOD.replace(b'"ok"', b'"two"').replace(b'["A", "r", "B"]', b'["A", "r"]') + b"\n")
    code, _, stderr = cli("rog", "--questions", path, "--out", tmp_path / "out")
    assert code == 2 and "q.jsonl:2: graph: triple 0 is ['A', 'r']" in stderr
    # Met while the first row's records were being written: nothing is left behind.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["q.jsonl"]
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("kept")
    code, _, _ = cli("rog", "--questions", path, "--out", tmp_path / "out", "--overwrite")
    assert code == 2 and [p.name for p in (tmp_path / "out").iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "q.jsonl"]
    shutil.rmtree(tmp_path / "out")
    path.write_bytes(GOOD + b"\n" + GOOD.replace(b'"ok"', b'"num"').replace(b'"r"', b"5") + b"\n")
    code, _, stderr = cli("rog", "--questions", path, "--out", tmp_path / "out")
    assert code == 2 and "q.jsonl:2: graph: triple 0 is ['A', 5, 'B']" in stderr
    path.write_bytes(b"\n \n")
    code, _, stderr = cli("rog", "--questions", path, "--out", tmp_path / "out")
    assert code == 2 and "no rows" in stderr


def test_parquet_graphs_give_the_same_records_as_jsonl(cli, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [row for row in _rows() if "graph" in row and type(row["id"]) is str]
    for row in rows:
        row["q_entity"] = [row["q_entity"]] if isinstance(row["q_entity"], str) else row["q_entity"]
        row["a_entity"] = [str(name) for name in row["a_entity"]]
    jsonl = _write(tmp_path / "q.jsonl", rows)
    parquet = tmp_path / "q.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    assert [packed is not None for _, packed in iter_questions_packed(parquet)] == [bool(r["graph"]) for r in rows]
    for source, out in ((jsonl, "j"), (parquet, "p")):
        assert cli("rog", "--questions", source, "--out", tmp_path / out, "--tasks", "plan,reason")[0] == 0
    for file in ("records.jsonl", "train.jsonl", "eval.jsonl"):
        assert (tmp_path / "j" / file).read_bytes() == (tmp_path / "p" / file).read_bytes()


def test_a_bad_parquet_triple_is_named_by_row(cli, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ok = json.loads(GOOD)
    rows = [
        ok,
        {**ok, "id": "two", "graph": [["A", "r", "B"], ["A", "r"]]},
        {**ok, "id": "n", "graph": [["A", None, "B"]]},
    ]
    parquet = tmp_path / "q.parquet"
    pq.write_table(pa.Table.from_pylist(rows), parquet)
    code, _, stderr = cli("rog", "--questions", parquet, "--out", tmp_path / "out")
    assert code == 2 and "q.parquet:row 2: graph: triple 1 is ['A', 'r']" in stderr
    pq.write_table(pa.Table.from_pylist([ok, rows[2]]), parquet)
    code, _, stderr = cli("rog", "--questions", parquet, "--out", tmp_path / "out")
    assert code == 2 and "q.parquet:row 2: graph: triple 0 is ['A', None, 'B']" in stderr
