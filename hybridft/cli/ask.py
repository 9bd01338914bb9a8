"""``hybridft ask``: answer questions with the RAG system — a saved index retrieves, the model
(base, or with a finetune adapter) answers from the retrieved chunks."""

from __future__ import annotations

import json
import sys
from typing import Any

from hybridft.cli.common import EXIT_OK, options_command
from hybridft.core.errors import UsageError
from hybridft.core.options import Option
from hybridft.core.progress import log
from hybridft.retrieval.pipeline import PROMPTS

USAGE = """\
usage: hybridft ask [QUESTION] --index INDEX_DIR [--adapter RUN] [--retriever RUN_DIR] [--model M] [--k 5] [--json]

Answer QUESTION from the top-k chunks of INDEX_DIR (written by `hybridft index`), prompted as the
adapter was trained. Prints the answer and the chunks it was given (id, title, score).
Without QUESTION, reads one question per line from stdin and writes one JSON line per answer
({"question", "answer", "chunks": [{"id", "title", "score"}]}), loading the model once.
An invar-generator adapter and the invar-retriever it was trained over (the run INDEX_DIR was built
with) share one copy of the base model.

  --json     print the answer as one JSON document
  --debug    show tracebacks
"""

OPTIONS = [
    Option("question", "str", None, "the question (default: one per line from stdin)"),
    Option("index", "path", None, "a folder written by `hybridft index`", required=True),
    Option("model", "str", None, "base model (hub id, folder, or tiny); default: the adapter's base"),
    Option("adapter", "path", None, "a finetune run folder (its PEFT adapter); none: the base model"),
    Option("retriever", "path", None, "the invar-retriever run INDEX_DIR was built with (checked against it)"),
    Option("k", "int", 5, "chunks given to the model", minimum=1),
    Option("prompt", "str", "auto", "auto: as the adapter was trained (invar-generator or RAFT)", choices=PROMPTS),
    Option("batch_size", "int", 8, "questions generated together (stdin)", minimum=1),
    Option("max_new_tokens", "int", 128, "longest answer", minimum=1),
]


def check(config: dict[str, Any]) -> list[str]:
    if not config["model"] and not config["adapter"]:
        return ["give --model (the base model alone) and/or --adapter RUN_DIR"]
    return []


def main(tokens: list[str]) -> int:
    parsed = options_command(tokens, OPTIONS, check, name="ask", usage=USAGE, positional="question")
    if parsed is None:
        return EXIT_OK
    config, control = parsed
    from pathlib import Path

    from hybridft.retrieval.index import checked_manifest
    from hybridft.retrieval.pipeline import answer, chunk_rows, load_system, prompt_style, retrieve

    checked_manifest(Path(config["index"]), retriever=config["retriever"])  # before any model loads
    if config["question"] is not None:
        questions = [config["question"]]
    else:
        questions = [line.strip() for line in sys.stdin if line.strip()]
    if not questions or not all(questions):
        raise UsageError("no question: give QUESTION, or one question per line on stdin")
    model, index = load_system(
        index=config["index"],
        docs=None,
        retriever=config["retriever"] or "bm25",
        chunking={},
        model=config["model"],
        adapter=config["adapter"],
    )
    k = min(config["k"], len(index.chunks))
    if k < config["k"]:  # said, as eval rag counts it in skipped.k_above_chunks
        log(f"k={config['k']}: the index holds {len(index.chunks)} chunks; answering from all {k}")
    retrieved = retrieve(index, questions, k)
    style = prompt_style(config["prompt"], config["adapter"])
    answers = answer(
        model,
        index,
        questions,
        retrieved,
        k,
        style,
        batch_size=config["batch_size"],
        max_new_tokens=config["max_new_tokens"],
    )
    rows = [
        {"question": q, "answer": a, "chunks": chunk_rows(index, found, k)}
        for q, a, found in zip(questions, answers, retrieved, strict=True)
    ]
    if config["question"] is None:  # stdin: one JSON line per question
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    elif control.get("json"):
        print(json.dumps(rows[0], ensure_ascii=False, indent=2))
    else:
        print(rows[0]["answer"])
        for chunk in rows[0]["chunks"]:
            print(f"  [{chunk['score']:.4f}] {chunk['id']}  {chunk['title']}")
    return EXIT_OK
