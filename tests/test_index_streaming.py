"""``hybridft index`` reads, chunks and writes the corpus a batch at a time (issue 22, item 4): the
bytes it writes do not depend on the batch size, a bad row in a late batch is still exit 2 naming
its line with nothing written, and an interrupted dense or trained-retriever encoding resumes to the same bytes."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl

from hybridft.cli import index as index_cli
from hybridft.cli.common import run_guarded
from hybridft.core.readers import ReadStats, document_batches, read_documents
from hybridft.retrieval import index as index_module
from hybridft.retrieval.index import CHUNKS, load_corpus, read_chunks

BUILD = index_module.build
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu"]


def corpus_folder(root: Path) -> Path:
    """A folder of every kind the reader takes: .jsonl rows (some long enough to be cut, one empty),
    a parquet file, a .md and a .txt file."""
    rows = [
        {
            "id": f"r{i}",
            "title": f"Row {i}",
            "text": " ".join(WORDS[(i + j) % len(WORDS)] for j in range(3 + 7 * (i % 12))),
        }
        for i in range(60)
    ]
    rows.insert(5, {"id": "blank", "text": "   "})
    write_jsonl(root / "a.jsonl", rows)
    table = pa.Table.from_pylist([{"id": f"p{i}", "text": f"Parquet {WORDS[i]} text {i}."} for i in range(5)])
    pq.write_table(table, root / "b.parquet")
    (root / "c.md").write_text("# Gamma\n" + " ".join(WORDS * 3))
    (root / "d.txt").write_text("Delta text.")
    return root


def run(capsys: pytest.CaptureFixture[str], *tokens: Any) -> tuple[int, str]:
    code = run_guarded(index_cli.main, [str(t) for t in tokens])
    return code, " ".join(capsys.readouterr().err.split())


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file's bytes; the manifest's without its time of writing."""
    files = {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = json.loads(files["manifest.json"])
    assert manifest.pop("created_at")
    files["manifest.json"] = json.dumps(manifest).encode()
    return files


def index_with_batches(monkeypatch, capsys, batch_rows: int, out: Path, *tokens: Any) -> dict[str, bytes]:
    monkeypatch.setattr(index_module, "build", functools.partial(BUILD, batch_rows=batch_rows))
    code, err = run(capsys, *tokens, "--out", out)
    assert code == 0, err
    return files_of(out)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """chunks.arrow in record batches of 4 rows, written 32 rows behind the reading (enough for
    Arrow's padding of these columns), so these small corpora span several."""
    monkeypatch.setattr(index_module, "CHUNK_BLOCK", 4)
    monkeypatch.setattr(index_module, "CHUNK_LOOKAHEAD", 32)


@pytest.mark.parametrize("chunking", [[], ["--chunk-size", "8", "--chunk-overlap", "2"]])
def test_the_index_does_not_depend_on_the_batch_size(tmp_path, capsys, monkeypatch, chunking) -> None:
    docs = corpus_folder(tmp_path / "docs")
    out = tmp_path / "index"
    tokens = ["--docs", docs, *chunking, "--overwrite"]
    one_batch = index_with_batches(monkeypatch, capsys, 10_000, out, *tokens)
    for batch_rows in (1, 3):
        assert index_with_batches(monkeypatch, capsys, batch_rows, out, *tokens) == one_batch
    # The file is the one the whole table written at once makes: record batches of CHUNK_BLOCK rows.
    table = pa.ipc.open_file(pa.memory_map(str(out / CHUNKS))).read_all().combine_chunks()
    with pa.OSFile(str(tmp_path / "whole.arrow"), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=4)
    assert (tmp_path / "whole.arrow").read_bytes() == one_batch[CHUNKS]
    manifest = json.loads(one_batch["manifest.json"])
    assert manifest["counts"] == {"documents": 67, "chunks": table.num_rows, "skipped": {"empty_document": 1}}


def test_chunks_read_in_batches_are_those_of_the_whole_collection(tmp_path) -> None:
    docs = corpus_folder(tmp_path / "docs")
    documents, stats = read_documents(docs)
    batches = list(document_batches(docs, ReadStats(), 2))
    assert [len(b) for b in batches] == [2] * 33 + [1]
    assert sum((b.column("text").to_pylist() for b in batches), []) == documents.texts
    chunking = {"docs": str(docs), "chunk_size": 8, "chunk_overlap": 2, "tokenizer": None}
    corpus = load_corpus(chunking)
    saved_folder = tmp_path / "index"
    index_module.build(
        {**chunking, "retriever": "bm25", "batch_size": 64, "out": str(saved_folder), "overwrite": False}
    )
    saved = read_chunks(saved_folder / CHUNKS)
    assert corpus.chunks.ids == saved.ids and list(corpus.chunks.texts) == list(saved.texts)
    assert corpus.chunks.first_of_doc == saved.first_of_doc and corpus.documents == len(documents)
    assert [corpus.chunks.ids[i] for i in corpus.chunks.of_doc("c.md")] == [f"c.md#{n}" for n in range(6)]


def test_long_documents_make_batches_of_fewer_rows(tmp_path, monkeypatch) -> None:
    """A batch also ends at DOCUMENT_BATCH_CHARS characters of text (an Arrow string array holds
    less than 2 GiB: 8,192 books would not fit), in .jsonl and in files alike; the documents are
    the same."""
    from hybridft.core import readers

    docs = corpus_folder(tmp_path / "docs")
    whole, _ = read_documents(docs)
    monkeypatch.setattr(readers, "DOCUMENT_BATCH_CHARS", 100)
    batches = list(document_batches(docs, ReadStats(), 10_000))
    texts = [b.column("text").to_pylist() for b in batches]
    assert sum(texts, []) == whole.texts
    assert len(batches) > 10
    # Every batch stops at the first document that takes it to 100 characters or more.
    assert all(sum(map(len, batch[:-1])) < 100 for batch in texts)
    assert all(sum(map(len, batch)) >= 100 for batch in texts[:-1])


def test_a_damaged_gzip_corpus_is_exit_2_naming_it(tmp_path, capsys) -> None:
    import gzip

    docs = tmp_path / "docs.jsonl.gz"
    rows = "".join(json.dumps({"id": f"d{i}", "text": f"{WORDS[i % 12]} text {i}"}) + "\n" for i in range(400))
    data = bytearray(gzip.compress(rows.encode()))
    data[20], data[21] = data[20] ^ 0xFF, data[21] ^ 0xFF  # a damaged deflate stream: zlib.error
    docs.write_bytes(bytes(data))
    out = tmp_path / "index"
    code, err = run(capsys, "--docs", docs, "--out", out)
    assert code == 2 and f"{docs}: cannot read" in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "a.jsonl:62: invalid JSON"),
        ('{"id": "r1", "text": "again"}', 'a.jsonl:62: duplicate document id "r1" (first at '),
        ('{"id": "x", "text": 3}', 'a.jsonl:62: field "text" must be a string, got int'),
    ],
)
def test_a_bad_row_in_a_late_batch_is_exit_2_and_writes_nothing(tmp_path, capsys, monkeypatch, line, message) -> None:
    docs = corpus_folder(tmp_path / "docs")
    with open(docs / "a.jsonl", "a") as handle:
        handle.write(line + "\n")
    out = tmp_path / "index"
    monkeypatch.setattr(index_module, "build", functools.partial(BUILD, batch_rows=2))
    code, err = run(capsys, "--docs", docs, "--out", out)
    assert code == 2 and message in err, err
    assert not out.exists() and not list(tmp_path.glob(".index*"))


