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
