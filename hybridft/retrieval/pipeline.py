"""The RAG system at use time: a saved index ranks the corpus for each question, the top-k chunks
are rendered as the model's training rows were (the RAFT prompt, or the Invar-RAG generation
prompt), and the model answers them in batches. ``eval rag`` scores it; ``ask`` prints it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybridft.core.errors import UsageError
from hybridft.core.generation import ChatModel
from hybridft.core.render import invar_generation_prompt, raft_prompt
from hybridft.retrieval.index import SavedIndex

PROMPTS = ("auto", "raft", "invar")


@dataclass
class Retrieved:
    """One question's top chunks: their indices in the index and their scores, best first."""

    indices: list[int]
    scores: list[float]


def prompt_style(choice: str, adapter: str | None) -> str:
    """``auto``: the invar-generator prompt for an adapter trained by that trainer, else RAFT's
    (sft and mix adapters, and the base model)."""
    if choice != "auto":
        return choice
    if adapter:
        try:
            run = json.loads((Path(adapter) / "run.json").read_text(encoding="utf-8"))
            if (run.get("config") or {}).get("trainer") == "invar-generator":
                return "invar"
        except (OSError, ValueError, AttributeError):
            pass  # load_generator says what is wrong with the run folder
    return "raft"


def render_prompt(style: str, question: str, chunk_texts: list[str]) -> str:
    docs = [{"text": text} for text in chunk_texts]
    if style == "invar":
        return invar_generation_prompt({"docs": docs, "query": question})
    return raft_prompt({"docs": docs, "question": question})


def retrieve(index: SavedIndex, questions: list[str], k: int) -> list[Retrieved]:
    """The top ``k`` chunks of the whole corpus for each question (``k`` above the number of chunks
    is cut to it)."""
    if not questions:
        return []
    indices, scores = index.search(questions, k)
    return [
        Retrieved([int(i) for i in row], [float(s) for s in score_row])
        for row, score_row in zip(np.asarray(indices), np.asarray(scores), strict=True)
    ]


def answer(
    model: ChatModel,
    index: SavedIndex,
    questions: list[str],
    retrieved: list[Retrieved],
    k: int,
    style: str,
    *,
    batch_size: int,
    max_new_tokens: int,
    description: str = "answering",
) -> list[str]:
    """The model's answer to each question from its first ``k`` retrieved chunks."""
    prompts = [
        render_prompt(style, question, [index.chunks.texts[i] for i in found.indices[:k]])
        for question, found in zip(questions, retrieved, strict=True)
    ]
    outputs = model.generate(prompts, description, batch_size=batch_size, max_new_tokens=max_new_tokens)
    return [o[0] for o in outputs]


def chunk_rows(index: SavedIndex, found: Retrieved, k: int) -> list[dict[str, Any]]:
    """The chunks a question was given: id, title, score (as ``ask`` prints them)."""
    chunks = index.chunks
    return [
        {"id": chunks.ids[i], "title": chunks.titles[i], "score": round(score, 6)}
        for i, score in zip(found.indices[:k], found.scores[:k], strict=True)
    ]


def parse_ks(values: list[str], option: str = "k") -> list[int]:
    """``--k 1,3,5`` as sorted distinct whole numbers at least 1."""
    try:
        ks = sorted({int(v) for v in values})
    except ValueError:
        raise UsageError(f"{option}={','.join(values)}: expected whole numbers like 1,3,5") from None
    if not ks or ks[0] < 1:
        raise UsageError(f"{option}={','.join(values)}: every value must be at least 1")
    return ks
