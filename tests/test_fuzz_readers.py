"""Fuzzed inputs for the readers, through the commands that read them: whatever the bytes, the
command succeeds, or exits 2 with a message naming the file and the line or key — never another
exit code, never a traceback, never an output folder (or a partial sibling) left behind.

Readers: QA sets and documents (.jsonl, .jsonl.gz cut short, .parquet, folders of .txt/.md), KG
questions (.jsonl), global KGs (.tsv, .jsonl), recipes and `--config` files of build-data,
finetune and eval, predictions files, build-data folders fed to finetune and eval. Inputs: valid
files then damaged (a field of another type, dropped, empty or huge; a line cut; random bytes,
invalid UTF-8; JSON nested up to 2,100 levels deep), and every .jsonl reader given JSON nested
deeper than the parsers go (``test_deep_nesting``; YAML in tests/test_recipes.py).

The default suite tries 25 inputs per fuzz test, the same ones in every run (hypothesis profile
`ci`); a longer, random search: `pytest tests/test_fuzz_readers.py --hypothesis-profile long`
(2,000 inputs per test, 200 for the one that trains; `-m fuzz` runs it, through
tests/test_long_searches.py).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, QA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridft.builders import raft as raft_builder
from hybridft.cli import build_data, finetune
from hybridft.cli import eval as eval_cli
from hybridft.cli.common import run_guarded
from hybridft.evaluation import raft as raft_eval
from hybridft.training import config as training_config

# pyarrow reports a bad TSV row with invalid UTF-8 as an exception "ignored" in the row handler
# (it cannot make the row a str); the read then fails and the command exits 2, as asserted.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

# Profiles registered in conftest.py: ``ci`` unless --hypothesis-profile long was given.
CHOSEN = "long" if settings._current_profile == "long" else "ci"  # noqa: SLF001 - hypothesis has no public getter
FUZZ = settings(
    settings.get_profile(CHOSEN),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Inputs that train for a step each (~0.5 s): at most 200 in the long search.
FUZZ_TRAINING = settings(FUZZ, max_examples=min(FUZZ.max_examples, 200))

# JSON values of every type, nested a little (deep nesting: ``deep_json``).
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def nested(depth: int, opener: str = "[") -> str:
    """``depth`` arrays (``[``) or objects (``{"a":``) one inside the other, as JSON text (YAML flow
    style too). Text, not Python values: Python's json cannot write what it cannot read back."""
    if opener == "[":
        return "[" * depth + "]" * depth
    return opener * depth + "[]" + "}" * depth


# Any depth up to twice orjson's limit (1,024 levels): the readers refuse more than 254 levels,
# Python's json recurses out near 1,000 and PyYAML near 500.
deep_json = st.builds(nested, st.integers(1, 2_100), st.sampled_from(["[", '{"a":']))
DEEP = "\x00deep\x00"  # a placeholder value, replaced by deep JSON in the written line
HUGE_NUMBER = "\x00number\x00"  # ... by a number of 5,000 digits (Python converts 4,300 at most)


def damaged(text: bytes) -> st.SearchStrategy[bytes]:
    """``text`` as it is, cut anywhere, with random bytes (invalid UTF-8 included) or a deeply
    nested line inserted anywhere, or after blank lines."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        damage = draw(st.sampled_from(["none", "cut", "bytes", "blank", "deep"]))
        if damage == "cut":
            return text[: draw(st.integers(0, len(text)))]
        if damage == "bytes":
            at = draw(st.integers(0, len(text)))
            return text[:at] + draw(st.binary(min_size=1, max_size=12)) + text[at:]
        if damage == "deep":
            lines = text.splitlines(keepends=True)
            at = draw(st.integers(0, len(lines)))
            return b"".join([*lines[:at], draw(deep_json).encode() + b"\n", *lines[at:]])
        return b"\n\n" + text if damage == "blank" else text

    return build()


def mutated_rows(rows: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """A valid JSONL file, then damaged: fields given another type, a deeply nested value, dropped,
    empty or huge values (20,000 characters, a 5,000-digit number); then the file itself
    (:func:`damaged`)."""
    keys = sorted({key for row in rows for key in row})

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        lines = [dict(row) for row in rows]
        deep = None
        for _ in range(draw(st.integers(1, 3))):
            row = lines[draw(st.integers(0, len(lines) - 1))]
            how = draw(st.sampled_from(["type", "drop", "empty", "huge", "deep"]))
            key = draw(st.sampled_from(keys))
            if how == "type":
                row[key] = draw(json_values)
            elif how == "drop":
                row.pop(key, None)
            elif how == "empty":
                row[key] = draw(st.sampled_from(["", [], {}, None]))
            elif how == "deep":
                deep = deep or draw(deep_json)
                row[key] = DEEP
            else:
                row[key] = draw(st.sampled_from(["x" * 20_000, HUGE_NUMBER]))
        text = b"".join(json.dumps(row).encode() + b"\n" for row in lines)
        if deep is not None:
            text = text.replace(json.dumps(DEEP).encode(), deep.encode())
        text = text.replace(json.dumps(HUGE_NUMBER).encode(), b"9" * 5_000)
        return draw(damaged(text))

    return build()


PARQUET_DAMAGE = ["same", "same", "drop", "int", "float", "bool", "null", "empty", "huge", "struct", "lists"]


def parquet_tables(rows: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    """``rows`` as a parquet file, then damaged: columns of another type (numbers, booleans,
    structs, lists of lists), all null, empty or 100,000-character strings, dropped; no rows; the
    file cut short."""
    keys = sorted({key for row in rows for key in row})

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        import pyarrow as pa
        import pyarrow.parquet as pq

        n = draw(st.sampled_from([len(rows), len(rows), 1, 0]))
        columns = {}
        for key in keys:
            how = draw(st.sampled_from(PARQUET_DAMAGE))
            if how == "drop":
                continue
            values: list[Any] = [row.get(key) for row in rows[:n]]
            if how == "int":
                values = draw(st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
            elif how == "float":
                values = draw(st.lists(st.none() | st.floats(), min_size=n, max_size=n))
            elif how == "bool":
                values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
            elif how == "null":
                values = [None] * n
            elif how == "empty":
                values = [draw(st.sampled_from(["", []]))] * n if n else []
            elif how == "huge":
                values = ["x" * 100_000] * n
            elif how == "struct":
                values = [{"a": draw(st.integers(0, 9)), "b": draw(st.text(max_size=5))} for _ in range(n)]
            elif how == "lists":
                depth = draw(st.integers(1, 40))
                values = [json.loads(nested(depth)) for _ in range(n)]
            try:
                columns[key] = pa.array(values)
            except (pa.ArrowException, OverflowError):  # values pyarrow cannot type: the column dropped
                continue
        buffer = io.BytesIO()
        pq.write_table(pa.table(columns), buffer)
        data = buffer.getvalue()
        if draw(st.integers(0, 4)) == 0:
            data = data[: draw(st.integers(0, len(data) - 1))]
        return data

    return build()


def names_place(err: str, *files: Path) -> bool:
    """Whether the error names one of ``files`` and where: ``file:line``, ``file:row N``,
    ``file: ...`` (a problem of the whole file), ``file, other: ...``, ``folder/file`` or ``... in file``."""
    names = "|".join(re.escape(f.name) for f in files)
    return re.search(rf"(^|[/ =])({names})(:\d+:|:row \d+:|:|,|/|$)", err, re.MULTILINE) is not None


def names_key(err: str, file: Path, keys: list[str]) -> bool:
    """Whether every error line names ``file`` (``recipe.yaml: unknown key 'x'``) or one of the
    ``keys`` (``lora_r=-3: must be at least 1``, ``--data is required``)."""
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    flags = [f"--{key.replace('_', '-')}" for key in keys]
    pattern = re.compile(rf"(^|[\s'\"(]|--)({'|'.join(map(re.escape, keys))})(=|:|'|\s|$)")
    return bool(lines) and all(
        names_place(line, file) or pattern.search(line) is not None or any(flag in line for flag in flags)
        for line in lines
    )


def check(code: int, err: str, file: Path, out: Path, *others: Path) -> None:
    """Exit 0, or exit 2 naming ``file`` (or one of ``others``, the inputs read with it) and where
    in it, and no output folder or partial sibling; never a traceback."""
    assert code in (0, 2), err
    assert "Traceback" not in err, err
    if code == 2:
        assert names_place(err, file, *others), err
        assert not out.exists() and not list(out.parent.glob(f".{out.name}.*")), err


def build(tmp_path: Path, capsys: Any, *tokens: Any) -> tuple[int, str]:
    code = run_guarded(build_data.main, [str(t) for t in tokens])
    return code, capsys.readouterr().err


def command(main: Any, capsys: Any, *tokens: Any) -> tuple[int, str]:
    code = run_guarded(main, [str(t) for t in tokens])
    return code, capsys.readouterr().err


def jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(row) + "\n" for row in rows)


@pytest.fixture
def work(tmp_path: Path):
    """A fresh folder per example (hypothesis reuses the test's tmp_path)."""
    folder = tmp_path / "case"

    def fresh() -> Path:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        return folder

    return fresh


# --- QA sets and documents --------------------------------------------------------------------


def raft_with(folder: Path, capsys, fuzzed: str, suffix: str, data: bytes) -> None:
    """``build-data raft`` with the fuzzed QA set or corpus (``fuzzed``: qa or docs) and the other
    input sound. A damaged corpus may be named, or the QA rows that name documents it lost."""
    paths = {"qa": folder / "qa.jsonl", "docs": folder / "docs.jsonl"}
    paths[fuzzed] = folder / f"{fuzzed}{suffix}"
    paths["qa"].write_text(jsonl(QA))
    paths["docs"].write_text(jsonl(CORPUS))
    paths[fuzzed].write_bytes(data)
    out = folder / "out"
    tokens = ["raft", "--qa", paths["qa"], "--docs", paths["docs"], "--distractors", "2", "--out", out]
    code, err = build(folder, capsys, *tokens)
    check(code, err, paths[fuzzed], out, *([paths["qa"]] if fuzzed == "docs" else []))


@FUZZ
@given(data=mutated_rows(QA))
def test_qa_files(work, capsys, data: bytes) -> None:
    raft_with(work(), capsys, "qa", ".jsonl", data)


@FUZZ
@given(data=mutated_rows(CORPUS))
def test_document_files(work, capsys, data: bytes) -> None:
    raft_with(work(), capsys, "docs", ".jsonl", data)


@FUZZ
@given(data=parquet_tables(QA))
def test_qa_parquet(work, capsys, data: bytes) -> None:
    raft_with(work(), capsys, "qa", ".parquet", data)


@FUZZ
@given(data=parquet_tables(CORPUS))
def test_document_parquet(work, capsys, data: bytes) -> None:
    raft_with(work(), capsys, "docs", ".parquet", data)


TEXTS = st.one_of(
    st.binary(max_size=200),  # mostly invalid UTF-8
    st.text(max_size=200).map(str.encode),
    st.sampled_from([b"", b" \n\t", b"\xff\xfe", b"# Paris\n\nParis is the capital of France.", b"\xef\xbb\xbfTea"]),
)


FILE_NAMES = ["paris.txt", "rome.md", "sub/tea.txt", "sub/deeper/x.md", "notes.csv", ".hidden.txt"]


@FUZZ
@given(files=st.dictionaries(st.sampled_from(FILE_NAMES), TEXTS, max_size=5))
def test_document_folders(work, capsys, files: dict[str, bytes]) -> None:
    """A folder of .txt/.md files (and others, skipped): invalid UTF-8, empty, whitespace, none."""
    folder = work()
    qa, corpus, out = folder / "qa.jsonl", folder / "corpus", folder / "out"
    qa.write_text(jsonl([{k: v for k, v in q.items() if k != "doc_ids"} for q in QA]))
    corpus.mkdir()
    for name, data in files.items():
        (corpus / name).parent.mkdir(parents=True, exist_ok=True)
        (corpus / name).write_bytes(data)
    code, err = build(folder, capsys, "raft", "--qa", qa, "--docs", corpus, "--distractors", "1", "--out", out)
    check(code, err, corpus, out, qa)


@FUZZ
@given(which=st.sampled_from(["qa", "docs"]), data=st.data())
def test_gzip_inputs(work, capsys, which: str, data: st.DataObject) -> None:
    """A .jsonl.gz QA set or corpus, its rows damaged, compressed, then (mostly) cut short."""
    folder = work()
    qa, docs, out = folder / "qa.jsonl", folder / "docs.jsonl", folder / "out"
    qa.write_text(jsonl(QA))
    docs.write_text(jsonl(CORPUS))
    file = folder / f"{which}.jsonl.gz"
    rows = QA if which == "qa" else CORPUS
    text = data.draw(mutated_rows(rows) | st.just(jsonl(rows).encode()))
    packed = gzip.compress(text, mtime=0)
    file.write_bytes(packed[: data.draw(st.integers(0, len(packed)))])
    inputs = {"qa": qa, "docs": docs, which: file}
    tokens = ["raft", "--qa", inputs["qa"], "--docs", inputs["docs"], "--distractors", "2", "--out", out]
    code, err = build(folder, capsys, *tokens)
    check(code, err, file, out, *([qa] if which == "docs" else []))


# --- KG questions and global KGs --------------------------------------------------------------

KG_QUESTIONS = [
    {
        "id": "q1",
        "question": "Where is the Eiffel Tower?",
        "answer": ["Paris"],
        "q_entity": ["Eiffel Tower"],
        "a_entity": ["Paris"],
        "graph": [["Eiffel Tower", "located_in", "Paris"], ["Paris", "capital_of", "France"]],
    },
    {
        "id": "q2",
        "question": "Which country is Paris the capital of?",
        "answer": ["France"],
        "q_entity": ["Paris"],
        "a_entity": ["France"],
        "graph": [["Paris", "capital_of", "France"]],
    },
]
GRAPHLESS = [{k: v for k, v in q.items() if k != "graph"} for q in KG_QUESTIONS]


@FUZZ
@given(data=mutated_rows(KG_QUESTIONS))
def test_kg_question_files(work, capsys, data: bytes) -> None:
    folder = work()
    questions, out = folder / "questions.jsonl", folder / "out"
    questions.write_bytes(data)
    check(*build(folder, capsys, "rog", "--questions", questions, "--out", out), questions, out)


@FUZZ
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_global_kg_files(work, capsys, data: bytes) -> None:
    folder = work()
    questions, kg, out = folder / "questions.jsonl", folder / "kg.tsv", folder / "out"
    questions.write_text(jsonl(GRAPHLESS))
    kg.write_bytes(b"Eiffel Tower\tlocated_in\tParis\n" + data)
    code, err = build(folder, capsys, "rog", "--questions", questions, "--kg", kg, "--out", out)
    check(code, err, kg, out)


TRIPLE_LINES = st.one_of(
    st.just(["Paris", "capital_of", "France"]),
    st.lists(st.text(max_size=8), max_size=4),
    st.lists(json_values, min_size=3, max_size=3),
    json_values,
).map(json.dumps)
KG_JSONL = st.lists(TRIPLE_LINES, max_size=5).flatmap(lambda lines: damaged("".join(f"{x}\n" for x in lines).encode()))


@FUZZ
@given(data=KG_JSONL)
def test_global_kg_jsonl(work, capsys, data: bytes) -> None:
    """A global KG as .jsonl ``[head, relation, tail]`` lines: other types, lengths, nesting."""
    folder = work()
    questions, kg, out = folder / "questions.jsonl", folder / "kg.jsonl", folder / "out"
    questions.write_text(jsonl(GRAPHLESS))
    kg.write_bytes(b'["Eiffel Tower", "located_in", "Paris"]\n' + data)
    code, err = build(folder, capsys, "rog", "--questions", questions, "--kg", kg, "--out", out)
    check(code, err, kg, out)


# --- recipes and configs ----------------------------------------------------------------------


def configs(keys: list[str]) -> st.SearchStrategy[Any]:
    """YAML documents: mostly mappings of the command's own keys (and unknown ones) to values of
    any type; sometimes not a mapping at all."""
    values = json_values | st.sampled_from(["", "0", "-1", "1e9", "none", "abc", "x" * 5_000, [], {}])
    mapping = st.dictionaries(st.sampled_from(keys) | st.text(max_size=12), values, max_size=5)
    return mapping | json_values


def yaml_text(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data)


RAFT_KEYS = ["kind", *(option.name for option in raft_builder.OPTIONS)]
FINETUNE_KEYS = [option.name for option in training_config.OPTIONS]
EVAL_KEYS = ["kind", *(option.name for option in raft_eval.OPTIONS)]


@FUZZ
@given(data=configs(RAFT_KEYS))
def test_recipes(work, capsys, data: Any) -> None:
    """build-data --recipe: the QA set and corpus on the command line, anything in the recipe."""
    folder = work()
    recipe, qa, docs, out = folder / "recipe.yaml", folder / "qa.jsonl", folder / "docs.jsonl", folder / "out"
    qa.write_text(jsonl(QA))
    docs.write_text(jsonl(CORPUS))
    recipe.write_text(yaml_text(data))
    code, err = build(folder, capsys, "raft", "--recipe", recipe, "--qa", qa, "--docs", docs, "--out", out)
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert names_key(err, recipe, RAFT_KEYS), err
        assert not out.exists() and not list(folder.glob(".out.*")), err


@FUZZ
@given(data=configs(FINETUNE_KEYS))
def test_finetune_configs(raft_build: Path, work, capsys, data: Any) -> None:
    """finetune --config (checked by --dry-run: every option, the data folder)."""
    folder = work()
    config, out = folder / "config.yaml", folder / "run"
    config.write_text(yaml_text(data))
    tokens = ["--config", config, "--model", "tiny", "--data", raft_build, "--out", out, "--dry-run"]
    code, err = command(finetune.main, capsys, *tokens)
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert names_key(err, config, FINETUNE_KEYS), err
    assert not out.exists()


@FUZZ
@given(data=configs(EVAL_KEYS))
def test_eval_configs(raft_build: Path, work, capsys, data: Any) -> None:
    folder = work()
    config, predictions, out = folder / "config.yaml", folder / "predictions.jsonl", folder / "report"
    config.write_text(yaml_text(data))
    predictions.write_text(jsonl([{"id": "raft-q-paris", "prediction": "Paris"}]))
    tokens = ["raft", "--config", config, "--data", raft_build, "--split", "all", "--predictions", predictions]
    tokens += ["--out", out]
    code, err = command(eval_cli.main, capsys, *tokens)
    assert code in (0, 2) and "Traceback" not in err, err
    if code == 2:
        assert names_key(err, config, EVAL_KEYS), err
        assert not out.exists() and not list(folder.glob(".report.*")), err


# --- predictions and build-data folders -------------------------------------------------------


@FUZZ
@given(data=mutated_rows([{"id": "raft-q-paris", "prediction": "Paris"}, {"id": "raft-q-rome", "prediction": "x"}]))
def test_prediction_files(raft_build: Path, work, capsys, data: bytes) -> None:
    folder = work()
    predictions, out = folder / "predictions.jsonl", folder / "report"
    predictions.write_bytes(data)
    tokens = ["raft", "--data", raft_build, "--split", "all", "--predictions", predictions, "--out", out]
    check(*command(eval_cli.main, capsys, *tokens), predictions, out)


@FUZZ_TRAINING
@given(data=mutated_rows([{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}] * 2))
def test_build_folders_fed_to_finetune(raft_build: Path, work, capsys, data: bytes) -> None:
    """A build-data folder whose train.jsonl is damaged, trained on for one step (a --dry-run reads
    only the manifest of a folder): exit 0 with a run, or exit 2 naming train.jsonl and its line."""
    folder = work() / "data"
    shutil.copytree(raft_build, folder)
    train = folder / "train.jsonl"
    train.write_bytes(data)
    out = folder.parent / "run"
    tokens = ["--model", "tiny", "--data", folder, "--out", out, "--max-steps", "1", "--max-length", "64"]
    code, err = command(finetune.main, capsys, *tokens)
    check(code, err, train, out)
    if code == 0:
        assert (out / "run.json").is_file()


@FUZZ
@given(
    data=mutated_rows(
        [
            {
                "id": "raft-q1",
                "kind": "raft",
                "split": "eval",
                "question": "q",
                "answers": ["a"],
                "docs": [{"id": "d", "text": "t"}],
                "oracles": [{"id": "d", "text": "t"}],
            }
        ]
    )
)
def test_build_folders_fed_to_eval(work, capsys, data: bytes) -> None:
    folder = work() / "data"
    folder.mkdir()
    records = folder / "records.jsonl"
    records.write_bytes(data)
    predictions = folder.parent / "predictions.jsonl"
    predictions.write_text(json.dumps({"id": "raft-q1", "prediction": "a"}) + "\n")
    out = folder.parent / "report"
    tokens = ["raft", "--data", folder, "--split", "all", "--predictions", predictions, "--out", out]
    code, err = command(eval_cli.main, capsys, *tokens)
    check(code, err, records, out, predictions)  # the records, or the predictions that no longer match them


# --- deep nesting -----------------------------------------------------------------------------
# Every .jsonl reader given one line nested deeper than the readers allow (254 levels), than
# Python's json goes (~1,000) and than orjson goes (1,024): exit 2 naming file:1, never the
# RecursionError (exit 1) each of these ended in before.

DEPTHS = [300, 1_000, 1_025, 100_000]
ROW_READERS = ["qa", "kg questions", "predictions", "records", "trainer rows"]


def deep_case(reader: str, root: Path, raft: Path) -> tuple[Any, list[Any], Path, dict[str, Any]]:
    """(command, tokens, the file the deep line goes in, a valid row of that file)."""
    qa, docs, questions = root / "qa.jsonl", root / "docs.jsonl", root / "questions.jsonl"
    qa.write_text(jsonl(QA))
    docs.write_text(jsonl(CORPUS))
    questions.write_text(jsonl(GRAPHLESS))
    deep, out, data = root / "deep.jsonl", root / "out", root / "data"
    predictions = root / "predictions.jsonl"
    predictions.write_text(jsonl([{"id": "raft-q-paris", "prediction": "Paris"}]))
    if reader == "records":
        shutil.copytree(raft, data)
        deep = data / "records.jsonl"
    evaluate = ["raft", "--data", data if reader == "records" else raft, "--split", "all", "--out", out]
    tiny = ["--model", "tiny"]
    m = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]
    cases: dict[str, tuple[Any, list[Any], dict[str, Any]]] = {
        "qa": (build_data.main, ["raft", "--qa", deep, "--docs", docs, "--out", out], QA[0]),
        "documents": (build_data.main, ["raft", "--qa", qa, "--docs", deep, "--out", out], CORPUS[0]),
        "kg questions": (build_data.main, ["rog", "--questions", deep, "--out", out], KG_QUESTIONS[0]),
        "predictions": (eval_cli.main, [*evaluate, "--predictions", deep], {"id": "raft-q-paris", "prediction": "P"}),
        "records": (eval_cli.main, [*evaluate, "--predictions", predictions], read_first(raft / "records.jsonl")),
        "trainer rows": (finetune.main, [*tiny, "--data", deep, "--out", out, "--dry-run"], {"messages": m}),
    }
    main, tokens, row = cases[reader]
    return main, tokens, deep, row


def read_first(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text().splitlines()[0])


@pytest.mark.parametrize("depth", DEPTHS)
@pytest.mark.parametrize("how", ["line", "objects", "field"])
@pytest.mark.parametrize("reader", ["qa", "documents", "kg questions", "predictions", "records", "trainer rows"])
def test_deep_nesting(raft_build: Path, tmp_path: Path, capsys, reader: str, how: str, depth: int) -> None:
    main, tokens, file, row = deep_case(reader, tmp_path, raft_build)
    if how == "field":  # a valid row with one more field, nested
        line = json.dumps({**row, "z": DEEP}).replace(json.dumps(DEEP), nested(depth))
    else:
        line = nested(depth, "[" if how == "line" else '{"a":')
    file.write_text(line + "\n" + (jsonl(CORPUS[1:]) if reader == "documents" else ""))  # enough documents
    code, err = command(main, capsys, *tokens)
    out = tmp_path / "out"
    if reader in ("documents", "kg questions") and how == "field" and depth <= 1_024:
        assert code == 0, err  # fields other than a document's or a question's own are not read
    else:
        assert code == 2, err
        assert f"{file.name}:1: " in err, err
    assert "Traceback" not in err, err
    if code == 2:
        assert not out.exists() and not list(tmp_path.glob(".out.*"))
    if depth > 1_024 or (reader in ROW_READERS and how != "line" and code == 2):
        assert "nested too deeply" in err, err


# kg/graph.py's .jsonl triple reader parses with orjson itself; its error shows the line as
# written, cut (a repr of a ~1,000-level row that orjson parses was a RecursionError).
@pytest.mark.parametrize("depth", [300, 1_000, 1_025, 100_000])
@pytest.mark.parametrize("how", ["line", "objects", "field"])
def test_deep_global_kg(tmp_path: Path, capsys, how: str, depth: int) -> None:
    questions, kg, out = tmp_path / "questions.jsonl", tmp_path / "kg.jsonl", tmp_path / "out"
    questions.write_text(jsonl(GRAPHLESS))
    if how == "field":
        line = f'["Eiffel Tower", "located_in", {nested(depth)}]'
    else:
        line = nested(depth, "[" if how == "line" else '{"a":')
    kg.write_text('["Eiffel Tower", "located_in", "Paris"]\n' + line + "\n")
    code, err = command(build_data.main, capsys, "rog", "--questions", questions, "--kg", kg, "--out", out)
    assert code == 2, err
    assert f"{kg.name}:2: " in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.parametrize("reader", ["qa", "documents", "kg questions", "predictions", "records", "trainer rows"])
def test_numbers_too_long(raft_build: Path, tmp_path: Path, capsys, reader: str) -> None:
    """A number of 5,000 digits: orjson refuses it, and Python's json (which says why) raised
    ValueError past 4,300 digits (exit 1 before)."""
    main, tokens, file, row = deep_case(reader, tmp_path, raft_build)
    file.write_text(json.dumps({**row, "z": HUGE_NUMBER}).replace(json.dumps(HUGE_NUMBER), "9" * 5_000) + "\n")
    code, err = command(main, capsys, *tokens)
    assert code == 2 and f"{file.name}:1: invalid JSON: " in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def raft_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz")
    qa, docs = root / "qa.jsonl", root / "docs.jsonl"
    qa.write_text(jsonl(QA))
    docs.write_text(jsonl(CORPUS))
    out = root / "raft"
    tokens = ["raft", "--qa", qa, "--docs", docs, "--distractors", "2", "--out", out]
    assert run_guarded(build_data.main, [str(t) for t in tokens]) == 0
    return out
