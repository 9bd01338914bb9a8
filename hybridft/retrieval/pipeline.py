"""The RAG system at use time: a saved index ranks the corpus for each question, the top-k chunks
are rendered as the model's training rows were (the RAFT prompt, or the Invar-RAG generation
prompt), and the model answers them in batches. ``eval rag`` scores it; ``ask`` prints it.

Invar-RAG runs on one backbone, as the paper means it: an invar-generator adapter and the
invar-retriever it was trained over are attached to one copy of the base model, and the active
adapter switches between retrieval (the retriever) and generation (the generator).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybridft.core.errors import UsageError
from hybridft.core.generation import ChatModel, trained_on_chat
from hybridft.core.readers import run_record
from hybridft.core.render import invar_generation_prompt, raft_prompt
from hybridft.retrieval.index import SavedIndex, corpus_index, read_manifest, retriever_kind

PROMPTS = ("auto", "raft", "invar")
RETRIEVER_ADAPTER, GENERATOR_ADAPTER = "retriever", "generator"


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
    trainer = (run_record(adapter).get("config") or {}).get("trainer") if adapter else None
    return "invar" if trainer == "invar-generator" else "raft"


def render_prompt(style: str, question: str, chunk_texts: list[str]) -> str:
    docs = [{"text": text} for text in chunk_texts]
    if style == "invar":
        return invar_generation_prompt({"docs": docs, "query": question})
    return raft_prompt({"docs": docs, "question": question})


def trained_over(adapter: str | None) -> str | None:
    """The retriever run an invar-generator run was trained over (None for any other run)."""
    run = run_record(adapter) if adapter else {}
    if (run.get("config") or {}).get("trainer") != "invar-generator":
        return None
    found = (run.get("retriever") or {}).get("dir")
    return found if isinstance(found, str) else None


def load_invar_pair(retriever_run: str, generator_run: str, model: str | None) -> tuple[ChatModel, Any]:
    """The base model loaded once with the retriever adapter and the generator adapter trained over
    it: (the generator as a ChatModel, the retriever), each making its adapter active before use."""
    from hybridft.core.models import load_for_inference
    from hybridft.retrieval.llm_index import Retriever, fingerprint, read_settings

    retriever_dir, generator_dir = Path(retriever_run), Path(generator_run)
    over = trained_over(generator_run)
    if over is None or Path(over).resolve() != retriever_dir.resolve():
        raise UsageError(
            f"adapter={generator_run}: trained over retriever {over}, not {retriever_run}; one backbone serves an "
            "invar-generator with the invar-retriever it was trained over"
        )
    settings = read_settings(retriever_dir)
    base = model or settings["model"]
    network, tokenizer = load_for_inference(
        base,
        adapter=retriever_dir,
        adapter_name=RETRIEVER_ADAPTER,
        tokenizer_from=generator_dir,
        what=f"retriever={retriever_run}",
    )
    network.load_adapter(str(generator_dir), adapter_name=GENERATOR_ADAPTER)
    network.eval()
    name = f"adapter {retriever_dir.name}"
    retriever = Retriever(network, tokenizer, settings, fingerprint(retriever_dir, settings), name, RETRIEVER_ADAPTER)
    name = f"{base} + {retriever_run} + {generator_run}"
    chat = ChatModel(network, tokenizer, name, GENERATOR_ADAPTER, trained_on_chat(run_record(generator_dir)))
    return chat, retriever


def load_system(
    *,
    index: str | None,
    docs: str | None,
    retriever: str,
    chunking: dict[str, Any],
    model: str | None,
    adapter: str | None,
) -> tuple[ChatModel, SavedIndex]:
    """The model and the index a RAG command runs. When the adapter is an invar-generator and the
    retriever (``--retriever RUN_DIR``, or the run the ``--index`` was built with) is the one it
    was trained over, both share one base model; otherwise each loads what it needs."""
    from hybridft.core.generation import load_generator

    run = None
    if index:
        identity = read_manifest(Path(index))["retriever"]
        run = identity.get("run") if identity.get("kind") == "llm" else None
    elif retriever_kind(retriever) == "llm":
        run = retriever
    over = trained_over(adapter)
    if run is not None and adapter is not None and over is not None and Path(over).resolve() == Path(run).resolve():
        chat, llm = load_invar_pair(run, adapter, model)
        return chat, corpus_index(index, docs, retriever, chunking, llm=llm)
    return load_generator(model, adapter), corpus_index(index, docs, retriever, chunking)


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
