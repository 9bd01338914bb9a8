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


# --- recipes and configs that cannot be read --------------------------------------------------
# Each: exit 2, one message naming the file (and the key where there is one), no output folder.


def run_with(command: str, config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """``build-data raft --recipe``, ``finetune --config`` or ``eval raft --config`` given ``config``."""
    from hybridft.cli import build_data, finetune
    from hybridft.cli import eval as eval_cli
    from hybridft.cli.common import run_guarded

    out = tmp_path / "out"
    main, tokens = {
        "build-data": (build_data.main, ["raft", "--recipe", config, "--out", out, "--dry-run"]),
        "finetune": (finetune.main, ["--config", config, "--out", out, "--dry-run"]),
        "eval": (eval_cli.main, ["raft", "--config", config, "--out", out]),
        "eval-rag": (eval_cli.main, ["rag", "--config", config, "--out", out]),
    }[command]
    code = run_guarded(main, [str(t) for t in tokens])
    err = capsys.readouterr().err
    assert "Traceback" not in err and not out.exists(), err
    return code, err


def alias_bomb(levels: int = 12) -> str:
    """A list of 9 lists of 9 lists ... (9**12 items written out), in 12 lines."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


COMMANDS = ["build-data", "finetune", "eval"]
LIST_KEY = {"build-data": "qa", "finetune": "target_modules", "eval": "distractors"}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    "text",
    [
        "key: " + "[" * 300 + "]" * 300,  # PyYAML reads it: the nesting is refused
        "key: " + "[" * 1_000 + "]" * 1_000,  # PyYAML recurses out near 500 levels
        "key: " + "{a: " * 100_000 + "1" + "}" * 100_000,
        "".join("  " * i + "a:\n" for i in range(600)) + "  " * 600 + "b: 1\n",  # block style
        "key: &a [*a]\n",  # an alias inside itself: infinitely deep
    ],
    ids=["flow-300", "flow-1000", "flow-100000", "block-600", "self-alias"],
)
def test_nested_too_deeply(command: str, text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Was a RecursionError (exit 1) in PyYAML, or in whatever walked the value next."""
    config = tmp_path / "config.yaml"
    config.write_text(text)
    code, err = run_with(command, config, tmp_path, capsys)
    assert code == 2, err
    assert err.strip() == f"error: {config}: nested too deeply (arrays or objects more than 254 levels deep)", err


@pytest.mark.parametrize("command", COMMANDS)
def test_values_too_large_to_show(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A YAML alias that expands to 9**12 items, given to a list option: refused naming the file
    and key, in a short message and at once (the message wrote the value out: it never ended)."""
    import time

    config = tmp_path / "config.yaml"
    config.write_text(alias_bomb() + f"{LIST_KEY[command]}: *a11\n")
    start = time.monotonic()
    code, err = run_with(command, config, tmp_path, capsys)
    assert code == 2, err
    assert time.monotonic() - start < 30
    line = next(line for line in err.splitlines() if f"{LIST_KEY[command]}=" in line)
    assert line.startswith(f"error: {config}: {LIST_KEY[command]}=[[[") and len(line) < len(str(config)) + 250, err


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("seed: " + "9" * 5_000, "invalid YAML: Exceeds the limit (4300 digits) for integer string conversion"),
        ("seed: 2001-13-45", "invalid YAML: month must be in 1..12"),
    ],
    ids=["5000-digits", "bad-date"],
)
def test_values_yaml_cannot_make(
    command: str, text: str, problem: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Values PyYAML's own constructors refuse (ValueError, exit 1 before)."""
    config = tmp_path / "config.yaml"
    config.write_text(text + "\n")
    code, err = run_with(command, config, tmp_path, capsys)
    assert code == 2, err
    assert err.startswith(f"error: {config}: {problem}"), err


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_and_bad_keys(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every problem of the file at once, each naming the file and the key."""
    config = tmp_path / "config.yaml"
    config.write_text(f"no_such_key: 1\n{LIST_KEY[command]}: {{a: 1}}\n")
    code, err = run_with(command, config, tmp_path, capsys)
    assert code == 2, err
    assert f"error: {config}: unknown key 'no_such_key'" in err, err
    assert f"error: {config}: {LIST_KEY[command]}={{'a': 1}}: expected" in err, err


PATH_KEY = {"build-data": "docs", "finetune": "chat_template", "eval": "adapter"}
NULLS = [
    ("build-data", "distractors", "an integer"),
    ("build-data", "format", "one of"),
    ("finetune", "lora_r", "an integer"),
    ("finetune", "target_modules", "a comma-separated list"),
    ("finetune", "packing", "true or false"),
    ("eval", "seed", "an integer"),
    ("eval-rag", "retriever", "a string"),
]


@pytest.mark.parametrize(("command", "key", "expected"), NULLS)
def test_null_values(command: str, key: str, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`key:` left empty (null) for an option that has a default: refused naming the file and key
    (it replaced the default: TypeError or ValueError, exit 1, where the value was used)."""
    config = tmp_path / "config.yaml"
    config.write_text(f"{key}:\n")
    code, err = run_with(command, config, tmp_path, capsys)
    assert code == 2, err
    assert f"error: {config}: {key}=null: expected {expected}" in err, err
    assert "(leave it out for the default, " in err, err


@pytest.mark.parametrize("command", COMMANDS)
def test_unusable_paths(command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path whose name is too long for the file system: refused naming the file and key (was
    OSError, exit 1)."""
    config = tmp_path / "config.yaml"
    config.write_text(f"{PATH_KEY[command]}: {'x' * 5_000}\n")
    code, err = run_with(command, config, tmp_path, capsys)
    assert code == 2, err
    assert f"{PATH_KEY[command]}={str(tmp_path)[:20]}" in err and "not a usable path (File name too long)" in err, err
    assert max(map(len, err.splitlines())) < 400, err
