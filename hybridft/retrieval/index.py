"""A saved retrieval index (``hybridft index``): a corpus cut into chunks and ranked by bm25, a
sentence-transformers model or a trained Invar-RAG retriever, built once and opened by every
command that ranks documents (``--index INDEX_DIR``) instead of being rebuilt.

``INDEX_DIR`` holds ``chunks.arrow`` (an Arrow IPC file with the columns ``id``, ``doc_id``,
``title``, ``text``, one row per chunk in index order, opened memory-mapped: a build over a saved
index holds only the texts it looks at), the index in its library's own format (``bm25/``:
bm25s's save, opened memory-mapped; ``embeddings.npy``: normalised float32 rows, opened
memory-mapped) and ``manifest.json`` (the corpus's sha256, the chunking, the retriever's identity
and, for a trained retriever, the sha256 of its adapter).

It is written to a temporary sibling and renamed at the end, never holding the corpus as Python
strings: the corpus is read in Arrow batches, chunked and appended to ``chunks.arrow`` as it is
read; the ranker then reads the texts back from that file (bm25s tokenises them as they stream by;
dense and trained-retriever encodings go into ``embeddings.npy``, memory-mapped, shard by shard).
Encoding is cached shard by shard (``$HYBRIDFT_CACHE/index``), so a rerun after Ctrl-C continues
where the interrupted one stopped.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridft.core.errors import UsageError
from hybridft.core.options import Option
from hybridft.core.outputs import atomic_output_dir, input_hashes, sha256_file, write_manifest
from hybridft.core.progress import log
from hybridft.core.readers import DOCUMENT_BATCH, ReadStats, document_batches, read_json_object
from hybridft.retrieval.chunking import (
    CHUNK_COLUMNS,
    CHUNKING_OPTIONS,
    ArrowStrings,
    Chunks,
    check_chunking,
    chunk_batches,
    chunks_of_batches,
    chunks_of_table,
)

MANIFEST = "manifest.json"
CHUNKS = "chunks.arrow"
CHUNK_BLOCK = 1 << 16  # rows per record batch of chunks.arrow
CHUNK_LOOKAHEAD = 1024  # rows held after a block before it is written (see appended_chunks)
EMBEDDINGS = "embeddings.npy"
BM25_FOLDER = "bm25"
CHUNKING_KEYS = ("chunk_size", "chunk_overlap", "tokenizer")

OPTIONS = [
    Option("docs", "path", None, "documents: a folder, a .txt/.md file or .jsonl rows", required=True),
    Option(
        "retriever",
        "str",
        "bm25",
        "bm25, minilm (packaged all-MiniLM-L6-v2), a sentence-transformers folder, or the run folder of "
        "`finetune --trainer invar-retriever`",
    ),
    *CHUNKING_OPTIONS,
    Option("batch_size", "int", 64, "texts per forward pass when encoding (dense retrievers)", minimum=1),
    Option("out", "outpath", None, "the index folder", required=True),
    Option("overwrite", "bool", False, "replace a non-empty --out"),
]


# The option every command that ranks a corpus declares beside --docs.
INDEX_OPTION = Option(
    "index",
    "path",
    None,
    "a folder written by `hybridft index` over --docs with the same chunking: loaded instead of rebuilt",
)


def check(config: dict[str, Any]) -> list[str]:
    return check_chunking(config)


@dataclass
class SavedIndex:
    """A corpus's chunks and the ranker over them: ``ranker.search(queries, k)`` returns the chunk
    indices and scores of the top ``k``, best first."""

    chunks: Chunks
    ranker: Any
    manifest: dict[str, Any]

    def search(self, queries: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.ranker.search(queries, min(k, len(self.chunks)))


def retriever_kind(name: str) -> str:
    """``bm25``, ``llm`` (the run folder of an invar-retriever) or ``dense`` (minilm or a
    sentence-transformers folder); anything else is an exit-2 error."""
    if name == "bm25":
        return "bm25"
    if name == "minilm":
        return "dense"
    from hybridft.retrieval.llm_index import SETTINGS_FILE

    folder = Path(name)
    if (folder / SETTINGS_FILE).is_file():
        return "llm"
    if (folder / "modules.json").is_file() or (folder / "config_sentence_transformers.json").is_file():
        return "dense"
    raise UsageError(
        f"retriever={name}: expected bm25, minilm, a sentence-transformers folder, or the --out folder of "
        f"`hybridft finetune --trainer invar-retriever` (a folder holding {SETTINGS_FILE})"
    )


def retriever_identity(name: str) -> dict[str, Any]:
    """What ranks: the same identity means the same rankings for the same chunks."""
    kind = retriever_kind(name)
    if kind == "bm25":
        return {"kind": "bm25", "method": "lucene", "k1": 1.5, "b": 0.75, "stopwords": "english"}
    if kind == "dense":
        return {"kind": "dense", "model": name if name == "minilm" else str(Path(name).resolve())}
    from hybridft.retrieval.llm_index import read_settings

    folder = Path(name)
    adapter = folder / "adapter_model.safetensors"
    weights = adapter if adapter.is_file() else folder / "model.safetensors"
    return {
        "kind": "llm",
        "run": str(folder.resolve()),
        "adapter_sha256": sha256_file(weights) if weights.is_file() else None,
        "settings": read_settings(folder),
    }


def make_ranker(name: str, texts: Sequence[str], batch_size: int) -> Any:
    """A fresh ranker over ``texts``."""
    from hybridft.retrieval.rankers import BM25Index, DenseIndex

    kind = retriever_kind(name)
    if kind == "bm25":
        return BM25Index(texts)
    if kind == "dense":
        return DenseIndex(texts, name, batch_size, option="retriever")
    from hybridft.retrieval.llm_index import open_index

    return open_index(name, texts, batch_size)


@dataclass
class CorpusReading:
    """``--docs`` read and chunked a batch at a time: iterate :meth:`chunk_batches` once, then
    ``documents`` and ``stats`` hold what was read and skipped."""

    docs: str
    chunking: dict[str, Any]
    batch_rows: int = DOCUMENT_BATCH
    documents: int = 0
    stats: ReadStats = field(default_factory=ReadStats)

    def chunk_batches(self) -> Iterator[Any]:
        def counted() -> Iterator[Any]:
            for batch in document_batches(self.docs, self.stats, self.batch_rows):
                self.documents += batch.num_rows
                yield batch

        size, overlap, tokenizer = (self.chunking[key] for key in CHUNKING_KEYS)
        return chunk_batches(counted(), size, overlap, tokenizer)


def build(config: dict[str, Any], batch_rows: int = DOCUMENT_BATCH) -> dict[str, Any]:
    """Write ``config["out"]``; return its manifest. The corpus is read, chunked and appended to
    chunks.arrow ``batch_rows`` documents at a time, and bm25s tokenises each batch's chunks as
    they go by; a dense ranker reads the texts back from the file, memory-mapped. No step holds
    the corpus as Python strings."""
    from hybridft.retrieval.rankers import BM25Index, DenseIndex

    identity = retriever_identity(config["retriever"])  # before the long work: a bad run folder fails now
    reading = CorpusReading(config["docs"], {key: config[key] for key in CHUNKING_KEYS}, batch_rows)
    log(f"indexing {config['docs']} with {config['retriever']}")
    with atomic_output_dir(config["out"], config["overwrite"]) as temp:
        batches = appended_chunks(temp / CHUNKS, reading.chunk_batches())
        if identity["kind"] == "bm25":
            bm25 = BM25Index(text for batch in batches for text in batch.column("text").to_pylist())
            n_chunks = bm25.size
        else:
            n_chunks = sum(batch.num_rows for batch in batches)
        if not n_chunks:
            raise UsageError(f"--docs {config['docs']}: no text to index")
        if identity["kind"] == "bm25":
            bm25.save(temp / BM25_FOLDER)
        else:
            log(f"encoding {n_chunks} chunks of {reading.documents} documents")
            texts = ArrowStrings(_open_chunks(temp / CHUNKS).column("text"))
            if identity["kind"] == "dense":
                DenseIndex(
                    texts, config["retriever"], config["batch_size"], save_to=temp / EMBEDDINGS, option="retriever"
                )
            else:  # a trained retriever: its encodings are cached in shards too (resumable)
                from hybridft.retrieval.llm_index import open_index

                open_index(config["retriever"], texts, config["batch_size"], save_to=temp / EMBEDDINGS)
        return write_manifest(
            temp,
            kind="index",
            options=config,
            inputs=input_hashes(config["docs"]),
            counts={"documents": reading.documents, "chunks": n_chunks, "skipped": dict(reading.stats.skipped)},
            extra={"retriever": identity, "chunking": reading.chunking},
        )


def appended_chunks(path: Path, batches: Iterable[Any]) -> Iterator[Any]:
    """Each Arrow batch of chunks, passed on as it is appended to the IPC file ``path`` (complete
    when the iteration ends). The file holds record batches of :data:`CHUNK_BLOCK` rows, whatever the
    batches given, and its bytes are those of the whole table written at once: Arrow pads each
    string column of a record batch to 64 bytes with the bytes that follow it in memory, so a
    block is written only once :data:`CHUNK_LOOKAHEAD` more rows follow it (or the corpus ends).
    (Only those padding bytes can still differ, where a column holds less than 64 bytes of data
    in the rows that follow, such as empty titles; the data read back is the same.)"""
    import pyarrow as pa

    schema = pa.schema([(name, pa.string()) for name in CHUNK_COLUMNS])
    pending = pa.Table.from_batches([], schema)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        for batch in batches:
            pending = pa.concat_tables([pending, pa.Table.from_batches([batch], schema)])
            while len(pending) >= CHUNK_BLOCK + CHUNK_LOOKAHEAD:
                writer.write_table(_copied(pending.slice(0, CHUNK_BLOCK + CHUNK_LOOKAHEAD)).slice(0, CHUNK_BLOCK))
                pending = pending.slice(CHUNK_BLOCK)
            yield batch
        writer.write_table(_copied(pending), max_chunksize=CHUNK_BLOCK)
    del pending
    pa.default_memory_pool().release_unused()  # the blocks' copies, before a ranker's peak (bm25s indexing)


def _copied(table: Any) -> Any:
    """``table`` with each column copied into one array that ends where the table ends (a slice
    keeps its whole buffer, which Arrow would read its padding from)."""
    import pyarrow as pa

    return pa.table([pa.concat_arrays(column.chunks) for column in table.columns], schema=table.schema)


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if not folder.is_dir():
        raise UsageError(f"--index {folder}: no such folder; build one with `hybridft index --docs ... --out {folder}`")
    manifest = read_json_object(
        path, f"--index {folder}: no {MANIFEST}; not a folder written by `hybridft index`", f"{path}: not valid JSON"
    )
    if manifest.get("kind") != "index" or "retriever" not in manifest:
        raise UsageError(f"--index {folder}: {MANIFEST} is not an index manifest (written by `hybridft index`)")
    return manifest


def mismatches(manifest: dict[str, Any], docs: str | None, chunking: dict[str, Any] | None) -> list[str]:
    """How the index differs from the ``docs`` and ``chunking`` a command was given (empty: it fits)."""
    problems = []
    if docs is not None and not str(docs).startswith("hf:"):
        saved = sorted(manifest["inputs"].values())
        given = sorted(input_hashes(docs).values())
        if saved != given:
            problems.append(
                f"--docs {docs}: not the corpus the index was built from ({manifest['options']['docs']}; "
                f"{len(given)} file(s) here, {len(saved)} there, contents differ)"
            )
    for key, value in (chunking or {}).items():
        if key in manifest["chunking"] and manifest["chunking"][key] != value:
            problems.append(f"{key}={value}: the index was chunked with {key}={manifest['chunking'][key]}")
    return problems


def checked_manifest(
    path: Path, *, docs: str | None = None, chunking: dict[str, Any] | None = None, retriever: str | None = None
) -> dict[str, Any]:
    """The index's manifest; exit 2 naming every difference from the ``docs``, ``chunking`` and
    ``retriever`` a command was given."""
    manifest = read_manifest(path)
    problems = mismatches(manifest, docs, chunking)
    identity = manifest["retriever"]
    if retriever is not None and retriever_identity(retriever) != identity:
        problems.append(f"retriever={retriever}: the index was built with {_describe(identity)}")
    if problems:
        raise UsageError(*(f"--index {path}: {p}" for p in problems))
    return manifest


def open_saved(
    folder: str | Path,
    *,
    docs: str | None = None,
    chunking: dict[str, Any] | None = None,
    retriever: str | None = None,
    batch_size: int = 64,
    llm: Any = None,
) -> SavedIndex:
    """Open ``folder`` without rebuilding anything; exit-2 errors when it does not match the
    ``docs``, ``chunking`` or ``retriever`` the command was given. ``llm``: the trained retriever
    already loaded (on a backbone shared with the generator), used instead of loading it again."""
    from hybridft.retrieval.rankers import BM25Index, DenseIndex

    path = Path(folder)
    manifest = checked_manifest(path, docs=docs, chunking=chunking, retriever=retriever)
    identity = manifest["retriever"]
    chunks = read_chunks(path / CHUNKS)
    if identity["kind"] == "bm25":
        ranker: Any = BM25Index.load(path / BM25_FOLDER, len(chunks))
    else:
        embeddings = np.load(path / EMBEDDINGS, mmap_mode="r")
        if len(embeddings) != len(chunks):
            raise UsageError(f"--index {path}: {len(embeddings)} embeddings for {len(chunks)} chunks; rebuild it")
        if identity["kind"] == "dense":
            ranker = DenseIndex.from_embeddings(embeddings, identity["model"], batch_size, option="retriever")
        else:
            from hybridft.retrieval.llm_index import RetrieverIndex, load_retriever

            ranker = RetrieverIndex(llm or load_retriever(identity["run"]), embeddings, batch_size)
    return SavedIndex(chunks, ranker, manifest)


def _describe(identity: dict[str, Any]) -> str:
    if identity["kind"] == "bm25":
        return "bm25"
    return identity.get("model") or identity.get("run") or identity["kind"]


def _open_chunks(path: Path) -> Any:
    """chunks.arrow as an Arrow table, memory-mapped."""
    import pyarrow as pa

    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()


def read_chunks(path: Path) -> Chunks:
    """A saved index's chunks, memory-mapped (see :func:`chunks_of_table`)."""
    import pyarrow as pa

    if not path.is_file():
        raise UsageError(f"--index {path.parent}: no {CHUNKS} (an index from an older hybridft?): rebuild it")
    try:
        table = _open_chunks(path)
    except (pa.ArrowInvalid, OSError) as error:
        raise UsageError(f"--index {path.parent}: {CHUNKS} is damaged ({error}); rebuild it") from None
    if table.column_names != list(CHUNK_COLUMNS) or any(not pa.types.is_string(t) for t in table.schema.types):
        raise UsageError(f"--index {path.parent}: {CHUNKS} has columns {table.column_names}, not {list(CHUNK_COLUMNS)}")
    return chunks_of_table(table)


