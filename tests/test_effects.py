"""Each paper's effect in miniature (bench/effects.py), one reduced experiment per method, seed 0.

The bench's own scheduler and jobs — hybridft's build-data, finetune and eval on the synthetic
domain with whole families held out — on one seed, two workers, and less of everything that the
assertions do not need: RAFT trains only (a) oracle-only and (b) with distractors (the bench's
reader and steps) and asks all 180 held-out questions at 0 and 4 test-time distractors and through
eval rag; RoG and the retriever train half the bench's steps. Each test asserts the direction of an
effect that held in every seed of the bench, with a margin below the smallest difference measured
there and in this reduced run on seeds 0, 1 and 2 (docs/results.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import effects  # noqa: E402

from hybridft.core.errors import UsageError  # noqa: E402

REDUCED: dict[str, Any] = {
    **effects.FULL,
    "raft_variants": ["a_oracle_only", "b_distractors"],
    "test_distractors": [0, 4],
    "steps": {**effects.FULL["steps"], "rog": 300, "invar": 150},
    "limit": {"raft": None, "rog": 150, "invar": None},
}
SEED = 0


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[int, Any]]:
    """Every job of the reduced experiment, on two worker processes with one torch thread each (the
    bench's setting: the numbers below were measured with it)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        work = tmp_path_factory.mktemp("effects")
        found, _ = effects.run_all(work, [SEED], ["raft", "rog", "invar"], REDUCED, workers=2)
    return found


@pytest.mark.slow
def test_raft_training_with_distractors_wins_once_distractors_appear(results: dict[str, Any]) -> None:
    """RAFT's claim: (b) beats (a) at 4 test-time distractors and from bm25-retrieved documents.
    Per-seed differences, seeds 0, 1, 2: bench (90 questions) d4 +0.078 +0.033 +0.044, rag +0.067
    +0.044 +0.067; this reduced run (180 questions) d4 +0.061 +0.033 +0.044, rag +0.072 +0.050 +0.067."""
    oracle_only, distractors = results["raft:a_oracle_only"][SEED], results["raft:b_distractors"][SEED]
    assert distractors["d4"] - oracle_only["d4"] > 0.02, (distractors, oracle_only)
    assert distractors["rag_top3"] - oracle_only["rag_top3"] > 0.03, (distractors, oracle_only)
    # The failure RAFT is built against: oracle-only training reads its oracle well alone and loses
    # it once distractors appear (bench 0.93 -> 0.007; this run, seeds 0-2: 0.92-0.94 -> 0.000-0.011).
    assert oracle_only["d0"] - oracle_only["d4"] > 0.5, oracle_only


@pytest.mark.slow
def test_rog_reasoning_from_paths_that_follow_the_graph(results: dict[str, Any]) -> None:
    """RoG's claim: reasoning from the retrieved paths beats the question alone (hit, per seed 0,
    1, 2: bench +0.273 +0.260 +0.280; this reduced run +0.033 +0.133 +0.140); planning that follows
    the graph plans only real paths."""
    result = results["rog"][SEED]
    assert result["follow_graph"]["hit"] - result["question_alone"]["hit"] > 0.02, result
    assert result["follow_graph"]["path_validity"] == 1.0
    assert result["follow_graph"]["path_validity"] - result["free"]["path_validity"] > 0.1, result
    assert result["question_alone"]["path_validity"] is None


@pytest.mark.slow
def test_invar_invariance_term_steadies_rankings(results: dict[str, Any]) -> None:
    """Recall is not asserted: on this task it is 1.0 with either weight (docs/results.md), so a
    recall check here could not fail."""
    weight_0, weight_1 = results["invar:weight_0"][SEED], results["invar:weight_1_default"][SEED]
    assert weight_1["invariance_overlap@3"] - weight_0["invariance_overlap@3"] > 0.02, (weight_1, weight_0)
    assert weight_1["invariance_kendall_tau"] - weight_0["invariance_kendall_tau"] > 0.02, (weight_1, weight_0)


def test_a_kept_work_folder_resumes_only_with_its_own_configuration(tmp_path: Path) -> None:
    effects.check_config(tmp_path, [0, 1], effects.FULL)
    effects.check_config(tmp_path, [0, 1], effects.FULL)  # the same: resumes
    with pytest.raises(UsageError, match=r"\(seeds differ\)"):
        effects.check_config(tmp_path, [0], effects.FULL)
    with pytest.raises(UsageError, match=r"\(domain, limit, reader_domain, steps differ\)"):
        effects.check_config(tmp_path, [0, 1], effects.SMOKE)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(UsageError, match="no config.json"):
        effects.check_config(tmp_path / "other", [0, 1], effects.FULL)


def test_tables_and_charts_from_per_seed_results(tmp_path: Path) -> None:
    raft = {s: {"d0": 0.9, "d4": 0.0 + s / 100, "rag_top3": 0.1} for s in (0, 1)}
    results = {
        "raft:a_oracle_only": raft,
        "raft:b_distractors": {s: {"d0": 0.4, "d4": 0.05, "rag_top3": 0.15} for s in (0, 1)},
        "invar:weight_0": {s: {"recall@1": 1.0, "invariance_kendall_tau": -0.2} for s in (0, 1)},
        "invar:weight_1_default": {s: {"recall@1": 1.0, "invariance_kendall_tau": 0.5} for s in (0, 1)},
    }
    text = effects.summarise(results, ["raft", "invar"], [0, 1], 0.0, 2)
    assert "| a_oracle_only | 0.900 (0.900–0.900) | 0.005 (0.000–0.010) | 0.100 (0.100–0.100) |" in text
    assert "b_distractors > a_oracle_only at d4: every seed (deltas +0.050, +0.040)" in text
    assert "weight 1 > weight 0 on recall@1: equal in every seed" in text
    assert effects.draw_charts(results, tmp_path) == ["effects-raft.png", "effects-invar.png"]
    assert all((tmp_path / name).stat().st_size > 1000 for name in ("effects-raft.png", "effects-invar.png"))
