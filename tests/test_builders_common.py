"""Per-row random numbers and splits shared by the builders."""

from __future__ import annotations

import itertools
from collections import Counter

from hybridft.builders.common import RowDraws, row_draws, split_of, splits_of


def numbers(draws: RowDraws, n: int) -> list[float]:
    return [draws.random() for _ in range(n)]


def test_splits_of_agrees_with_split_of() -> None:
    ids = [f"q{i}" for i in range(5000)] + ["é", "", "q-paris"]
    for fraction in (0.0, 0.1, 0.5, 0.999):
        assert splits_of(ids, fraction) == [split_of(i, fraction) for i in ids]


def test_row_draws_depend_on_the_seed_and_the_row_id_only() -> None:
    ids = [f"r{i}" for i in range(5000)]  # more than one block of rows
    drawn = [numbers(d, 8) for d in row_draws(0, ids, 8)]
    again = [numbers(d, 8) for d in row_draws(0, ids[::-1][:100], 8)]
    assert again == drawn[::-1][:100]  # neither position nor the other rows matter
    assert [numbers(d, 8) for d in row_draws(1, ids[:100], 8)] != drawn[:100]
    flat = [x for row in drawn for x in row]
    assert all(0.0 <= x < 1.0 for x in flat)
    assert abs(sum(flat) / len(flat) - 0.5) < 0.01  # 40,000 numbers: the mean's std is 0.0014
    assert len(set(flat)) == len(flat)


def test_a_row_that_needs_more_numbers_goes_on_deterministically() -> None:
    first, second = (numbers(next(row_draws(3, ["row"], 4)), 50) for _ in range(2))
    assert first == second
    assert first[:4] == numbers(next(row_draws(3, ["row"], 8)), 4)
    assert len(set(first)) == 50 and all(0.0 <= x < 1.0 for x in first)


def test_shuffle_is_a_uniform_permutation() -> None:
    seen: Counter[tuple[str, ...]] = Counter()
    for draws in row_draws(0, [f"r{i}" for i in range(6000)], 4):
        items = ["a", "b", "c"]
        draws.shuffle(items)
        seen[tuple(items)] += 1
    assert set(seen) == set(itertools.permutations("abc"))
    assert all(abs(n - 1000) < 150 for n in seen.values())  # 6,000 shuffles: each ~1,000 +- 29
