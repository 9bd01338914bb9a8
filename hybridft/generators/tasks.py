"""What the builders ask a generator for, and the checks its answers must pass.

Parsers and gates are pure functions (tested on hand-written answers); the ``write_*`` functions
send a batch through a :class:`~hybridft.generators.run.Generator` and return, per item, the
accepted text or None, with counts: ``items``, ``accepted``, ``failed`` (no answer from the model)
and ``rejected`` per reason. Nothing is dropped without being counted.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hybridft.core.answers import holds_answer
from hybridft.generators import prompts

if TYPE_CHECKING:
    from hybridft.generators.run import Generator

# "1.", "2)", "(3)", "-", "*", "•", "Q1:", "Question 2 -" before a question, possibly repeated.
_NUMBERING = re.compile(r"^(?:\s*(?:[-*•]|\(?\d{1,3}[.):]|(?:q|question)\s*\d{0,3}\s*[.:)-])\s*)+", re.IGNORECASE)
_QUOTE = re.compile(r"##begin_quote##(.*?)##end_quote##", re.DOTALL)
ANSWER_TAG = "<ANSWER>:"


def _squash(text: str) -> str:
    return " ".join(text.split())


def question_key(question: str) -> str:
    """What two questions share when they ask the same thing: case, spacing and final
    punctuation ignored."""
    return _squash(question).lower().rstrip("?.! ")


# --- RAFT questions ---------------------------------------------------------------------------


@dataclass
class ParsedQuestions:
    questions: list[str]
    duplicates: int = 0  # the same question again (case, spacing and final punctuation ignored)
    extra: int = 0  # questions past the count asked for
    skipped_lines: int = 0  # lines that are not questions: a preamble ending in ':', a lone word


def parse_questions(text: str, n: int) -> ParsedQuestions:
    """At most ``n`` distinct questions, one per line, numbering and bullets stripped."""
    parsed = ParsedQuestions([])
    seen: set[str] = set()
    for line in text.splitlines():
        question = _NUMBERING.sub("", line).strip().strip("*_`").strip()
        if len(question) > 1 and question[0] == question[-1] and question[0] in "\"'":
            question = question[1:-1].strip()
        if not question:
            continue
        if question.endswith(":") or len(question.split()) < 2:
            parsed.skipped_lines += 1
            continue
        key = question_key(question)
        if key in seen:
            parsed.duplicates += 1
        elif len(parsed.questions) == n:
            parsed.extra += 1
            seen.add(key)
        else:
            parsed.questions.append(_squash(question))
            seen.add(key)
    return parsed


# --- RAFT chain-of-thought answers -------------------------------------------------------------


def quotes_of(text: str) -> list[str]:
    """The ``##begin_quote##…##end_quote##`` spans of an answer."""
    return _QUOTE.findall(text)


@dataclass(frozen=True)
class CotCheck:
    """The final answer (text after the last ``<ANSWER>:``), or why the answer was rejected."""

    answer: str | None
    reason: str | None = None


def check_cot_answer(text: str, oracles: list[str]) -> CotCheck:
    """RAFT's answer format: at least one ``##begin_quote##…##end_quote##`` span, each found
    verbatim in one oracle (whitespace runs compared as one space), and a non-empty final
    ``<ANSWER>:`` line. Reasons: ``no_answer_tag``, ``empty_answer``, ``unbalanced_quote``,
    ``no_quote``, ``quote_not_in_oracle``."""
    if ANSWER_TAG not in text:
        return CotCheck(None, "no_answer_tag")
    final = text.rsplit(ANSWER_TAG, 1)[1].strip().split("\n", 1)[0].strip()
    if not final:
        return CotCheck(None, "empty_answer")
    if text.count("##begin_quote##") != text.count("##end_quote##"):
        return CotCheck(None, "unbalanced_quote")
    quotes = [_squash(q) for q in _QUOTE.findall(text)]
    if not quotes:
        return CotCheck(None, "no_quote")
    sources = [_squash(o) for o in oracles]
    if any(not quote or not any(quote in source for source in sources) for quote in quotes):
        return CotCheck(None, "quote_not_in_oracle")
    return CotCheck(final)


