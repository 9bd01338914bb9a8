"""Every prompt a generator is sent, in one place to review.

A prompt is a system message and a user template filled with ``str.format``. Its sha256 (of the
system text and the template) is part of every cache key and, with the text, of the manifest, so
editing a prompt here never reuses an item written for the old wording.

The RAFT prompts follow the answer format of the RAFT paper (arXiv 2403.10131) and gorilla's
raft.py: reasoning that copies the oracle's sentences between ``##begin_quote##`` and
``##end_quote##``, then ``<ANSWER>: answer`` on the last line. The wording is ours.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Prompt:
    name: str
    system: str
    user: str  # a str.format template

    @property
    def sha256(self) -> str:
        return hashlib.sha256(f"{self.system}\x00{self.user}".encode()).hexdigest()

    def messages(self, **fields: Any) -> list[dict[str, str]]:
        """The chat messages for one item."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user.format(**fields)}]

    def manifest(self) -> dict[str, str]:
        return {"sha256": self.sha256, "system": self.system, "user": self.user}


QUESTIONS = Prompt(
    "questions",
    "You write questions for a reading-comprehension dataset.",
    "Write {n} different questions that the text below answers. Each question must be answerable "
    "from the text alone, name what it asks about instead of saying 'the text' or 'the document', "
    "and have a short answer found in the text.\n"
    "Reply with the {n} questions only, one per line, without numbering and without answers.\n\n"
    "Text:\n{text}",
)

COT_ANSWER = Prompt(
    "cot_answer",
    "You answer questions from a given context and show your reasoning.",
    "Question: {question}\n\nContext:\n{context}\n\n"
    "Answer the question from the context. First explain step by step how the context leads to the "
    "answer, starting with ##Reason: and copying each sentence of the context you rely on word for "
    "word between ##begin_quote## and ##end_quote##. Then give the answer, as short as possible, on "
    "the last line, in the form\n<ANSWER>: answer",
)

EXPLAIN = Prompt(
    "explain",
    "You explain how facts from a knowledge graph answer a question.",
    "Reasoning paths:\n{paths}\n\nQuestion: {question}\nAnswers: {answers}\n\n"
    "Explain in a few sentences how the reasoning paths lead to the answers. Name every answer. "
    "Use only facts stated in the reasoning paths.",
)

REWORD = Prompt(
    "reword",
    "You reword search queries.",
    "Reword this search query so that it asks for exactly the same thing in other words. Keep every "
    "name, number and date. Reply with the reworded query only.\n\nQuery: {query}",
)

ORACLE_JUDGE = Prompt(
    "oracle_judge",
    "You check whether a passage answers a question.",
    "Question: {question}\n\nPassage:\n{passage}\n\n"
    "Does the passage itself answer the question (not merely mention the same name or number)? "
    "Reply with yes or no only.",
)

PROMPTS: dict[str, Prompt] = {p.name: p for p in (QUESTIONS, COT_ANSWER, EXPLAIN, REWORD, ORACLE_JUDGE)}
