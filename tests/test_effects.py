"""Each paper's effect in miniature (bench/effects.py), one reduced experiment per method, seed 0.

The same jobs as the bench — hybridft's build-data, finetune and eval on the synthetic domain with
whole families held out — on a smaller domain with fewer steps, so that the three together stay
within CI's budget. Each asserts the direction of its effect with a margin no larger than the
smallest difference the bench measured across its three seeds (docs/results.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import effects  # noqa: E402

pytestmark = pytest.mark.slow

REDUCED: dict[str, Any] = {
    **effects.FULL,
    "domain": {"families": 80, "per_family": 6, "held_out_families": 4},
    "reader_domain": {"families": 80, "per_family": 6, "held_out_families": 0, "syllables": 3},
    "steps": {"reader": 600, "raft": 200, "rog": 300, "invar": 150},
}
SEED = 0


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The seed's domain, shared data and the reader base model (used by the RAFT and RoG tests)."""
    import torch

    torch.set_num_threads(1)  # the bench's setting: the numbers below were measured with it
    folder = tmp_path_factory.mktemp("effects")
    test = effects.prepare(folder, SEED, REDUCED)
    effects.reader_job(folder, SEED, None, {SEED: test}, REDUCED)
    return folder, test


def test_raft_training_with_distractors_holds_up_when_distractors_appear(work: tuple[Path, dict[str, Any]]) -> None:
    folder, test = work
    oracle_only = effects.raft_job(folder, SEED, "a_oracle_only", test, REDUCED)
    with_distractors = effects.raft_job(folder, SEED, "b_distractors", test, REDUCED)
    # The model trained on the oracle alone reads well without distractors and collapses with them.
    assert oracle_only["d0"] - oracle_only["d4"] > 0.3, oracle_only
    # Trained with distractors, it does better once 4 appear at test time (RAFT's claim).
    assert with_distractors["d4"] > oracle_only["d4"], (with_distractors, oracle_only)


def test_rog_planning_that_follows_the_graph_plans_only_real_paths(work: tuple[Path, dict[str, Any]]) -> None:
    folder, test = work
    result = effects.rog_job(folder, SEED, None, test, REDUCED)
    assert result["follow_graph"]["path_validity"] == 1.0
    assert result["follow_graph"]["path_validity"] - result["free"]["path_validity"] > 0.1, result
    assert result["question_alone"]["path_validity"] is None


def test_invar_invariance_term_steadies_rankings_without_losing_recall(tmp_path: Path) -> None:
    import torch

    torch.set_num_threads(1)
    test = effects.prepare(tmp_path, SEED, REDUCED)
    weight_0 = effects.invar_job(tmp_path, SEED, "weight_0", test, REDUCED)
    weight_1 = effects.invar_job(tmp_path, SEED, "weight_1_default", test, REDUCED)
    assert weight_1["invariance_overlap@3"] - weight_0["invariance_overlap@3"] > 0.02, (weight_1, weight_0)
    assert weight_1["invariance_kendall_tau"] - weight_0["invariance_kendall_tau"] > 0.02, (weight_1, weight_0)
    assert weight_1["recall@3"] >= weight_0["recall@3"] - 0.02, (weight_1, weight_0)