# --- RoG explanations and Invar-RAG rewordings ------------------------------------------------------


def check_explanation(text: str, answers: list[str]) -> str | None:
    """None when the explanation is usable, else the reason: ``empty``, ``names_no_answer``
    (no gold answer appears in it; see :mod:`hybridft.core.answers`)."""
    if not text.strip():
        return "empty"
    if not holds_answer(text, answers):
        return "names_no_answer"
    return None


_REWORD_LABEL = re.compile(r"^(?:reworded(?: query)?|query|rewording)\s*:\s*", re.IGNORECASE)


def parse_rewording(text: str, query: str) -> tuple[str | None, str | None]:
    """(the reworded query, None) or (None, reason): ``empty`` or ``same_as_query``. The first
    non-empty line is taken, without a label (``Reworded query:``) or surrounding quotes."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    line = _REWORD_LABEL.sub("", line).strip()
    if len(line) > 1 and line[0] == line[-1] and line[0] in "\"'":
        line = line[1:-1].strip()
    if not line:
        return None, "empty"
    if _squash(line).lower().rstrip("?.! ") == _squash(query).lower().rstrip("?.! "):
        return None, "same_as_query"
    return line, None


# --- oracle judgements ----------------------------------------------------------------------------

_VERDICT = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)


def parse_verdict(text: str) -> bool | None:
    """True for a reply that starts with "yes", False for "no" (case, quotes and markup
    ignored), None for anything else."""
    found = _VERDICT.match(text.strip())
    return None if found is None else found.group(1).lower() == "yes"


# --- batches through a generator ----------------------------------------------------------------


@dataclass
class TaskCounts:
    items: int = 0
    accepted: int = 0
    failed: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    extra: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "items": self.items,
            "accepted": self.accepted,
            "failed": self.failed,
            "rejected": dict(sorted(self.rejected.items())),
            **dict(sorted(self.extra.items())),
        }


def write_questions(gen: Generator, texts: Sequence[str], n: int) -> tuple[list[list[str]], TaskCounts]:
    """``n`` questions per text (fewer when the model gives fewer; counted as ``short``)."""
    outputs = gen.run(prompts.QUESTIONS, [{"n": n, "text": t} for t in texts], "writing questions")
    counts = TaskCounts(items=len(texts))
    questions: list[list[str]] = []
    for output in outputs:
        if output is None:
            counts.failed += 1
            questions.append([])
            continue
        parsed = parse_questions(output, n)
        counts.extra["questions"] += len(parsed.questions)
        counts.extra["duplicates_dropped"] += parsed.duplicates
        counts.extra["extra_dropped"] += parsed.extra
        counts.extra["lines_skipped"] += parsed.skipped_lines
        if not parsed.questions:
            counts.rejected["no_question"] += 1
        else:
            counts.accepted += 1
            if len(parsed.questions) < n:
                counts.extra["short"] += 1
        questions.append(parsed.questions)
    return questions, counts


def write_cot_answers(
    gen: Generator, items: list[tuple[str, list[str]]]
) -> tuple[list[tuple[str, str] | None], TaskCounts]:
    """(chain-of-thought answer, final answer) for each (question, oracle texts), or None when
    the model gave none or the quality gate (:func:`check_cot_answer`) rejected it."""
    inputs = [{"question": q, "context": "\n\n".join(oracles)} for q, oracles in items]
    outputs = gen.run(prompts.COT_ANSWER, inputs, "writing chain-of-thought answers")
    counts = TaskCounts(items=len(items))
    results: list[tuple[str, str] | None] = []
    for (_, oracles), output in zip(items, outputs, strict=True):
        if output is None:
            counts.failed += 1
            results.append(None)
            continue
        check = check_cot_answer(output, oracles)
        if check.answer is None:
            counts.rejected[check.reason or "rejected"] += 1
            results.append(None)
        else:
            counts.accepted += 1
            results.append((output.strip(), check.answer))
    return results, counts


def judge_passages(gen: Generator, items: list[tuple[str, str]]) -> tuple[list[bool], TaskCounts]:
    """For each (question, passage): whether the model says the passage answers the question.
    No reply, or one that is neither yes nor no (``unclear``), confirms nothing."""
    inputs = [{"question": question, "passage": passage} for question, passage in items]
    outputs = gen.run(prompts.ORACLE_JUDGE, inputs, "judging oracles")
    counts = TaskCounts(items=len(items))
    verdicts: list[bool] = []
    for output in outputs:
        verdict = None if output is None else parse_verdict(output)
        if output is None:
            counts.failed += 1
        elif verdict is None:
            counts.rejected["unclear"] += 1
        else:
            counts.accepted += 1
            counts.extra["confirmed" if verdict else "denied"] += 1
        verdicts.append(bool(verdict))
    return verdicts, counts


def write_explanations(gen: Generator, items: list[dict[str, Any]]) -> tuple[list[str | None], TaskCounts]:
    """RoG explanations: items hold ``question``, ``paths`` (rendered, one per line), ``answers``."""
    inputs = [{"question": i["question"], "paths": i["paths"], "answers": "; ".join(i["answers"])} for i in items]
    outputs = gen.run(prompts.EXPLAIN, inputs, "writing explanations")
    counts = TaskCounts(items=len(items))
    results: list[str | None] = []
    for item, output in zip(items, outputs, strict=True):
        reason = "failed" if output is None else check_explanation(output, item["answers"])
        if output is None:
            counts.failed += 1
        elif reason:
            counts.rejected[reason] += 1
        else:
            counts.accepted += 1
        results.append(output.strip() if output is not None and reason is None else None)
    return results, counts


def write_rewordings(gen: Generator, queries: list[str]) -> tuple[list[str | None], TaskCounts]:
    outputs = gen.run(prompts.REWORD, [{"query": q} for q in queries], "rewording queries")
    counts = TaskCounts(items=len(queries))
    results: list[str | None] = []
    for query, output in zip(queries, outputs, strict=True):
        if output is None:
            counts.failed += 1
            results.append(None)
            continue
        text, reason = parse_rewording(output, query)
        if text is None:
            counts.rejected[reason or "rejected"] += 1
        else:
            counts.accepted += 1
        results.append(text)
    return results, counts


# --- what the builders call -----------------------------------------------------------------------


def explain_records(
    records: list[dict[str, Any]], config: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any], dict[str, Any]]:
    """Fill the ``explanation`` of RoG's ``explain`` records; records without reasoning paths or
    whose explanation failed or was rejected are dropped (and counted). Returns the kept records,
    the counts and the manifest's ``generator`` section."""
    from hybridft.core.render import reasoning_paths_text
    from hybridft.generators.run import Generator

    explain = [r for r in records if r["task"] == "explain" and r["reasoning_paths"]]
    items = [
        {
            "question": r["question"],
            "paths": reasoning_paths_text(r),
            "answers": r["answers"],
        }
        for r in explain
    ]
    with Generator(config) as gen:
        texts, counts = write_explanations(gen, items)
    for record, text in zip(explain, texts, strict=True):
        record["explanation"] = text
    without_paths = sum(r["task"] == "explain" and not r["reasoning_paths"] for r in records)
    if without_paths:
        counts.rejected["no_reasoning_path"] += without_paths
        counts.items += without_paths
    kept = [r for r in records if r["task"] != "explain" or r["explanation"] is not None]
    return kept, counts.as_dict(), gen.manifest()
