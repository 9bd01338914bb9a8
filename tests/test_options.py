from pathlib import Path

import pytest

from hybridft.core.errors import UsageError
from hybridft.core.options import Option, load_recipe, parse_tokens, resolve

OPTIONS = [
    Option("max_hops", "int", 3, "hops", minimum=1),
    Option("oracle_p", "float", 0.8, "share", minimum=0, maximum=1),
    Option("directed", "bool", False, "walk edges forward only"),
    Option("tasks", "list", ["plan", "reason"], "tasks", choices=("plan", "reason", "explain")),
    Option("strategy", "str", "bm25", "strategy", choices=("bm25", "random")),
    Option("docs", "path", None, "documents", required=True),
]


def test_long_options_map_to_keys_and_command_line_wins(tmp_path: Path) -> None:
    docs = tmp_path / "docs.jsonl"
    docs.write_text("{}\n")
    command = parse_tokens(["--max-hops", "2", "--oracle-p=0.5", "--directed", "--tasks", "plan"], OPTIONS)
    config = resolve(OPTIONS, {"max_hops": 5, "docs": str(docs), "strategy": "random"}, command.values)
    assert config == {
        "max_hops": 2,
        "oracle_p": 0.5,
        "directed": True,
        "tasks": ["plan"],
        "strategy": "random",
        "docs": str(docs),
    }


def test_bool_options_accept_no_prefix_and_words() -> None:
    assert parse_tokens(["--no-directed"], OPTIONS).values == {"directed": False}
    assert parse_tokens(["--directed", "false"], OPTIONS).values == {"directed": "false"}
    assert parse_tokens(["--directed", "--max-hops", "1"], OPTIONS).values == {
        "directed": True,
        "max_hops": "1",
    }


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        resolve(
            OPTIONS,
            {"max_hops": "three", "colour": "red", "tasks": ["plan", "dream"]},
            {"oracle_p": "1.5"},
            recipe_name="r.yaml",
        )
    messages = caught.value.messages
    assert "r.yaml: max_hops=three: expected an integer at least 1" in messages
    assert "r.yaml: unknown key 'colour'" in messages
    assert "tasks=plan,dream: expected one of plan, reason, explain" in messages
    assert "oracle_p=1.5: must be between 0 and 1" in messages
    assert "--docs is required (documents)" in messages
    assert len(messages) == 5


def test_unknown_option_suggests_the_closest_key_and_is_reported_with_the_rest() -> None:
    command = parse_tokens(["--max-hop", "2", "--zzz", "--oracle-p", "7"], OPTIONS)
    assert command.errors == ["unknown option --max-hop (did you mean --max-hops?)", "unknown option --zzz"]
    with pytest.raises(UsageError) as caught:
        resolve(OPTIONS, {}, command.values, errors=command.errors)
    assert caught.value.messages == [
        "unknown option --max-hop (did you mean --max-hops?)",
        "unknown option --zzz",
        "oracle_p=7.0: must be between 0 and 1",
        "--docs is required (documents)",
    ]


def test_recipe_paths_start_at_the_recipe_folder(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "docs.jsonl").write_text("{}\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("docs: data/docs.jsonl\nmax_hops: 2\n")
    values, folder = load_recipe(str(recipe))
    config = resolve(OPTIONS, values, {}, recipe_dir=folder)
    assert config["docs"] == str(tmp_path / "data" / "docs.jsonl")


def test_missing_input_path_is_named(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        resolve(OPTIONS, {}, {"docs": str(tmp_path / "nope.jsonl")})
    assert caught.value.messages == [f"docs={tmp_path / 'nope.jsonl'}: no such file or folder"]


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("max_hops: 2\ndocs: [unclosed\n")
    with pytest.raises(UsageError, match=r"r.yaml:\d+: invalid YAML"):
        load_recipe(str(recipe))