def test_a_resumed_dense_index_writes_the_bytes_of_an_uninterrupted_one(tmp_path, capsys, monkeypatch) -> None:
    from hybridft.retrieval import rankers

    docs = write_jsonl(tmp_path / "docs.jsonl", [{"id": f"d{i}", "text": f"{WORDS[i]} text {i}"} for i in range(7)])
    monkeypatch.setattr(rankers, "SHARD_TEXTS", 2)  # 7 chunks: 4 shards
    monkeypatch.setenv("HYBRIDFT_CACHE", str(tmp_path / "cache-a"))
    tokens = ["--docs", docs, "--retriever", "minilm", "--out"]
    assert run(capsys, *tokens, tmp_path / "whole")[0] == 0
    resumes_to_the_bytes_of_whole(tmp_path, capsys, monkeypatch, tokens, rankers, "encode_texts")


def resumes_to_the_bytes_of_whole(
    tmp_path: Path, capsys: Any, monkeypatch: pytest.MonkeyPatch, tokens: list[Any], owner: Any, name: str
) -> None:
    """``index *tokens`` with a fresh cache, the encoder ``owner.name`` interrupted at its third of
    4 shards, then rerun: it resumes at the missing shards and writes the bytes of ``whole``."""
    monkeypatch.setenv("HYBRIDFT_CACHE", str(tmp_path / "cache-b"))
    encode = getattr(owner, name)
    calls = []

    def interrupted(*args: Any, **kwargs: Any) -> Any:  # a function or a method (self in args)
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return encode(*args, **kwargs)

    monkeypatch.setattr(owner, name, interrupted)
    assert run(capsys, *tokens, tmp_path / "resumed")[0] == 130
    assert not (tmp_path / "resumed").exists()
    code, err = run(capsys, *tokens, tmp_path / "resumed")
    assert code == 0 and "2 of 4 shard(s) already" in err, err
    assert len(calls) == 5  # 2, the interrupted one, then the 2 missing
    whole, resumed = files_of(tmp_path / "whole"), files_of(tmp_path / "resumed")
    assert whole["embeddings.npy"] == resumed["embeddings.npy"] and whole[CHUNKS] == resumed[CHUNKS]


