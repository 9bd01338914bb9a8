"""Reading inputs (documents, QA sets, KG questions, any .jsonl/.parquet/hf: rows) with errors that
name the file and line, exit 2 on bad input.

Why this module is long: every reader shares the row parsing and its error messages (file:line,
the field, the fix), and a corpus is read in Arrow batches besides; split, the error wording would
drift between modules.
"""

from __future__ import annotations

import gc
import gzip
import json
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hybridft.core.errors import InputError, UsageError, cannot_load

DOCUMENT_SUFFIXES = (".txt", ".md")
ROW_SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".json.gz")
DOCUMENT_COLUMNS = ("id", "title", "text")
DOCUMENT_BATCH = 8192  # documents per Arrow batch, at most ...
DOCUMENT_BATCH_CHARS = 1 << 26  # ... or 64 Mi characters of text (an Arrow string array holds < 2 GiB)


@dataclass(slots=True)
class Document:
    id: str
    title: str
    text: str


@dataclass
class Documents:
    """Documents as three columns of Python strings: the rows of one batch of
    :func:`document_batches` while it is filled, or a small collection read whole
    (:func:`read_documents`). Every text holds more than whitespace (readers skip and count the
    others)."""

    ids: list[str] = field(default_factory=list)
    titles: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self) -> Iterator[Document]:
        return map(Document, self.ids, self.titles, self.texts)

    def add(self, doc: Document) -> None:
        self.ids.append(doc.id)
        self.titles.append(doc.title)
        self.texts.append(doc.text)

    def to_batch(self) -> Any:
        """The rows as an Arrow record batch (``id``, ``title``, ``text``)."""
        import pyarrow as pa

        columns = [pa.array(column, pa.string()) for column in (self.ids, self.titles, self.texts)]
        return pa.record_batch(columns, names=DOCUMENT_COLUMNS)


@dataclass(slots=True)
class QARow:
    id: str
    question: str
    answers: list[str]
    doc_ids: list[str] | None = None
    context: str | None = None
    where: str = ""  # file:line, for messages about this row


# Why the document reader skips a document (counted under these names in a build's manifest).
DOCUMENT_SKIP_REASONS = ("empty_document", "unsupported_file")


@dataclass
class ReadStats:
    """What a reader skipped, and why, so that nothing is dropped silently."""

    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while parsing many rows.

    Parsed rows are acyclic (dicts, lists, strings), so reference counting frees them all; but each
    parsed container counts towards the collector's thresholds, and the full collections it
    triggers re-scan every row kept so far: 40% of a RoG build, measured. Builders and writers make
    no reference cycles worth collecting; anything cyclic made meanwhile is collected afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --- rows -----------------------------------------------------------------------------------


def read_json_object(path: Path, missing: str, invalid: str) -> dict[str, Any]:
    """A JSON file that holds an object (a manifest, run.json, a report). ``missing``: the error
    when there is no such file; ``invalid``: the start of the error when it is not a JSON object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(missing) from None
    except IsADirectoryError:
        raise UsageError(f"{invalid} (a folder, not a file)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{invalid} ({exc})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{invalid} (expected a JSON object)")
    return data


def build_manifest(folder: str | Path) -> dict[str, Any]:
    """The manifest.json of a build-data folder, or {} when there is none that reads (callers that
    need one say so in their own words)."""
    return json_or_empty(Path(folder) / "manifest.json")


def run_record(folder: str | Path) -> dict[str, Any]:
    """The run.json of a finetune run folder, or {} when there is none that reads."""
    return json_or_empty(Path(folder) / "run.json")


def json_or_empty(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def iter_rows(source: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, row)`` from a .jsonl, .jsonl.gz or .parquet file or an ``hf:`` dataset.

    ``where`` is ``file:line`` (or ``file:row N``) so that every error can point at the row.
    """
    text = str(source)
    if text.startswith("hf:"):
        return _iter_hf_rows(text)
    path = Path(source)
    name = path.name
    if path.is_dir():
        raise InputError(f"{path}: a folder; expected a .jsonl, .jsonl.gz or .parquet file")
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    if name.endswith(".parquet"):
        return _iter_parquet_rows(path)
    if name.endswith(JSONL_SUFFIXES):
        return _iter_jsonl_rows(path)
    raise InputError(f"{path}: unsupported file type (expected .jsonl, .jsonl.gz or .parquet)")


