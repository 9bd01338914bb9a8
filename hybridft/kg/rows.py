"""RoG question rows read with their graphs left as bytes, never as Python strings.

A RoG-webqsp row is ~150 KB, nearly all of it the ``graph``: ~13,000 names. Parsing it makes a
Python string of each, and packing the graph into arrow reads each once more; those two passes
were 2/3 of ``build-data rog --tasks plan``. Here the graph is cut out of the raw line: in a graph
written as plain JSON (``[["h", "r", "t"], ...]`` with one separator style, no escaped quote, no
control characters) the names lie between consecutive quotes, so numpy finds them and arrow takes
them as string views into the line itself (no copy; the few names with other escapes are
decoded); the rest of the row, a few hundred bytes, is parsed with orjson as before. Only the
names a record prints ever become Python strings.

A parquet file's graph column is arrow already: each row's names are a slice of it.

Any line that does not fit that shape exactly (an escaped quote, other spacing, a triple of
another length, a non-string name, invalid UTF-8, a duplicate ``graph`` key, ...) is parsed whole,
as :func:`hybridft.core.readers.iter_kg_questions` does, so errors name the same line in the same words.
"""

from __future__ import annotations

import os
import re
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import orjson

from hybridft.core.errors import InputError
from hybridft.core.readers import KGQuestion, iter_kg_questions, kg_question, numbered_lines, parse_json_line
from hybridft.kg.batch import PackedGraph

# Threads cutting and packing lines ahead of the caller, and how many rows they may be ahead:
# enough to keep them busy while the caller searches a batch (~50 rows), little to hold.
_WORKERS = 2
_AHEAD = 16

# The graph value starts at the first '[' of this match (a key, then at least one triple).
_GRAPH_KEY = re.compile(rb'"graph"[ \t\n\r]*:[ \t\n\r]*\[[ \t\n\r]*\[')


def _gap_words(*gaps: bytes) -> tuple[np.ndarray, np.ndarray]:
    """(masks, values) that tell whether the 8 bytes from a name's closing quote, read as a
    little-endian integer, start with a gap: ``word & mask == value``."""
    masks = [(1 << (8 * len(gap))) - 1 for gap in gaps]
    values = [int.from_bytes(gap, "little") for gap in gaps]
    return np.array(masks, dtype=np.uint64), np.array(values, dtype=np.uint64)


# By the separator within a triple, the gaps from a name's closing quote to the next name's
# opening quote: after the first and the second name of a triple, and between triples.
_TRIPLE_GAPS = {
    b",": _gap_words(b'","', b'","', b'"],["'),
    b", ": _gap_words(b'", "', b'", "', b'"], ["'),
}
_GRAPH_END = _gap_words(b'"]]')  # after the last name of the graph
_PAD = b"\0" * 16  # unaligned 8-byte reads past the last name stay inside the buffer


def iter_questions_packed(source: str | Path) -> Iterator[tuple[KGQuestion, PackedGraph | None]]:
    """``(question, packed graph)`` per row, in input order. A graph cut out of its line comes
    packed, with ``question.graph`` None; otherwise the packed graph is None and the row is as
    :func:`hybridft.core.readers.iter_kg_questions` gives it (other file types, lines not cut).

    Lines are cut and packed up to ``_AHEAD`` rows ahead on worker threads (numpy and arrow
    release the GIL for most of it); rows are checked and yielded in order on the caller's thread.
    """
    path = Path(source)
    if str(source).startswith("hf:") or not path.name.endswith((".jsonl", ".jsonl.gz", ".json.gz", ".parquet")):
        for question in iter_kg_questions(source):
            yield question, None
        return
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if path.name.endswith(".parquet"):
        yield from _iter_parquet(source)
        return
    seen: dict[str, str] = {}
    name = str(path)
    empty = True
    workers = min(_WORKERS, os.cpu_count() or 1)
    pending: deque[tuple[int, bytes, Future[_Cut]]] = deque()
    with numbered_lines(path) as lines, ThreadPoolExecutor(workers) as pool:
        for lineno, raw in lines:
            if raw.isspace():
                continue
            empty = False
            pending.append((lineno, raw, pool.submit(_cut_and_pack, raw)))
            if len(pending) > _AHEAD:
                yield _question_of(*pending.popleft(), f"{name}:", seen)
        while pending:
            yield _question_of(*pending.popleft(), f"{name}:", seen)
    if empty:
        raise InputError(f"{source}: no rows (an empty input is an error, not an empty output)")


# A row cut out of its line (None when it was not), its graph's names, and the graph packed when
# the looked-up entities could be read before the row's checks.
_Cut = tuple[dict[str, Any] | None, Any, PackedGraph | None]


