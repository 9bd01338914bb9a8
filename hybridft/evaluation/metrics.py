"""Evaluation metrics, as pure functions of one example; SPEC §5 gives the exact definitions.

Every function returns values in [0, 1] (or None where a metric does not apply to the example,
e.g. ``quote_precision`` for an answer that quotes nothing); reports average the non-None values.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from hybridft.core.answers import holds_answer, normalize_answer

ANSWER_TAG = "<ANSWER>:"
QUOTE = re.compile(r"##begin_quote##(.*?)##end_quote##", re.DOTALL)


# --- RAFT -----------------------------------------------------------------------------------


def final_answer(output: str) -> str:
    """The text after the last ``<ANSWER>:``; the whole output when the tag is absent."""
    head, tag, tail = output.rpartition(ANSWER_TAG)
    return tail.strip() if tag else output.strip()


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD token F1 between two answers (normalised here)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return float(predicted == expected)
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def raft_scores(output: str, answers: Sequence[str], documents: Sequence[str]) -> dict[str, float | None]:
    """exact_match, f1, contains, answer_format, quote_precision for one generated answer.
    exact_match and f1 use SQuAD's normalisation (comparable with the papers); ``contains`` uses
    the answer matcher of :mod:`hybridft.core.answers`, like every builder and check."""
    answer = normalize_answer(final_answer(output))
    golds = [normalize_answer(a) for a in answers]
    quotes = [q.strip() for q in QUOTE.findall(output)]
    found = sum(1 for quote in quotes if quote and any(quote in doc for doc in documents))
    return {
        "exact_match": float(any(answer == gold for gold in golds)),
        "f1": max((token_f1(final_answer(output), a) for a in answers), default=0.0),
        "contains": float(holds_answer(output, list(answers))),
        "answer_format": float(ANSWER_TAG in output),
        "quote_precision": found / len(quotes) if quotes else None,
    }


# --- RoG ------------------------------------------------------------------------------------


def prediction_list(prediction: str | Sequence[str]) -> list[str]:
    """A string prediction split on newlines; empty items dropped."""
    items = prediction.split("\n") if isinstance(prediction, str) else list(prediction)
    return [item.strip() for item in items if item and item.strip()]


def rog_scores(prediction: str | Sequence[str], answers: Sequence[str]) -> dict[str, float | None]:
    """hits@1, precision, recall, f1 (matching by equality after normalisation), and RoG's own
    ``hit`` and ``rog_f1`` (a gold answer anywhere in the output text, see :func:`rog_paper_scores`)."""
    predicted = prediction_list(prediction)
    normalized = [normalize_answer(p) for p in predicted]
    golds = {normalize_answer(a) for a in answers}
    matched_predictions = sum(1 for p in normalized if p in golds)
    matched_gold = sum(1 for g in golds if g in normalized)
    precision = matched_predictions / len(predicted) if predicted else 0.0
    recall = matched_gold / len(golds) if golds else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision and recall else 0.0
    paper = rog_paper_scores(prediction, answers)
    return {
        "hits@1": float(bool(normalized) and normalized[0] in golds),
        "hit": paper["hit"],
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "rog_f1": paper["rog_f1"],
    }


def rog_paper_items(prediction: str | Sequence[str]) -> list[str]:
    """The prediction as RoG's evaluation counts it: a string split on newlines with empty lines
    kept; a list reduced to its distinct items, most frequent first."""
    if isinstance(prediction, str):
        return prediction.split("\n")
    counts = Counter(prediction)
    return sorted(counts, key=lambda item: -counts[item])  # stable: ties keep first-seen order


def rog_paper_scores(prediction: str | Sequence[str], answers: Sequence[str]) -> dict[str, float | None]:
    """``hit`` and ``rog_f1`` as RoG's own evaluation defines them (the numbers of its paper).

    The items (:func:`rog_paper_items`) are joined with spaces and normalised; a gold answer is
    matched when its normalised text is a substring of that. ``hit``: some gold answer matched.
    ``rog_f1``: precision = matched gold answers / items, recall = matched gold answers / gold
    answers (duplicates count, as listed), F1 their harmonic mean. Precision, so F1, can exceed 1
    when one line holds several gold answers; RoG does not clip it and neither does this. Without
    gold answers (RoG's code divides by zero) both are 0.
    """
    items = rog_paper_items(prediction)
    output = normalize_answer(" ".join(items))
    matched = sum(1 for answer in answers if normalize_answer(answer) in output)
    if not items or not answers:
        return {"hit": float(matched > 0), "rog_f1": 0.0}
    precision, recall = matched / len(items), matched / len(answers)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"hit": float(matched > 0), "rog_f1": f1}


# --- retrieval ------------------------------------------------------------------------------


def retrieval_scores(ranking: Sequence[str], positives: set[str], ks: Sequence[int]) -> dict[str, float | None]:
    """hit@k, recall@k, ndcg@k (binary gains, log2 discount) for each k, and mrr.

    A document repeated in the ranking counts once, at its first position (so recall and ndcg stay
    within [0, 1]). Without positives no metric applies: every value is None (callers count the
    query as skipped).
    """
    names = [f"{metric}@{k}" for metric in ("hit", "recall", "ndcg") for k in ks] + ["mrr"]
    if not positives:
        return dict.fromkeys(names, None)
    seen: set[str] = set()
    relevant = []
    for doc in ranking:
        relevant.append(doc in positives and doc not in seen)
        seen.add(doc)
    scores: dict[str, float | None] = {}
    for k in ks:
        top = relevant[:k]
        dcg = sum(1 / math.log2(i + 2) for i, rel in enumerate(top) if rel)
        ideal = sum(1 / math.log2(i + 2) for i in range(min(k, len(positives))))
        scores[f"hit@{k}"] = float(any(top))
        scores[f"recall@{k}"] = sum(top) / len(positives)
        scores[f"ndcg@{k}"] = dcg / ideal
    first = next((i for i, rel in enumerate(relevant) if rel), None)
    scores["mrr"] = 1 / (first + 1) if first is not None else 0.0
    return {name: scores[name] for name in names}


def top_k_overlap(first: Sequence[str], second: Sequence[str], k: int) -> float:
    """|top k of first ∩ top k of second| / k, where k is capped by the longer of the two top-k
    lists (rankings of fewer than k candidates); 1.0 for two empty rankings."""
    a, b = set(first[:k]), set(second[:k])
    size = max(len(a), len(b))
    return len(a & b) / size if size else 1.0


def kendall_tau(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Kendall's tau-b between two rankings over the documents both hold (1 = same order, -1 =
    reversed); None when they share fewer than two documents (no pair to compare)."""
    from scipy.stats import kendalltau

    position: dict[str, int] = {}
    for i, doc in enumerate(second):
        position.setdefault(doc, i)
    shared = list(dict.fromkeys(doc for doc in first if doc in position))
    if len(shared) < 2:
        return None
    tau = kendalltau(list(range(len(shared))), [position[doc] for doc in shared]).statistic
    return None if math.isnan(tau) else float(tau)


def mean(values: Sequence[float | None]) -> float | None:
    """Average of the values that apply (None when none does)."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None