@contextmanager
def numbered_lines(path: Path) -> Iterator[Iterator[tuple[int, bytes]]]:
    """The lines of a .jsonl or .jsonl.gz file as bytes, numbered from 1 (blank ones included: the
    caller skips them). A file that cannot be read, such as a truncated or fake .gz, raises an
    InputError naming it."""
    try:
        # A 1 MB buffer: RoG rows are ~150 KB, and with the default 8 KB one each line is put
        # together from ~20 reads (3x the time to read the file).
        with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb", buffering=1 << 20) as handle:
            yield enumerate(handle, start=1)
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a damaged deflate stream
        raise InputError(f"{path}: cannot read: {exc}") from None


def _iter_jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    name = str(path)
    with numbered_lines(path) as lines:
        for lineno, raw in lines:
            if raw.isspace():
                continue
            try:
                row = orjson.loads(raw)  # 3x faster than json on large corpora
            except orjson.JSONDecodeError as exc:
                raise InputError(_json_problem(raw, f"{name}:{lineno}", exc)) from None
            if type(row) is not dict:
                raise InputError(f"{name}:{lineno}: expected a JSON object, got {_json_type(row)}")
            if len(raw) > 2 * MAX_NESTING and _too_deep(raw, row):
                raise InputError(f"{name}:{lineno}: {TOO_DEEP}")
            yield f"{name}:{lineno}", row


def parse_json_line(raw: bytes, where: str) -> dict[str, Any]:
    """One .jsonl line as a JSON object, or the error _iter_jsonl_rows gives for it (which inlines
    these lines: it runs once per row of corpora with millions of rows)."""
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InputError(_json_problem(raw, where, exc)) from None
    if type(row) is not dict:
        raise InputError(f"{where}: expected a JSON object, got {_json_type(row)}")
    if len(raw) > 2 * MAX_NESTING and _too_deep(raw, row):
        raise InputError(f"{where}: {TOO_DEEP}")
    return row


# Rows nested deeper than this are refused. orjson parses up to 1,024 levels, but Python's own
# recursion (json, repr, copies of a row) fails near 1,000 levels, PyYAML's near 500, and orjson
# writes no more than 254: a row that deep is never data, and left in it ends in a RecursionError
# wherever it is next walked.
MAX_NESTING = 254
TOO_DEEP = f"nested too deeply (arrays or objects more than {MAX_NESTING} levels deep)"