def _cut_and_pack(raw: bytes) -> _Cut:
    """The worker's part: cut the graph out of a line, parse the rest, pack the graph."""
    cut = cut_graph(raw)
    row = _parse_rest(cut[0]) if cut is not None else None
    if cut is None or row is None:
        return None, None, None
    q_entity, a_entity = row.get("q_entity"), row.get("a_entity")
    if not (_is_strings(q_entity) and _is_strings(a_entity)):
        return row, cut[1], None  # packed after the row's checks, with the entities they give
    return row, None, PackedGraph.of_names(cut[1], q_entity + a_entity)


def _is_strings(value: Any) -> TypeGuard[list[str]]:
    return type(value) is list and all(type(v) is str for v in value)


def _question_of(
    lineno: int, raw: bytes, future: Future[_Cut], prefix: str, seen: dict[str, str]
) -> tuple[KGQuestion, PackedGraph | None]:
    """A row checked in input order; a line that was not cut is parsed whole here."""
    where = f"{prefix}{lineno}"
    row, names, packed = future.result()
    if row is None:
        return kg_question(parse_json_line(raw, where), where, seen), None
    question = kg_question(row, where, seen)
    question.graph = None
    if packed is None:
        packed = PackedGraph.of_names(names, question.q_entity + question.a_entity)
    return question, packed


def _iter_parquet(source: str | Path) -> Iterator[tuple[KGQuestion, PackedGraph | None]]:
    """Parquet rows: the graph column is arrow already, so each row's names are sliced out of it
    (no Python string per name); the other columns are read as :mod:`hybridft.core.readers` reads them."""
    import pyarrow.parquet as pq

    path = Path(source)
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise InputError(f"{path}: cannot read parquet: {exc}") from None
    graph_type = table.schema.field("graph").type if "graph" in table.column_names else None
    rows = table.drop_columns(["graph"]).to_pylist() if _is_triples_type(graph_type) else []
    if not rows:  # another graph type, or no rows (the whole-row reader says what is wrong)
        yield from ((question, None) for question in iter_kg_questions(source))
        return
    seen: dict[str, str] = {}
    index = 0
    for chunk in table.column("graph").chunks:
        offsets = chunk.offsets.to_numpy()
        valid = chunk.is_valid().to_numpy(zero_copy_only=False)
        for i in range(len(chunk)):
            row, where = rows[index], f"{path}:row {index + 1}"
            index += 1
            triples = chunk.values.slice(offsets[i], offsets[i + 1] - offsets[i]) if valid[i] else None
            plain = triples is not None and len(triples) > 0 and _plain_triples(triples)
            # A graph that is not plain (null triples or names, other lengths) goes as Python
            # lists to the whole-row path, which names the bad triple.
            row["graph"] = None if triples is None else [] if plain else triples.to_pylist()
            question = kg_question(row, where, seen)
            if not plain:
                yield question, None
                continue
            assert triples is not None
            question.graph = None
            yield question, PackedGraph.of_names(triples.flatten(), question.q_entity + question.a_entity)


def _is_triples_type(value_type: Any) -> bool:
    """Whether a column type is a list of lists of strings."""
    import pyarrow as pa

    def is_list(t: Any) -> bool:
        return bool(pa.types.is_list(t) or pa.types.is_large_list(t))

    return (
        value_type is not None
        and is_list(value_type)
        and is_list(value_type.value_type)
        and (
            pa.types.is_string(value_type.value_type.value_type)
            or pa.types.is_large_string(value_type.value_type.value_type)
        )
    )


def _plain_triples(triples: Any) -> bool:
    """Whether every element of a list-of-lists array is a triple of non-null strings."""
    import pyarrow.compute as pc

    if triples.null_count:
        return False
    lengths = pc.list_value_length(triples)
    return bool(pc.all(pc.equal(lengths, 3)).as_py()) and triples.flatten().null_count == 0


def _parse_rest(rest: bytes) -> dict[str, Any] | None:
    """The row without its graph; None unless it is an object whose one ``graph`` key is the cut."""
    try:
        row = orjson.loads(rest)
    except orjson.JSONDecodeError:
        return None
    if type(row) is not dict or rest.count(b'"graph"') != 1 or row.get("graph") != []:
        return None
    return row