@pytest.fixture(scope="module")
def retriever_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An invar-retriever run folder: the tiny model (random weights, seed 0) as a full fine-tune."""
    from hybridft.core.models import build_tiny
    from hybridft.retrieval.llm_index import SETTINGS_FILE, encoder_settings

    folder = build_tiny(tmp_path_factory.mktemp("retriever"))
    (folder / SETTINGS_FILE).write_text(json.dumps(encoder_settings("tiny", 64)))
    return folder


def test_a_retriever_index_written_in_shards_holds_the_array_encoded_whole(
    tmp_path, capsys, monkeypatch, retriever_run: Path
) -> None:
    """The trained retriever's embeddings go to embeddings.npy a shard at a time (memory-mapped):
    the file holds the bytes np.save writes for the whole array, and an interrupted run resumes
    to the same bytes."""
    import numpy as np

    from hybridft.retrieval import llm_index

    docs = write_jsonl(tmp_path / "docs.jsonl", [{"id": f"d{i}", "text": f"{WORDS[i]} text {i}"} for i in range(7)])
    monkeypatch.setattr(llm_index, "SHARD_TEXTS", 2)  # 7 chunks: 4 shards
    monkeypatch.setenv("HYBRIDFT_CACHE", str(tmp_path / "cache-a"))
    tokens = ["--docs", docs, "--retriever", retriever_run, "--batch-size", "3", "--out"]
    assert run(capsys, *tokens, tmp_path / "whole")[0] == 0
    texts = read_chunks(tmp_path / "whole" / CHUNKS).texts
    retriever = llm_index.load_retriever(retriever_run)
    np.save(tmp_path / "in-memory.npy", retriever.index(texts, 3, tmp_path / "cache-c"))
    assert (tmp_path / "whole" / "embeddings.npy").read_bytes() == (tmp_path / "in-memory.npy").read_bytes()

    resumes_to_the_bytes_of_whole(tmp_path, capsys, monkeypatch, tokens, llm_index.Retriever, "encode")


def test_bm25_over_streamed_token_ids_saves_what_bm25s_saves_over_lists(tmp_path) -> None:
    import bm25s

    from hybridft.retrieval.rankers import BM25Index

    texts = [" ".join(WORDS[(i * j) % 12] for j in range(1 + i % 7)) + " and the" for i in range(40)] + ["the"]
    BM25Index(iter(texts)).save(tmp_path / "ours")
    tokenizer = bm25s.tokenization.Tokenizer(stopwords="english")
    ids = tokenizer.tokenize(texts, show_progress=False, return_as="ids")
    model = bm25s.BM25()
    model.index(bm25s.tokenization.Tokenized(ids=ids, vocab=tokenizer.get_vocab_dict()), show_progress=False)
    model.save(str(tmp_path / "theirs"), show_progress=False)
    tokenizer.save_vocab(str(tmp_path / "theirs"))
    assert files_of_folder(tmp_path / "ours") == files_of_folder(tmp_path / "theirs")


def files_of_folder(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}
