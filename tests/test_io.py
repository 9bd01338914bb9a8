import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl

from hybridft.core.errors import InputError, UsageError
from hybridft.core.outputs import atomic_output_dir, write_manifest
from hybridft.core.readers import read_documents, read_qa


def test_folder_of_text_markdown_and_rows(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("Alpha text.")
    (root / "sub" / "b.md").write_text("# Bee\nBeta text.")
    (root / "notes.csv").write_text("ignored")
    (root / ".hidden.txt").write_text("hidden")
    write_jsonl(root / "rows.jsonl", [{"id": "r1", "text": "Row one.", "title": "One"}])
    with gzip.open(root / "more.jsonl.gz", "wt") as handle:
        handle.write(json.dumps({"id": "r2", "contents": '"Two"\nRow two text.'}) + "\n")
    documents, stats = read_documents(root)
    by_id = {d.id: (d.title, d.text) for d in documents}
    assert by_id == {
        "a.txt": ("a", "Alpha text."),
        "sub/b.md": ("Bee", "# Bee\nBeta text."),
        "r1": ("One", "Row one."),
        "r2": ("Two", "Row two text."),
    }
    assert stats.skipped == {"unsupported_file": 1}


def test_parquet_rows(tmp_path: Path) -> None:
    path = tmp_path / "docs.parquet"
    pq.write_table(pa.Table.from_pylist([{"id": "p1", "text": "Parquet text."}]), path)
    documents, _ = read_documents(path)
    assert [(d.id, d.text) for d in documents] == [("p1", "Parquet text.")]


def test_qa_answer_aliases_and_doc_ids(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "qa.jsonl",
        [
            {"id": 1, "question": "q1?", "answers": ["a", "b"]},
            {"id": "2", "question": "q2?", "answer": "c", "doc_ids": "d1"},
            {"id": "3", "question": "q3?", "golden_answers": ["e"], "context": "ctx"},
        ],
    )
    rows = read_qa(path)
    assert [(r.id, r.answers, r.doc_ids, r.context) for r in rows] == [
        ("1", ["a", "b"], None, None),
        ("2", ["c"], ["d1"], None),
        ("3", ["e"], None, "ctx"),
    ]


BAD_QA_ROWS = [
    (
        b'{"id": "1", "question": "q?", "answers": ["a"]}\n{"id": "2", "question": \n',
        "qa.jsonl:2: invalid JSON",
    ),
    (b'{"id": "1", "answers": ["a"]}\n', 'qa.jsonl:1: missing field "question"'),
    (b'{"id": "1", "question": "q?"}\n', 'qa.jsonl:1: missing field "answers"'),
    (
        b'{"id": "1", "question": "q?", "answers": []}\n',
        'qa.jsonl:1: field "answers" has no non-empty answer',
    ),
    (b'{"id": "1", "question": "\xff", "answers": ["a"]}\n', "qa.jsonl:1: not valid UTF-8"),
    (b'["a"]\n', "qa.jsonl:1: expected a JSON object, got an array"),
    (b"\n\n", "qa.jsonl: no rows"),
    (
        b'{"id": "1", "question": "q?", "answers": ["a"]}\n{"id": "1", "question": "r?", "answers": ["b"]}\n',
        'qa.jsonl:2: duplicate id "1" (first at',
    ),
]
BAD_DOCUMENT_ROWS = [
    (b'{"id": "a", "text": "ok"}\n{"id": "b", "text": \n', "docs.jsonl:2: invalid JSON"),
    (b'{"id": "a", "text": "ok"}\n\n[1, 2]\n', "docs.jsonl:3: expected a JSON object, got an array"),
    (b'{"id": "a", "text": 5}\n', 'docs.jsonl:1: field "text" must be a string, got int'),
    (b'{"id": "a"}\n', 'docs.jsonl:1: missing field "text" (or FlashRAG "contents")'),
    (b'{"text": "no id"}\n', 'docs.jsonl:1: missing field "id"'),
    (b'{"id": "a", "text": "caf\xe9"}\n', "docs.jsonl:1: not valid UTF-8"),
]


@pytest.mark.parametrize(
    ("reader", "name", "content", "message"),
    [(read_qa, "qa.jsonl", *case) for case in BAD_QA_ROWS]
    + [(read_documents, "docs.jsonl", *case) for case in BAD_DOCUMENT_ROWS],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, reader: Any, name: str, content: bytes, message: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        reader(path)
    assert message in str(caught.value)


def test_non_utf8_text_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9")
    with pytest.raises(InputError, match=r"bad.txt: not valid UTF-8 \(byte 3\)"):
        read_documents(tmp_path)


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "docs.jsonl", [{"id": "x", "text": "   "}])
    with pytest.raises(InputError, match="no documents with text"):
        read_documents(tmp_path / "docs.jsonl")


def test_atomic_output_dir_leaves_nothing_on_failure(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(out, overwrite=False) as temp:
        (temp / "records.jsonl").write_text("partial")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_dir_refuses_non_empty_and_replaces_with_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(UsageError, match="not empty"), atomic_output_dir(out, overwrite=False):
        pass
    with atomic_output_dir(out, overwrite=True) as temp:
        (temp / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert [p.name for p in out.iterdir()] == ["new.txt"]


def test_manifest_hashes_outputs(tmp_path: Path) -> None:
    (tmp_path / "records.jsonl").write_text("x\n")
    manifest = write_manifest(tmp_path, kind="raft", options={"seed": 3}, inputs={"qa": "abc"}, counts={"n": 1})
    assert manifest["outputs"] == {"records.jsonl": hashlib.sha256(b"x\n").hexdigest()}
    assert manifest["seed"] == 3
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"] == {"n": 1}


def test_input_hashes_cover_the_files_read(tmp_path: Path) -> None:
    from hybridft.core.outputs import input_hashes

    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text("x")
    (tmp_path / "a.txt").write_text("a")
    assert list(input_hashes(tmp_path)) == [str(tmp_path / "a.txt")]


def test_documents_without_text_are_counted_and_their_ids_still_unique(tmp_path: Path) -> None:
    rows = [{"id": "a", "text": "Alpha."}, {"id": "b", "text": "  \n"}, {"id": "c", "contents": "Title\n"}]
    documents, stats = read_documents(write_jsonl(tmp_path / "docs.jsonl", rows))
    assert [(d.id, d.title, d.text) for d in documents] == [("a", "", "Alpha.")]
    assert stats.skipped == {"empty_document": 2}
    write_jsonl(tmp_path / "docs.jsonl", [*rows, {"id": "b", "text": "Beta."}])
    with pytest.raises(InputError, match=r'docs.jsonl:4: duplicate document id "b" \(first at .*docs.jsonl:2\)'):
        read_documents(tmp_path / "docs.jsonl")


def test_duplicate_document_ids_name_both_places(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    root.mkdir()
    write_jsonl(root / "a.jsonl", [{"id": "x", "text": "One."}, {"id": "y", "text": "Two."}])
    write_jsonl(root / "b.jsonl", [{"id": "z", "text": "Three."}, {"id": "y", "title": "T", "text": "Four."}])
    with pytest.raises(InputError) as caught:
        read_documents(root)
    assert str(caught.value) == f'{root / "b.jsonl"}:2: duplicate document id "y" (first at {root / "a.jsonl"}:2)'
    (root / "b.jsonl").unlink()
    write_jsonl(root / "c.jsonl", [{"id": "note.txt", "text": "A row named like a text file."}])
    (root / "note.txt").write_text("A text file.")
    with pytest.raises(InputError) as caught:
        read_documents(root)
    assert str(caught.value) == f'{root / "note.txt"}: duplicate document id "note.txt" (first at {root / "c.jsonl"}:1)'