def corpus_index(
    index: str | None,
    docs: str | None,
    retriever: str,
    chunking: dict[str, Any],
    batch_size: int = 64,
    llm: Any = None,
) -> SavedIndex:
    """``--index`` opened (checked against ``--docs`` and the chunking when given), or an index
    built in memory from ``--docs`` (nothing saved). ``llm``: a trained retriever already loaded."""
    if index:
        return open_saved(index, docs=docs, chunking=chunking if docs else None, batch_size=batch_size, llm=llm)
    if not docs:
        raise UsageError("give --index INDEX_DIR, or --docs (and --retriever) to index the corpus now")
    chunks = load_corpus({"docs": docs, **chunking}).chunks
    log(f"indexing {len(chunks)} chunks with {retriever}")
    identity = retriever_identity(retriever)
    manifest = {"kind": "index", "retriever": identity, "chunking": chunking, "counts": {"chunks": len(chunks)}}
    if llm is not None:
        from hybridft.retrieval.llm_index import RetrieverIndex

        embeddings = llm.index(chunks.texts, batch_size, None, f"indexing {len(chunks)} chunks ({llm.name})")
        return SavedIndex(chunks, RetrieverIndex(llm, embeddings, batch_size), manifest)
    return SavedIndex(chunks, make_ranker(retriever, chunks.texts, batch_size), manifest)


