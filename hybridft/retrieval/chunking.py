"""Cutting documents into chunks: what every ranker, builder and eval indexes.

A chunk is at most ``chunk_size`` tokens (words, or a tokenizer's tokens), consecutive chunks of a
document share ``chunk_overlap`` tokens, and a chunk keeps its document's id when the document fits
in one chunk, else ``id#0``, ``id#1``, ...
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybridft.core.options import Option

_WORD = re.compile(r"\S+")

CHUNKING_OPTIONS = [
    Option("chunk_size", "int", 512, "chunk length in tokens (words when --tokenizer is unset)", minimum=1),
    Option("chunk_overlap", "int", 0, "tokens shared by consecutive chunks", minimum=0),
    Option("tokenizer", "str", None, "Hugging Face tokenizer (name or local path) that measures chunks"),
]


def check_chunking(config: dict[str, Any]) -> list[str]:
    if config["chunk_overlap"] >= config["chunk_size"]:
        return [f"chunk_overlap={config['chunk_overlap']}: must be below chunk_size={config['chunk_size']}"]
    return []


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans of whitespace-separated words."""
    return [m.span() for m in _WORD.finditer(text)]


SpanFn = Callable[[str], list[tuple[int, int]]]


def chunk_text(text: str, size: int, overlap: int, spans: SpanFn = word_spans) -> list[str]:
    """Split ``text`` into chunks of at most ``size`` tokens, consecutive chunks sharing
    ``overlap`` tokens. ``spans`` gives token character spans (words by default, or a
    tokenizer's offsets), and each chunk is the original text between its first and last token,
    so formatting inside a chunk is kept.
    """
    # Fast path: a text of n characters holds at most (n + 1) // 2 whitespace-separated words.
    if spans is word_spans and (len(text) + 1) // 2 <= size:
        stripped = text.strip()
        return [stripped] if stripped else []
    token_spans = spans(text)
    if len(token_spans) <= size:
        stripped = text.strip()
        return [stripped] if stripped else []
    step = size - overlap
    chunks = []
    for start in range(0, len(token_spans), step):
        window = token_spans[start : start + size]
        chunks.append(text[window[0][0] : window[-1][1]])
        if start + size >= len(token_spans):
            break
    return chunks


def tokenizer_spans(name_or_path: str) -> SpanFn:
    """Token spans from a Hugging Face tokenizer's offset mapping (imports transformers); exit 2
    naming ``tokenizer=`` when it does not load (an offline hub id says how to get it)."""
    from transformers import AutoTokenizer

    from hybridft.core.errors import UsageError, cannot_load

    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as exc:
        raise UsageError(cannot_load(f"tokenizer={name_or_path}", name_or_path, exc, kind="tokenizer")) from None

    def spans(text: str) -> list[tuple[int, int]]:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        return [(a, b) for a, b in encoded["offset_mapping"] if b > a]

    return spans


@dataclass(slots=True)
class Chunk:
    id: str
    doc_id: str
    title: str
    text: str


class ArrowStrings(Sequence[str]):
    """A string column of an Arrow table as a read-only sequence of ``str``: a saved index's chunk
    texts stay in the memory-mapped file, and only those looked at become Python strings."""

    def __init__(self, column: Any):
        self._column = column

    def __len__(self) -> int:
        return len(self._column)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return self._column[index].to_pylist()
        return self._column[index].as_py()

    def __iter__(self) -> Iterator[str]:
        for block in self._column.chunks:  # a batch of Python strings at a time, never all of them
            yield from block.to_pylist()


@dataclass
class Chunks:
    """The corpus cut into chunks, one sequence per field: corpora have 100,000s of chunks and only
    a few per example are ever looked at as :class:`Chunk` objects. Titles and texts are lists, or
    :class:`ArrowStrings` for a saved index."""

    ids: list[str]
    doc_ids: list[str]
    titles: Sequence[str]
    texts: Sequence[str]
    # A document's chunks are contiguous: the index of its first one (an int per document is cheaper
    # to build than a range per document, for the few documents that questions name).
    first_of_doc: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> Chunk:
        return Chunk(self.ids[index], self.doc_ids[index], self.titles[index], self.texts[index])

    def of_doc(self, doc_id: str) -> range:
        """The indices of a document's chunks (KeyError for a document without chunks)."""
        start = end = self.first_of_doc[doc_id]
        while end < len(self.doc_ids) and self.doc_ids[end] == doc_id:
            end += 1
        return range(start, end)

    def record_doc(self, index: int) -> dict[str, Any]:
        """A distractor as it appears in a record's ``docs``."""
        return {"id": self.ids[index], "title": self.titles[index], "text": self.texts[index], "is_oracle": False}


