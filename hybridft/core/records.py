"""The shape of each record kind that ``build-data`` writes and ``finetune`` / ``eval`` read back,
declared once: every reader checks rows against the same :class:`Schema`, so a damaged or foreign
file is an exit-2 error naming the file, line (or record) and field, never a ``KeyError`` later.

Kinds: ``RAFT_RECORD``, ``ROG_RECORD`` and ``INVAR_RECORD`` (``records.jsonl``), the trainer
rows of train/eval.jsonl: ``MESSAGES_ROW``, ``PROMPT_COMPLETION_ROW`` (read by the sft trainer) and
``RETRIEVAL_ROW`` (``build-data invar``'s ``retrieval`` format, read by the invar-retriever trainer),
and the rows of ``eval --predictions``: ``RAFT_PREDICTION``, ``ROG_PREDICTION``, ``RANKING``. The
readers of inputs (documents, QA sets, KG questions) are in :mod:`hybridft.core.readers`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from hybridft.core.errors import InputError

# How many problems one error lists before it stops reading.
MAX_PROBLEMS = 20


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def is_texts(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_documents(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(d, dict) and isinstance(d.get("id"), str) and isinstance(d.get("text"), str) for d in value
    )


def _is_paths(value: Any) -> bool:
    return isinstance(value, list) and all(is_texts(path) or _is_triples(path) for path in value)


def _is_triples(value: Any) -> bool:
    return isinstance(value, list) and all(is_texts(triple) and len(triple) == 3 for triple in value)


def _is_messages(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in value
    )


def _is_ranking(value: Any) -> bool:
    return is_texts(value) and len(set(value)) == len(value)


def _is_rankings(value: Any) -> bool:
    return isinstance(value, list) and all(_is_ranking(ranking) for ranking in value)


def _is_numbers(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)


# A field's kind: the test of its value and the words an error uses for what was expected.
KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "text": (_is_text, "a string"),
    "texts": (is_texts, "a list of texts"),
    "documents": (_is_documents, 'a list of {"id", "text"} documents'),
    "paths": (_is_paths, "a list of paths (lists of relations or of [h, r, t] triples)"),
    "numbers": (_is_numbers, "a list of numbers"),
    "text or texts": (lambda value: _is_text(value) or is_texts(value), "a string or a list of strings"),
    "ranking": (_is_ranking, "a list of document ids (strings), each once"),
    "rankings": (_is_rankings, "a list of rankings (lists of document ids, each once)"),
    "messages": (_is_messages, 'a list of {"role", "content"} messages'),
    "bool": (lambda value: isinstance(value, bool), "true or false"),
}


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # a key of KINDS
    required: bool = True
    non_empty: bool = False
    nullable: bool = False
    choices: tuple[str, ...] = ()
    why: str = ""  # added to a choices error: what the readers of this kind expect


@dataclass(frozen=True)
class Schema:
    """The fields of one record kind, and any check across fields (returns a problem or None)."""

    kind: str
    fields: tuple[Field, ...]
    across: Callable[[dict[str, Any]], str | None] | None = None

    def problem(self, row: dict[str, Any]) -> str | None:
        """What is wrong with ``row`` (the first problem), or None."""
        for f in self.fields:
            if f.name not in row:
                if f.required:
                    return f'missing field "{f.name}"'
                continue
            value = row[f.name]
            if value is None and f.nullable:
                continue
            test, expected = KINDS[f.kind]
            if not test(value):
                return f'field "{f.name}" must be {expected}{" or null" if f.nullable else ""}'
            if f.non_empty and not value:
                return f'field "{f.name}" must not be empty'
            if f.choices and value not in f.choices:
                expected = " or ".join(map(repr, f.choices))
                return f'field "{f.name}" is {value!r}; expected {expected}{f.why}'
        return self.across(row) if self.across else None

    def checked(self, rows: Iterable[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """The rows, each checked; InputError listing every problem (up to MAX_PROBLEMS), each
        prefixed with its ``where`` (``file:line`` or the record)."""
        kept: list[dict[str, Any]] = []
        problems: list[str] = []
        for where, row in rows:
            problem = self.problem(row)
            if problem is None:
                kept.append(row)
                continue
            problems.append(f"{where}: {problem}")
            if len(problems) >= MAX_PROBLEMS:
                raise InputError(*problems, f"(stopped after {MAX_PROBLEMS} problems)")
        if problems:
            raise InputError(*problems)
        return kept


def _teacher_scores_fit(row: dict[str, Any]) -> str | None:
    scores = row.get("teacher_scores")
    count = len(row["positives"]) + len(row.get("negatives", []))
    if scores is not None and len(scores) != count:
        return f'"teacher_scores" has {len(scores)} values for {count} positives + negatives'
    return None


COMMON = (Field("id", "text", non_empty=True), Field("split", "text"))

RAFT_RECORD = Schema(
    "raft",
    (
        *COMMON,
        Field("question", "text"),
        Field("answers", "texts", non_empty=True),
        Field("docs", "documents"),
        Field("oracles", "documents"),
        Field("cot_answer", "text", required=False, nullable=True),
        Field("oracle_doubtful", "bool", required=False),  # --doubtful-oracles flag
    ),
)

ROG_RECORD = Schema(
    "rog",
    (
        *COMMON,
        Field("source_id", "text"),
        Field("task", "text"),
        Field("question", "text"),
        Field("q_entity", "texts"),
        Field("answers", "texts"),
        Field("relation_paths", "paths", required=False),
        Field("reasoning_paths", "paths", required=False),
    ),
)

# Retrieval-stage records (eval retrieval reads these; eval rag reads their questions).
INVAR_RECORD = Schema(
    "invar",
    (
        Field(
            "stage", "text", required=False, choices=("retrieval",), why=" (only retrieval-stage records are read back)"
        ),
        *COMMON,
        Field("query", "text"),
        Field("answers", "texts", non_empty=True),
        Field("variants", "texts", required=False),
        Field("positives", "documents"),
        Field("negatives", "documents"),
        Field("oracle_doubtful", "bool", required=False),  # --doubtful-oracles flag
    ),
)

# Generation-stage records: question + retrieved documents -> answer (eval rag reads their questions).
INVAR_GENERATION_RECORD = Schema(
    "invar generation",
    (*COMMON, Field("query", "text"), Field("answers", "texts", non_empty=True), Field("docs", "documents")),
)

RETRIEVAL_ROW = Schema(
    "retrieval row",
    (
        Field("query", "text"),
        Field("positives", "texts", non_empty=True),
        Field("negatives", "texts", required=False),
        Field("variants", "texts", required=False),
        Field("teacher_scores", "numbers", required=False, nullable=True),
    ),
    _teacher_scores_fit,
)


def _ends_with_an_answer(row: dict[str, Any]) -> str | None:
    messages = row["messages"]
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        return "the last message must be the assistant's answer, after at least one other turn"
    return None


MESSAGES_ROW = Schema("messages row", (Field("messages", "messages", non_empty=True),), _ends_with_an_answer)

PROMPT_COMPLETION_ROW = Schema("prompt-completion row", (Field("prompt", "text"), Field("completion", "text")))

TRAINER_ROWS = {"messages": MESSAGES_ROW, "prompt-completion": PROMPT_COMPLETION_ROW, "retrieval": RETRIEVAL_ROW}

RECORDS = {schema.kind: schema for schema in (RAFT_RECORD, ROG_RECORD, INVAR_RECORD)}

# What `eval --predictions` reads, keyed by record id: a RAFT answer, RoG answers (a string split
# on newlines, or a list), an `eval retrieval` ranking of document ids with one per query variant.
KEY = Field("id", "text", non_empty=True)
RAFT_PREDICTION = Schema("raft prediction", (KEY, Field("prediction", "text")))
ROG_PREDICTION = Schema("rog prediction", (KEY, Field("prediction", "text or texts")))
RANKING = Schema(
    "ranking", (KEY, Field("ranking", "ranking"), Field("variant_rankings", "rankings", required=False, nullable=True))
)


def question_schema(row: dict[str, Any]) -> Schema | None:
    """The schema of a record that holds a question with gold answers (RAFT, Invar-RAG of either
    stage), or None for other kinds."""
    if row.get("kind") == "raft":
        return RAFT_RECORD
    if row.get("kind") == "invar":
        return INVAR_GENERATION_RECORD if row.get("stage") == "generation" else INVAR_RECORD
    return None
