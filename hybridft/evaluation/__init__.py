"""The evaluations, one module per kind (``raft``, ``rog``, ``retrieval``, ``rag``), their pure metrics
(``metrics``), reports (``report``), and the table the CLI dispatches on.

May import: ``hybridft.core``, ``hybridft.kg``, ``hybridft.retrieval``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hybridft.core.options import Option
from hybridft.evaluation import raft, rag, retrieval, rog
from hybridft.evaluation.report import Report


@dataclass(frozen=True)
class EvaluationSpec:
    summary: str
    options: list[Option]
    evaluate: Callable[[dict[str, Any]], Report]
    check: Callable[[dict[str, Any]], list[str]]
    # Reads and checks the inputs as the run would, loading no model: what --dry-run adds to check.
    read_inputs: Callable[[dict[str, Any]], None]


EVALUATIONS: dict[str, EvaluationSpec] = {
    "raft": EvaluationSpec(
        "RAFT: exact match, F1, contains, answer format, quote precision; robustness to distractors",
        raft.OPTIONS,
        raft.evaluate,
        raft.check,
        raft.read_inputs,
    ),
    "rog": EvaluationSpec(
        "RoG: hits@1, hit, F1, precision, recall, path validity; constrained beam-search planning",
        rog.OPTIONS,
        rog.evaluate,
        rog.check,
        rog.read_inputs,
    ),
    "retrieval": EvaluationSpec(
        "Invar-RAG retrieval: hit@k, recall@k, ndcg@k, mrr; invariance across query variants",
        retrieval.OPTIONS,
        retrieval.evaluate,
        retrieval.check,
        retrieval.read_inputs,
    ),
    "rag": EvaluationSpec(
        "the RAG system: retrieved chunks -> the model's answers (exact match, F1, ...), answer recall@k, hit@k",
        rag.OPTIONS,
        rag.evaluate,
        rag.check,
        rag.read_inputs,
    ),
}