def _too_deep(raw: bytes, row: Any) -> bool:
    """Whether ``row`` nests arrays/objects more than :data:`MAX_NESTING` levels deep. Only lines
    with that many brackets can (callers look at lines longer than twice as many bytes only), and
    orjson, which cannot write what is deeper than that, tells at C speed; a row it refuses for
    another reason is measured."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_NESTING:
        return False
    try:
        orjson.dumps(row)
    except TypeError:  # orjson.JSONEncodeError: "Recursion limit reached", or something else
        return nesting(row) > MAX_NESTING
    return False


def nesting(value: Any, limit: int = MAX_NESTING) -> int:
    """How deep arrays/objects (lists/dicts) are nested in ``value`` (0 for a scalar), counted up to
    ``limit + 1``; without recursion (``value`` may be nested deeper than Python's recursion limit),
    and each container looked at once per depth (a YAML recipe's aliases may share a container, or
    hold one inside itself)."""
    deepest = 0
    seen: set[tuple[int, int]] = set()
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        kind = type(item)
        if (kind is not dict and kind is not list) or (id(item), depth) in seen:
            continue
        if depth > limit:
            return depth
        seen.add((id(item), depth))
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in (item.values() if kind is dict else item))
    return deepest


def _json_problem(raw: bytes, where: str, error: ValueError | None = None) -> str:
    """Say why a line failed to parse (``error``: orjson's error), in the words of the standard
    json module; a line nested too deeply for either parser says so."""
    if error is not None and "depth limit" in str(error):
        return f"{where}: {TOO_DEEP}"
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{where}: not valid UTF-8 (byte {exc.start + 1} of the line)"
    try:
        json.loads(line)
    except json.JSONDecodeError as exc:
        return f"{where}: invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return f"{where}: {TOO_DEEP}"
    except ValueError:  # a number of more digits than Python converts (4,300): orjson said what
        pass
    if isinstance(error, json.JSONDecodeError):
        return f"{where}: invalid JSON: {error.msg} (column {error.colno})"
    return f"{where}: invalid JSON"


def _json_type(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number"}.get(type(value), "null")


def _iter_parquet_rows(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """The rows of a parquet file, read a record batch at a time (a corpus is never whole in memory)."""
    import pyarrow.parquet as pq

    index = 0
    try:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=DOCUMENT_BATCH):
            for row in batch.to_pylist():
                index += 1
                yield f"{path}:row {index}", row
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise InputError(f"{path}: cannot read parquet: {exc}") from None


def hf_dataset(spec: str) -> Any:
    """The ``datasets.Dataset`` of ``hf:NAME[:CONFIG][@SPLIT]`` (split ``train`` by default; needs
    the network, or a local cache); an InputError naming the spec when it cannot be loaded."""
    from datasets import load_dataset

    body, _, split = spec[3:].partition("@")
    name, _, config = body.partition(":")
    try:
        return load_dataset(name, config or None, split=split or "train")
    except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; each means "cannot load it"
        raise InputError(cannot_load(spec, name, exc, "dataset")) from None


def _iter_hf_rows(spec: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for index, row in enumerate(hf_dataset(spec), start=1):  # loaded when the rows are first asked for
        yield f"{spec}:row {index}", dict(row)


def read_rows(source: str | Path) -> list[tuple[str, dict[str, Any]]]:
    rows = list(iter_rows(source))
    if not rows:
        raise InputError(f"{source}: no rows (an empty input is an error, not an empty output)")
    return rows


def _text_field(row: dict[str, Any], key: str, where: str, *, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None:
        if required:
            raise InputError(f'{where}: missing field "{key}"')
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and key == "id":
        return str(value)
    if not isinstance(value, str):
        raise InputError(f'{where}: field "{key}" must be a string, got {type(value).__name__}')
    return value


def _string_list(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        if all(type(v) is str for v in value):
            return value  # the common case: no copy, no str() per item
        if all(isinstance(v, (str, int, float)) for v in value):
            return [str(v) for v in value]
    raise InputError(f'{where}: field "{key}" must be a string or a list of strings')


def _unique_id(row: dict[str, Any], where: str, seen: dict[str, str]) -> str:
    """The row's ``id``, an error if an earlier row had it (``seen`` maps ids to locations)."""
    row_id = _text_field(row, "id", where)
    assert row_id is not None
    if row_id in seen:
        raise InputError(f'{where}: duplicate id "{row_id}" (first at {seen[row_id]})')
    seen[row_id] = where
    return row_id


def _question(row: dict[str, Any], where: str) -> str:
    question = _text_field(row, "question", where) or ""
    if not question.strip():
        raise InputError(f'{where}: field "question" is empty')
    return question


# --- documents ------------------------------------------------------------------------------


def read_documents(source: str | Path) -> tuple[Documents, ReadStats]:
    """A small document collection read whole, as Python strings (:func:`document_batches`
    concatenated)."""
    stats = ReadStats()
    documents = Documents()
    for batch in document_batches(source, stats):
        for column, values in zip(DOCUMENT_COLUMNS, (documents.ids, documents.titles, documents.texts), strict=True):
            values += batch.column(column).to_pylist()
    return documents, stats


def document_batches(source: str | Path, stats: ReadStats, batch_rows: int = DOCUMENT_BATCH) -> Iterator[Any]:
    """A document collection as Arrow record batches (``id``, ``title``, ``text``) of at most
    ``batch_rows`` rows or :data:`DOCUMENT_BATCH_CHARS` characters of text (long documents, such as
    books, make fewer rows a batch), so that a corpus of millions of documents is never held as a
    Python string per document. The source is a folder, a .txt/.md file, or rows with ``id`` and
    ``text`` (``title`` optional) or FlashRAG/DPR ``contents`` whose first line is the title.

    Documents with no text are skipped and counted in ``stats``; duplicate ids and an empty
    collection are errors, raised after the last batch (ids are checked once, as Arrow columns).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    batch = Documents()
    all_ids: list[Any] = []  # every document's id, skipped ones too, as Arrow arrays
    empty_ids: list[str] = []  # documents without text, skipped, but their ids may not repeat either
    count = skipped = chars = 0

    def take() -> Any:
        """The batch as Arrow; its lists emptied in place (the .jsonl reader holds them)."""
        nonlocal count, skipped, chars
        chars = 0
        arrow = batch.to_batch()
        all_ids.extend((arrow.column("id"), pa.array(empty_ids, pa.string())))
        count, skipped = count + len(batch), skipped + len(empty_ids)
        for column in (batch.ids, batch.titles, batch.texts, empty_ids):
            column.clear()
        return arrow

    for file, prefix in _document_files(source, stats):
        if file.name.endswith(JSONL_SUFFIXES):
            for _ in _read_document_lines(file, batch, empty_ids, batch_rows):
                yield take()
            chars = sum(map(len, batch.texts))  # the file's last rows stay in the batch
            continue
        for _, doc in _documents_of(file, prefix):
            if doc.text and not doc.text.isspace():
                batch.add(doc)
                chars += len(doc.text)
                if len(batch) >= batch_rows or chars >= DOCUMENT_BATCH_CHARS:
                    yield take()
            else:
                empty_ids.append(doc.id)
    last = take()
    if len(last):
        yield last
    ids = pa.chunked_array(all_ids, pa.string())
    if pc.count_distinct(ids).as_py() < len(ids):  # where the repeated id is is found again only then
        raise _first_duplicate_id(source)
    if skipped:
        stats.skip(DOCUMENT_SKIP_REASONS[0], skipped)
    if not count:
        raise InputError(f"{source}: no documents with text (an empty corpus cannot be used)")


def _documents_of(file: Path, prefix: str) -> Iterator[tuple[str, Document]]:
    """``(where, document)`` for each row of a row file, or the one document of a text file."""
    if str(file).startswith("hf:") or file.name.endswith(ROW_SUFFIXES):
        for where, row in iter_rows(file):
            yield where, _document_from_row(row, where)
    else:
        yield str(file), _document_from_file(file, prefix)


def _first_duplicate_id(source: str | Path) -> InputError:
    """The error for the first row whose id an earlier row had (read again, row by row)."""
    seen: dict[str, str] = {}
    for file, prefix in _document_files(source, ReadStats()):
        for where, doc in _documents_of(file, prefix):
            first = seen.setdefault(doc.id, where)
            if first is not where:
                return InputError(f'{where}: duplicate document id "{doc.id}" (first at {first})')
    return InputError(f"{source}: duplicate document ids")  # the files changed while being read


def _read_document_lines(file: Path, documents: Documents, empty_ids: list[str], batch_rows: int) -> Iterator[None]:
    """Append the rows of a .jsonl file to ``documents``, yielding whenever it holds ``batch_rows``
    or :data:`DOCUMENT_BATCH_CHARS` characters of text (the caller empties it). Corpora have
    millions of rows, so the loop is kept tight: in the common case (``id``, ``text`` and ``title``
    strings) no generator, object or call stands between a parsed row and the columns."""
    ids, titles, texts = documents.ids, documents.titles, documents.texts
    chars = sum(map(len, texts))  # the batch may hold the previous file's last rows
    with numbered_lines(file) as lines:
        for lineno, raw in lines:
            if raw.isspace():
                continue
            try:
                row = orjson.loads(raw)
            except orjson.JSONDecodeError:
                row = None
            if type(row) is not dict:
                row = parse_json_line(raw, f"{file}:{lineno}")  # raises, saying why
            doc_id, text, title = row.get("id"), row.get("text"), row.get("title")
            if not (type(doc_id) is str and type(text) is str and (title is None or type(title) is str)):
                doc = _document_from_row(row, f"{file}:{lineno}")
                doc_id, text, title = doc.id, doc.text, doc.title
            if text and not text.isspace():
                ids.append(doc_id)
                titles.append(title or "")
                texts.append(text)
                chars += len(text)
                if len(ids) >= batch_rows or chars >= DOCUMENT_BATCH_CHARS:
                    yield
                    chars = 0
            else:
                empty_ids.append(doc_id)


def visible_files(folder: Path) -> list[Path]:
    """Files below ``folder`` in sorted order, skipping hidden files and hidden folders."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _document_files(source: str | Path, stats: ReadStats) -> Iterator[tuple[Path, str]]:
    """Files making up a collection, in a fixed order, each with the id prefix of its documents."""
    if str(source).startswith("hf:"):
        yield Path(str(source)), ""
        return
    path = Path(source)
    if path.is_file():
        yield path, ""
        return
    if not path.is_dir():
        raise InputError(f"{path}: no such file or folder")
    for file in visible_files(path):
        relative = file.relative_to(path)
        if file.name.endswith(DOCUMENT_SUFFIXES):
            yield file, relative.as_posix()
        elif file.name.endswith(ROW_SUFFIXES):
            # Ids of rows from several row files could clash; rows keep their own ids.
            yield file, ""
        else:
            stats.skip(DOCUMENT_SKIP_REASONS[1])


def _document_from_file(file: Path, doc_id: str) -> Document:
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{file}: not valid UTF-8 (byte {exc.start})") from None
    title = file.stem
    first_line = text.lstrip().split("\n", 1)[0]
    if file.suffix == ".md" and first_line.startswith("# "):
        title = first_line[2:].strip()
    return Document(id=doc_id or file.name, title=title, text=text)


def _document_from_row(row: dict[str, Any], where: str) -> Document:
    """Any row that is not plain ``{"id": str, "text": str, "title": str}`` (read_documents does those)."""
    doc_id = _text_field(row, "id", where)
    assert doc_id is not None
    if "text" in row:
        text = _text_field(row, "text", where) or ""
        title = _text_field(row, "title", where, required=False) or ""
    elif "contents" in row:
        contents = _text_field(row, "contents", where) or ""
        first, _, rest = contents.partition("\n")
        title, text = first.strip().strip('"'), rest
    else:
        raise InputError(f'{where}: missing field "text" (or FlashRAG "contents")')
    return Document(id=doc_id, title=title, text=text)


# --- QA sets --------------------------------------------------------------------------------

ANSWER_KEYS = ("answers", "answer", "golden_answers")


def read_qa(source: str | Path) -> list[QARow]:
    """Read a QA set. ``answer`` and ``golden_answers`` are aliases of ``answers``."""
    rows: list[QARow] = []
    seen: dict[str, str] = {}
    for where, row in read_rows(source):
        qid = _unique_id(row, where, seen)
        question = _question(row, where)
        key = next((k for k in ANSWER_KEYS if row.get(k) is not None), None)
        if key is None:
            raise InputError(f'{where}: missing field "answers" (or "answer", "golden_answers")')
        answers = [a for a in _string_list(row[key], key, where) if a.strip()]
        if not answers:
            raise InputError(f'{where}: field "{key}" has no non-empty answer')
        doc_ids = row.get("doc_ids")
        if doc_ids is not None:
            doc_ids = _string_list(doc_ids, "doc_ids", where)
        context = _text_field(row, "context", where, required=False)
        rows.append(QARow(qid, question, answers, doc_ids or None, context or None, where))
    return rows


# --- KG questions (RoG) -------------------------------------------------------------------


@dataclass(slots=True)
class KGQuestion:
    id: str
    question: str
    answers: list[str]
    q_entity: list[str]
    a_entity: list[str]
    graph: list[Any] | None  # [[h, r, t], ...], or None to use the global KG
    where: str = ""


def iter_kg_questions(source: str | Path) -> Iterator[KGQuestion]:
    """RoG question rows (``rmanluo/RoG-webqsp`` / ``RoG-cwq`` as they are), one at a time: each
    row carries a graph of thousands of triples, so rows are not all held in memory at once.
    ``answers`` is accepted as an alias of ``answer``; ``graph`` is optional."""
    seen: dict[str, str] = {}
    empty = True
    for where, row in iter_rows(source):
        empty = False
        yield kg_question(row, where, seen)
    if empty:
        raise InputError(f"{source}: no rows (an empty input is an error, not an empty output)")


def kg_question(row: dict[str, Any], where: str, seen: dict[str, str]) -> KGQuestion:
    """One RoG question row, checked (``seen`` maps the ids read so far to where they were)."""
    qid = _unique_id(row, where, seen)
    question = _question(row, where)
    key = "answer" if row.get("answer") is not None else "answers"
    if row.get(key) is None:
        raise InputError(f'{where}: missing field "answer"')
    lists = {k: _string_list(row.get(k) or [], k, where) for k in ("q_entity", "a_entity")}
    for k in ("q_entity", "a_entity"):
        if k not in row:
            raise InputError(f'{where}: missing field "{k}"')
    graph = row.get("graph")
    if graph is not None and not isinstance(graph, list):
        raise InputError(f'{where}: field "graph" must be a list of [head, relation, tail] triples')
    answers = _string_list(row[key], key, where)
    return KGQuestion(qid, question, answers, lists["q_entity"], lists["a_entity"], graph, where)
