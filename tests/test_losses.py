"""The Invar-RAG losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from hybridft.training.losses import alignment, info_nce, invariance, invariance_sym_kl, invariance_vrex

T, F = True, False


def close(value: torch.Tensor, expected: float) -> bool:
    return math.isclose(float(value), expected, rel_tol=1e-5, abs_tol=1e-6)


def test_info_nce_uniform_scores_is_log_of_candidates_over_positives() -> None:
    scores = torch.zeros(1, 4)
    everything = torch.ones(1, 4, dtype=torch.bool)
    assert close(info_nce(scores, torch.tensor([[T, F, F, F]]), everything, 0.05), math.log(4))
    assert close(info_nce(scores, torch.tensor([[T, T, F, F]]), everything, 0.05), math.log(2))


def test_info_nce_by_hand_with_temperature_masks_and_rows_without_positives() -> None:
    positive = torch.tensor([[T, F, F], [F, F, F]])
    candidate = torch.tensor([[T, T, F], [T, T, T]])
    scores = torch.tensor([[1.0, 0.0, 5.0], [9.0, 0.0, 0.0]])
    # Row 0: the third document is padding; row 1 has no positive and is left out.
    assert close(info_nce(scores, positive, candidate, 1.0), math.log(1 + math.exp(-1)))
    assert close(info_nce(scores, positive, candidate, 0.5), math.log(1 + math.exp(-2)))
    # In-batch negatives count: the same row with two more documents scoring 0.
    wide = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    assert close(info_nce(wide, wide > 0.5, torch.ones(1, 4, dtype=torch.bool), 1.0), math.log(1 + 3 * math.exp(-1)))


def test_info_nce_has_gradients_towards_the_positive() -> None:
    scores = torch.zeros(1, 3, requires_grad=True)
    info_nce(scores, torch.tensor([[T, F, F]]), torch.ones(1, 3, dtype=torch.bool), 1.0).backward()
    assert scores.grad is not None
    assert scores.grad[0, 0] < 0 < scores.grad[0, 1]


def test_alignment_one_hot_teacher_is_minus_log_student_probability() -> None:
    mask = torch.ones(1, 3, dtype=torch.bool)
    teacher = torch.tensor([[1.0, 0.0, 0.0]])  # at temperature 1e-3: one-hot on the first candidate
    assert close(alignment(torch.zeros(1, 3), teacher, mask, 0.05, 1e-3), math.log(3))
    student = torch.tensor([[2.0, 1.0, 0.0]])
    expected = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1))
    assert close(alignment(student, teacher, mask, 1.0, 1e-3), expected)


def test_alignment_by_hand_zero_when_equal_and_rows_without_teacher_left_out() -> None:
    teacher = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    student = torch.tensor([[0.0, math.log(3), 7.0], [1.0, 2.0, 3.0]])
    mask = torch.tensor([[T, T, F], [F, F, F]])
    # p_teacher = (1/2, 1/2), p_student = (1/4, 3/4): KL = ½ ln 2 + ½ ln(2/3) = ½ ln(4/3).
    assert close(alignment(student, teacher, mask, 1.0, 1.0), 0.5 * math.log(4 / 3))
    # Temperatures are separate: the same distribution reached with different scales gives 0.
    assert close(alignment(torch.tensor([[0.2, 0.1]]), torch.tensor([[2.0, 1.0]]), mask[:1, :2], 0.1, 1.0), 0.0)
    assert close(alignment(student, teacher, torch.zeros(2, 3, dtype=torch.bool), 1.0, 1.0), 0.0)


def _sym_kl_by_hand(distributions: list[list[float]]) -> float:
    m = [sum(column) / len(distributions) for column in zip(*distributions, strict=True)]
    total = 0.0
    for p in distributions:
        forward = sum(pi * math.log(pi / mi) for pi, mi in zip(p, m, strict=True))
        backward = sum(mi * math.log(mi / pi) for pi, mi in zip(p, m, strict=True))
        total += 0.5 * (forward + backward)
    return total / len(distributions)


def test_sym_kl_zero_for_identical_variants_and_by_hand_otherwise() -> None:
    mask = torch.ones(1, 2, dtype=torch.bool)
    same = torch.tensor([[[0.3, 0.1], [0.3, 0.1], [0.3, 0.1]]])
    assert close(invariance_sym_kl(same, torch.ones(1, 3, dtype=torch.bool), mask, 0.05), 0.0)
    # Query (½, ½), variant (¼, ¾), a third version absent (its scores must not count).
    scores = torch.tensor([[[0.0, 0.0], [0.0, math.log(3)], [50.0, -50.0]]])
    present = torch.tensor([[T, T, F]])
    expected = _sym_kl_by_hand([[0.5, 0.5], [0.25, 0.75]])
    assert expected > 0.01
    assert close(invariance_sym_kl(scores, present, mask, 1.0), expected)
    assert close(invariance("sym-kl", scores, present, mask, mask, 1.0), expected)


def test_sym_kl_masks_candidates_and_leaves_out_rows_without_variants() -> None:
    scores = torch.tensor([[[0.0, 0.0, 9.0], [0.0, math.log(3), -9.0]], [[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]])
    mask = torch.tensor([[T, T, F], [T, T, T]])
    present = torch.tensor([[T, T], [T, F]])
    assert close(invariance_sym_kl(scores, present, mask, 1.0), _sym_kl_by_hand([[0.5, 0.5], [0.25, 0.75]]))
    assert close(invariance_sym_kl(scores, torch.tensor([[T, F], [T, F]]), mask, 1.0), 0.0)


def test_vrex_is_the_variance_of_per_version_info_nce() -> None:
    mask = torch.ones(1, 2, dtype=torch.bool)
    positive = torch.tensor([[T, F]])
    scores = torch.tensor([[[1.0, 0.0], [0.0, 0.0], [4.0, 4.0]]])
    losses = [math.log(1 + math.exp(-1)), math.log(2)]
    mean = sum(losses) / 2
    expected = sum((x - mean) ** 2 for x in losses) / 2
    assert close(invariance_vrex(scores, torch.tensor([[T, T, F]]), mask, positive, 1.0), expected)
    same = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    assert close(invariance("vrex", same, torch.ones(1, 2, dtype=torch.bool), mask, positive, 1.0), 0.0)


def test_unknown_invariance_is_an_error() -> None:
    with pytest.raises(ValueError, match="sym-kl or vrex"):
        invariance(
            "l2",
            torch.zeros(1, 1, 1),
            torch.ones(1, 1, dtype=torch.bool),
            torch.ones(1, 1, dtype=torch.bool),
            torch.ones(1, 1, dtype=torch.bool),
            1.0,
        )
