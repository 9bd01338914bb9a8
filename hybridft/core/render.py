"""Records -> trainer rows and prompts: ``messages``, ``prompt-completion`` (both as TRL's
SFTTrainer takes them), ``raft-hf`` (the columns of gorilla's RAFT script) and ``retrieval`` (the
invar-retriever trainer's rows). The evaluations render their prompts with the same functions, so
a model is asked exactly as it was trained."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def render_chain(chain: Sequence[Sequence[str]], question_entities: list[str]) -> str:
    """``e0 -> r1 -> e1 <- r2 <- e2``: a step against an edge is drawn with reversed arrows so
    every fact reads true. The walk starts at the question entity the first triple touches."""
    first_head, _, first_tail = chain[0]
    current = first_tail if first_tail in question_entities and first_head not in question_entities else first_head
    parts = [current]
    for head, relation, tail in chain:
        if head == current:
            parts.append(f"-> {relation} -> {tail}")
            current = tail
        else:
            parts.append(f"<- {relation} <- {head}")
            current = head
    return " ".join(parts)


def documents_block(docs: list[dict[str, Any]]) -> str:
    """Every document as ``<DOCUMENT>text</DOCUMENT>``, one per line."""
    return "\n".join(f"<DOCUMENT>{doc['text']}</DOCUMENT>" for doc in docs)


def raft_prompt(record: dict[str, Any]) -> str:
    """The documents, then the question."""
    return f"{documents_block(record['docs'])}\n{record['question']}"


def invar_generation_prompt(record: dict[str, Any]) -> str:
    """Invar-RAG's generation stage: the retrieved documents, then the question (``query``)."""
    return (
        "Answer the question from the retrieved documents. Reply with the answer only.\n\n"
        f"{documents_block(record['docs'])}\n\nQuestion: {record['query']}"
    )


def raft_completion(record: dict[str, Any]) -> str:
    return record["cot_answer"] or f"<ANSWER>: {record['answers'][0]}"


def rog_plan(record: dict[str, Any]) -> tuple[str, str]:
    """Question -> ``<PATH>r1<SEP>r2</PATH>`` (the record's one relation path)."""
    prompt = (
        f"Give a relation path in the knowledge graph that leads to the answer of this question.\n{record['question']}"
    )
    return prompt, "<PATH>" + "<SEP>".join(record["relation_paths"][0]) + "</PATH>"


def reasoning_paths_text(record: dict[str, Any]) -> str:
    """A RoG record's reasoning paths, one rendered chain per line."""
    return "\n".join(render_chain(chain, record["q_entity"]) for chain in record["reasoning_paths"])


def _reasoning_prompt(record: dict[str, Any], instruction: str) -> str:
    """``instruction``, ``Reasoning Paths:`` one path per line, then ``Question:``."""
    return f"{instruction}\n\nReasoning Paths:\n{reasoning_paths_text(record)}\n\nQuestion:\n{record['question']}"


def rog_reason(record: dict[str, Any]) -> tuple[str, str]:
    """Reasoning paths and the question -> the answers, one per line."""
    prompt = _reasoning_prompt(record, "Answer the question from the reasoning paths. List every answer, one per line.")
    return prompt, "\n".join(record["answers"])


def rog_explain(record: dict[str, Any]) -> tuple[str, str]:
    """The reason prompt asking for an explanation -> the generator's explanation."""
    instruction = "Answer the question from the reasoning paths and explain how they lead to the answers."
    return _reasoning_prompt(record, instruction), record["explanation"]


ROG_TASKS = {"plan": rog_plan, "reason": rog_reason, "explain": rog_explain}


def prompt_and_completion(record: dict[str, Any]) -> tuple[str, str]:
    kind = record["kind"]
    if kind == "raft":
        return raft_prompt(record), raft_completion(record)
    if kind == "rog":
        return ROG_TASKS[record["task"]](record)
    if kind == "invar":  # generation stage (retrieval-stage records render as ``retrieval`` rows)
        return invar_generation_prompt(record), record["answers"][0]
    raise ValueError(f"no rendering for records of kind {kind!r}")


def render(record: dict[str, Any], fmt: str) -> dict[str, Any]:
    if fmt == "raft-hf":
        return raft_hf_row(record)
    if fmt == "retrieval":
        return retrieval_row(record)
    prompt, completion = prompt_and_completion(record)
    if fmt == "messages":
        return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]}
    if fmt == "prompt-completion":
        return {"prompt": prompt, "completion": completion}
    raise ValueError(f"unknown format {fmt!r}")


def raft_hf_row(record: dict[str, Any]) -> dict[str, Any]:
    """gorilla RAFT columns. ``oracle_context`` holds the oracle text even when the example
    dropped it from ``context``, as gorilla does."""
    docs = record["docs"]
    return {
        "id": record["id"],
        "type": "general",
        "question": record["question"],
        "context": {"title": [[d["title"] for d in docs]], "sentences": [[d["text"] for d in docs]]},
        "oracle_context": "\n".join(oracle["text"] for oracle in record["oracles"]),
        "cot_answer": raft_completion(record),
        "instruction": raft_prompt(record),
    }


def retrieval_row(record: dict[str, Any]) -> dict[str, Any]:
    """A retrieval-stage Invar-RAG record for the invar-retriever trainer: texts only (the ids stay
    in the record)."""
    return {
        "id": record["id"],
        "query": record["query"],
        "variants": record["variants"],
        "positives": [d["text"] for d in record["positives"]],
        "negatives": [d["text"] for d in record["negatives"]],
        "teacher_scores": record["teacher_scores"],
    }