CHUNK_COLUMNS = ("id", "doc_id", "title", "text")


def chunk_batches(batches: Iterable[Any], size: int, overlap: int, tokenizer: str | None) -> Iterator[Any]:
    """Each Arrow batch of documents (``id``, ``title``, ``text``) as an Arrow batch of its chunks
    (``id``, ``doc_id``, ``title``, ``text``): a corpus is chunked a batch at a time, and only one
    batch's texts are Python strings at once. Chunks keep their document's id when it fits in one
    chunk, else ``id#0``, ``id#1``, ..."""
    import pyarrow as pa

    spans = tokenizer_spans(tokenizer) if tokenizer else word_spans
    for batch in batches:
        doc_ids, doc_titles, doc_texts = (batch.column(name) for name in ("id", "title", "text"))
        texts = doc_texts.to_pylist()
        # A text of c characters holds at most (c + 1) // 2 words: when chunks are counted in words
        # and no text is longer than 2 * size characters, every document is one chunk (the common
        # case of a corpus cut into passages already), and the id and title columns are the batch's.
        if spans is word_spans and max(map(len, texts), default=0) <= 2 * size:
            stripped = pa.array([text.strip() for text in texts], pa.string())  # never empty: see Documents
            yield pa.record_batch([doc_ids, doc_ids, doc_titles, stripped], names=CHUNK_COLUMNS)
            continue
        ids: list[str] = []
        of_doc: list[str] = []
        titles: list[str] = []
        pieces_texts: list[str] = []
        for doc_id, title, text in zip(doc_ids.to_pylist(), doc_titles.to_pylist(), texts, strict=True):
            pieces = chunk_text(text, size, overlap, spans)
            if len(pieces) == 1:
                ids.append(doc_id)
            else:
                ids += (f"{doc_id}#{number}" for number in range(len(pieces)))
            of_doc += [doc_id] * len(pieces)
            titles += [title] * len(pieces)
            pieces_texts += pieces
        columns = [pa.array(column, pa.string()) for column in (ids, of_doc, titles, pieces_texts)]
        yield pa.record_batch(columns, names=CHUNK_COLUMNS)


def chunks_of_table(table: Any) -> Chunks:
    """Chunks over an Arrow table with :data:`CHUNK_COLUMNS` (a saved index's file, memory-mapped):
    ids as lists (every lookup by id needs them), titles and texts as :class:`ArrowStrings`."""
    ids = table.column("id").to_pylist()
    # Most corpora are passages already, one chunk each: one list then serves both columns.
    doc_ids = ids if table.column("id").equals(table.column("doc_id")) else table.column("doc_id").to_pylist()
    texts = ArrowStrings(table.column("text"))
    return Chunks(ids, doc_ids, ArrowStrings(table.column("title")), texts, _first_of_doc(doc_ids))


def chunks_of_batches(batches: Iterable[Any]) -> Chunks:
    """Chunks as Python lists, filled an Arrow batch at a time: a build that indexes the corpus
    itself looks at every text (its rankers and the answer search take Python strings), and the
    strings made once cost less than an Arrow table with a copy beside it (peak RSS of
    bench/scale.py's build at 100,000 chunks: 494 MiB, against 596)."""
    ids: list[str] = []
    doc_ids: list[str] = []
    titles: list[str] = []
    texts: list[str] = []
    for batch in batches:
        batch_ids, of_doc = batch.column("id"), batch.column("doc_id")
        new_ids = batch_ids.to_pylist()
        ids += new_ids
        doc_ids += new_ids if batch_ids.equals(of_doc) else of_doc.to_pylist()  # one string serves both
        titles += batch.column("title").to_pylist()
        texts += batch.column("text").to_pylist()
    return Chunks(ids, doc_ids, titles, texts, _first_of_doc(doc_ids))


def _first_of_doc(doc_ids: list[str]) -> dict[str, int]:
    first_of_doc: dict[str, int] = {}
    for index, doc_id in enumerate(doc_ids):
        first_of_doc.setdefault(doc_id, index)
    return first_of_doc
