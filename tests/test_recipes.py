"""Every shipped recipe validates (`--dry-run`) as it is."""

from pathlib import Path

import pytest

RECIPES = sorted((Path(__file__).parent.parent / "data_recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_recipe_dry_run(cli, recipe: Path, tmp_path: Path) -> None:
    code, stdout, stderr = cli("--recipe", recipe, "--out", tmp_path / "out", "--dry-run")
    assert code == 0, stderr
    assert "kind:" in stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_sample_recipes_run_as_documented(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands in each recipe's header, run from one folder: every sample recipe builds."""
    folder = Path(__file__).parent.parent / "data_recipes"
    monkeypatch.chdir(tmp_path)
    runs = [
        ("raft_sample.yaml", "out/raft", []),
        ("rog_sample.yaml", "out/rog", []),
        ("invar_sample.yaml", "out/invar", []),
        ("invar_sample.yaml", "out/invar-gen", ["--stage", "generation"]),
        ("hybrid_sample.yaml", "out/hybrid", []),
    ]
    for recipe, out, extra in runs:
        code, _, stderr = cli("--recipe", folder / recipe, "--out", out, *extra)
        assert code == 0, (recipe, stderr)
        assert (tmp_path / out / "train.jsonl").stat().st_size > 0
