"""Invar-RAG retriever losses (Liu et al. 2024, arXiv 2411.07021), as pure functions of scores.

Every function takes similarity scores (any real numbers, usually cosine similarities) and masks,
and returns a scalar tensor averaged over the rows that take part. Scores become distributions by
a softmax at a temperature; masked-out candidates get no probability. See docs/finetune.md for the
formulas and for why ``sym-kl`` is the default invariance.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

_NEG = torch.finfo(torch.float32).min / 4  # masked logits: exp() is 0, sums stay finite


def _masked_log_softmax(scores: torch.Tensor, mask: torch.Tensor, temperature: float) -> torch.Tensor:
    """log softmax(scores / temperature) over the last dimension, with masked entries at ~-inf."""
    logits = (scores / temperature).masked_fill(~mask, _NEG)
    return torch.log_softmax(logits.float(), dim=-1)


def info_nce(scores: torch.Tensor, positive: torch.Tensor, candidate: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE with several positives: ``-log sum_{p in P} softmax(s / t)_p`` per query, averaged.

    ``scores`` [B, N]: each query against the N documents of the batch (its own positives and hard
    negatives, and every other query's documents: the in-batch negatives). ``positive`` [B, N]:
    which documents are the query's positives. ``candidate`` [B, N]: which documents take part
    (padding excluded). Queries without a positive are left out.
    """
    log_p = _masked_log_softmax(scores, candidate, temperature)
    positive = positive & candidate
    has_positive = positive.any(dim=-1)
    if not has_positive.any():
        return scores.sum() * 0.0
    per_query = -torch.logsumexp(log_p.masked_fill(~positive, _NEG), dim=-1)
    return per_query[has_positive].mean()


def alignment(
    student: torch.Tensor,
    teacher: torch.Tensor,
    mask: torch.Tensor,
    temperature: float,
    teacher_temperature: float,
) -> torch.Tensor:
    """KL(teacher ‖ student) between ``softmax(teacher / teacher_temperature)`` and
    ``softmax(student / temperature)`` over each row's candidates, averaged over rows.

    ``student``, ``teacher``, ``mask`` [B, C]; a row with no unmasked candidate (no teacher
    scores) is left out.
    """
    rows = mask.any(dim=-1)
    if not rows.any():
        return student.sum() * 0.0
    student, teacher, mask = student[rows], teacher[rows], mask[rows]
    log_s = _masked_log_softmax(student, mask, temperature)
    log_t = _masked_log_softmax(teacher.to(student.dtype), mask, teacher_temperature)
    kl = (log_t.exp() * (log_t - log_s)).masked_fill(~mask, 0.0).sum(dim=-1)
    return kl.mean()


def invariance_sym_kl(
    scores: torch.Tensor, present: torch.Tensor, mask: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Disagreement of a query's and its variants' candidate distributions.

    ``scores`` [B, V, C]: row b, version v (0 = the query, 1.. = its variants) against the row's
    C candidates; ``present`` [B, V]: which versions exist; ``mask`` [B, C]: real candidates.
    With p_v = softmax(s_v / t) and m their mean over the present versions, the row's value is
    ``mean_v ½ (KL(p_v ‖ m) + KL(m ‖ p_v))``: zero exactly when every version ranks the candidates
    with the same distribution. Rows with fewer than two versions are left out.
    """
    rows = present.sum(dim=-1) >= 2
    if not rows.any():
        return scores.sum() * 0.0
    scores, present, mask = scores[rows], present[rows], mask[rows]
    full = mask.unsqueeze(1).expand_as(scores)
    log_p = _masked_log_softmax(scores, full, temperature)  # [R, V, C]
    weights = present.to(log_p.dtype)
    p = log_p.exp() * weights.unsqueeze(-1)
    m = p.sum(dim=1) / weights.sum(dim=1, keepdim=True)  # [R, C]
    log_m = torch.log(m.clamp_min(torch.finfo(m.dtype).tiny)).unsqueeze(1)
    forward = (log_p.exp() * (log_p - log_m)).masked_fill(~full, 0.0).sum(dim=-1)
    backward = (m.unsqueeze(1) * (log_m - log_p)).masked_fill(~full, 0.0).sum(dim=-1)
    per_version = 0.5 * (forward + backward) * weights
    return (per_version.sum(dim=1) / weights.sum(dim=1)).mean()


def invariance_vrex(
    scores: torch.Tensor, present: torch.Tensor, mask: torch.Tensor, positive: torch.Tensor, temperature: float
) -> torch.Tensor:
    """V-REx (Krueger et al. 2021): the variance, across a row's versions, of their InfoNCE losses
    over the row's own candidates. ``positive`` [B, C] marks the positives among the candidates;
    other arguments as in :func:`invariance_sym_kl`. Population variance; rows with fewer than two
    versions are left out."""
    rows = (present.sum(dim=-1) >= 2) & (positive & mask).any(dim=-1)
    if not rows.any():
        return scores.sum() * 0.0
    scores, present, mask, positive = scores[rows], present[rows], mask[rows], positive[rows]
    full = mask.unsqueeze(1).expand_as(scores)
    log_p = _masked_log_softmax(scores, full, temperature)
    hits = (positive & mask).unsqueeze(1).expand_as(scores)
    losses = -torch.logsumexp(log_p.masked_fill(~hits, _NEG), dim=-1)  # [R, V]
    weights = present.to(losses.dtype)
    count = weights.sum(dim=1)
    mean = (losses * weights).sum(dim=1) / count
    variance = (((losses - mean.unsqueeze(1)) ** 2) * weights).sum(dim=1) / count
    return variance.mean()


def invariance(
    kind: str,
    scores: torch.Tensor,
    present: torch.Tensor,
    mask: torch.Tensor,
    positive: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """The invariance term named by ``kind`` (``sym-kl`` or ``vrex``)."""
    if kind == "sym-kl":
        return invariance_sym_kl(scores, present, mask, temperature)
    if kind == "vrex":
        return invariance_vrex(scores, present, mask, positive, temperature)
    raise ValueError(f"invariance={kind!r}: expected sym-kl or vrex")


def cosine_scores(queries: torch.Tensor, documents: torch.Tensor) -> torch.Tensor:
    """[Q, D] cosine similarities of two sets of embeddings."""
    return F.normalize(queries, dim=-1) @ F.normalize(documents, dim=-1).T