def cut_graph(raw: bytes) -> tuple[bytes, Any] | None:
    """``(the line with its graph replaced by [], the graph's names as an arrow string array)``,
    or None when the graph is not plain JSON of one separator style (the caller parses the line).

    The names are found between consecutive quotes; that is sound only because the checks below
    leave no other way to read the bytes: every gap between names is exactly a separator, the
    last triple ends with ``]]``, and the graph holds no escaped quote, no control character, no
    invalid escape and only valid UTF-8. Whether the graph is the row's (not a string's or a nested object's) is checked
    by the caller, on the rest of the line.
    """
    match = _GRAPH_KEY.search(raw)
    if match is None:
        return None
    start = raw.index(b"[", match.start())
    padded = raw + _PAD
    data = np.frombuffer(padded, dtype=np.uint8)
    quotes = np.flatnonzero(data[start:] == ord('"'))
    if len(quotes) < 6 or quotes[0] != match.end() - start:
        return None
    quotes += start
    opening, closing = quotes[0::2], quotes[1::2]
    gaps = _TRIPLE_GAPS.get(raw[int(closing[0]) + 1 : int(quotes[2])])
    if gaps is None:
        return None
    # The 8 bytes from each closing quote: each gap, quotes on both sides included, is checked with
    # one comparison (the next name's opening quote must be where the gap ends).
    words = np.ndarray((len(padded) - 7,), np.dtype("<u8"), padded, 0, (1,))[closing]
    # The graph ends after the first triple whose closing quote is followed by "]]".
    (end_mask,), (end_value,) = _GRAPH_END
    ends_graph = np.flatnonzero((words[2::3] & end_mask) == end_value)
    if len(ends_graph) == 0:
        return None
    n = 3 * (int(ends_graph[0]) + 1)
    masks, values = gaps
    if not (
        ((words[: n - 3].reshape(-1, 3) & masks) == values).all()
        and ((words[n - 3 : n - 1] & masks[0]) == values[0]).all()
    ):
        return None
    starts, stops = opening[:n] + 1, closing[:n]
    end = int(stops[-1]) + 3  # past the closing '"]]'
    if data[start:end].min() < 0x20:
        return None
    escaped: dict[int, bytes] | None = {}
    if raw.find(b"\\", start, end) >= 0:
        # An escaped quote would break the pairing of quotes; other escapes are decoded here.
        no_quote = raw.find(b'\\"', start, end) < 0
        escaped = _unescaped(raw, data[start:end], start, starts, stops) if no_quote else None
    if escaped is None:
        return None
    if not raw.isascii():
        try:
            raw[start:end].decode("utf-8")
        except UnicodeDecodeError:
            return None
    return raw[:start] + b"[]" + raw[end:], _string_views(padded, starts, stops - starts, escaped)


def _unescaped(
    raw: bytes, graph: np.ndarray, start: int, starts: np.ndarray, stops: np.ndarray
) -> dict[int, bytes] | None:
    """The names holding a backslash (the gaps are checked, so only names can), by position,
    decoded as JSON strings to UTF-8; None when one of them is not a valid JSON string."""
    slashes = np.flatnonzero(graph == ord("\\")) + start
    decoded = {}
    for j in np.unique(np.searchsorted(starts, slashes, side="right") - 1).tolist():
        try:
            decoded[j] = orjson.loads(raw[starts[j] - 1 : stops[j] + 1]).encode()
        except (orjson.JSONDecodeError, UnicodeEncodeError):
            return None
    return decoded


# By a name's length (capped at 12), masks keeping its inline bytes in a view's two 8-byte words:
# bytes 4..7 of the first word (after the length), bytes 0..7 of the second.
_FIRST_WORD = np.array([((1 << (8 * min(k, 4))) - 1) << 32 for k in range(13)], dtype=np.uint64)
_SECOND_WORD = np.array([(1 << (8 * max(k - 4, 0))) - 1 for k in range(13)], dtype=np.uint64)


def _string_views(buffer: bytes, starts: np.ndarray, lengths: np.ndarray, replaced: dict[int, bytes]) -> Any:
    """An arrow string_view array of ``buffer[start:start + length]`` slices, without copying them.

    Arrow's view is 16 bytes: the length, then the string inline (zero-padded) when it has at most
    12 bytes, else its first 4 bytes, a buffer index and an offset. Taking the 16 bytes that start
    4 before each name gives the inline bytes in place; masks then clear what follows the name.
    ``buffer`` must extend 12 bytes past the last name, and every start be at least 4.
    ``replaced`` gives the bytes of some names instead (escaped ones, decoded), kept inline or in
    a second buffer.
    """
    import pyarrow as pa

    rows = np.ndarray((len(buffer) - 15,), "V16", buffer, 0, (1,))[starts - 4]
    words = rows.view(np.uint64).reshape(-1, 2)
    first, second = words[:, 0], words[:, 1]
    capped = np.minimum(lengths, 12)
    first &= _FIRST_WORD[capped]
    first |= lengths.astype(np.uint64)
    second &= _SECOND_WORD[capped]
    long = lengths > 12
    if long.any():  # buffer 0, then the offset
        second[long] = starts[long].astype(np.uint64) << np.uint64(32)
    extra = bytearray()
    for j, value in replaced.items():
        inline = value.ljust(12, b"\0")
        first[j] = len(value) | int.from_bytes(inline[:4], "little") << 32
        if len(value) <= 12:
            second[j] = int.from_bytes(inline[4:12], "little")
        else:  # buffer 1, then the offset
            second[j] = 1 | len(extra) << 32
            extra += value
    buffers = [None, pa.py_buffer(words), pa.py_buffer(buffer)] + ([pa.py_buffer(bytes(extra))] if extra else [])
    return pa.Array.from_buffers(pa.string_view(), len(starts), buffers)