@dataclass
class Corpus:
    """``--docs`` as chunks: from a saved ``--index`` (checked against ``--docs`` and the chunking)
    or cut now."""

    chunks: Chunks
    documents: int
    skipped: dict[str, int]
    saved: SavedIndex | None = None

    def saved_ranker(self, retriever: str) -> Any:
        """The saved index's ranker when it is ``retriever`` (bm25, a dense model, a trained run),
        else None (the caller builds that ranker)."""
        if self.saved is None or retriever_identity(retriever) != self.saved.manifest["retriever"]:
            return None
        return self.saved.ranker


def load_corpus(config: dict[str, Any]) -> Corpus:
    """``--docs`` as chunks: the saved ``--index``'s, or read and cut now a batch of documents at a
    time."""
    import pyarrow as pa

    chunking = {key: config[key] for key in CHUNKING_KEYS}
    if config.get("index"):
        saved = open_saved(config["index"], docs=config["docs"], chunking=chunking)
        counts = saved.manifest["counts"]
        return Corpus(saved.chunks, counts["documents"], dict(counts.get("skipped") or {}), saved)
    reading = CorpusReading(config["docs"], chunking)
    chunks = chunks_of_batches(reading.chunk_batches())
    pa.default_memory_pool().release_unused()  # the batches' buffers, before the rankers' peak
    return Corpus(chunks, reading.documents, dict(reading.stats.skipped))
