"""A saved KG (`hybridft index --kg`): the same paths as the KG read from its file, the same
build-data bytes, opened memory-mapped, and damaged or foreign folders refused with exit 2."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from hybridft.cli import index as index_cli
from hybridft.cli.common import run_guarded
from hybridft.kg.graph import KG, read_kg, reasoning_paths, shortest_relation_paths

RECIPES = Path(__file__).parent.parent / "data_recipes"
RECIPE = RECIPES / "rog_sample.yaml"
SAMPLE_KG = RECIPES / "samples" / "rog" / "kg.tsv"
SAMPLE_QUESTIONS = RECIPES / "samples" / "rog" / "questions.jsonl"
INT_COLUMNS = ("heads", "rels", "tails", "out_ptr", "out_edges", "in_ptr", "in_edges")

# Parallel edges (a -r1-> b, a -r2-> b), a reversed edge (b -r3-> a), a cycle, a hub, and names
# outside ASCII (the saved name lookup is a binary search in byte order).
SMALL = [
    ["Ärger", "r1", "b"],
    ["Ärger", "r2", "b"],
    ["b", "r3", "Ärger"],
    ["b", "r4", "c"],
    ["c", "r5", "d"],
    ["d", "r4", "c"],
    ["d", "r6", "東京"],
    ["hub", "r7", "Ärger"],
    ["hub", "r7", "c"],
    ["hub", "r8", "東京"],
    ["e", "r1", "e2"],
]


def index(capsys: pytest.CaptureFixture[str], *tokens: object) -> tuple[int, str, str]:
    code = run_guarded(index_cli.main, [str(t) for t in tokens])
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


def build(capsys: pytest.CaptureFixture[str], *tokens: object) -> tuple[int, str]:
    from hybridft.cli import build_data

    code = run_guarded(build_data.main, [str(t) for t in tokens])
    return code, " ".join(capsys.readouterr().err.split())


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("saved") / "kg"
    assert run_guarded(index_cli.main, ["--kg", str(SAMPLE_KG), "--out", str(out)]) == 0
    return out


def same_paths(memory: KG, saved: KG, names: list[str], max_hops: int) -> None:
    assert saved.ids(names) == memory.ids(names)
    ids = [i for i in memory.ids(names) if i is not None]
    for directed, (q, a) in itertools.product((False, True), itertools.permutations(ids, 2)):
        expected = shortest_relation_paths(memory, [q], [a], max_hops, directed)
        assert shortest_relation_paths(saved, [q], [a], max_hops, directed) == expected
        assert reasoning_paths(saved, [q], expected, directed, 32) == reasoning_paths(
            memory, [q], expected, directed, 32
        )


def test_sample_paths_equal_the_in_memory_kg(sample_dir: Path) -> None:
    memory, saved = read_kg(SAMPLE_KG), read_kg(sample_dir)
    names = [memory.entity(i) for i in range(memory.size)]
    same_paths(memory, saved, [*names, "not in the graph"], 3)
    questions = [json.loads(line) for line in SAMPLE_QUESTIONS.read_text().splitlines()]
    on_global = [q for q in questions if not q.get("graph")]
    assert on_global, "the sample has questions on the global KG"
    for question in on_global:
        q_ids = [i for i in saved.ids(question["q_entity"]) if i is not None]
        a_ids = [i for i in saved.ids(question["a_entity"]) if i is not None]
        paths = shortest_relation_paths(saved, q_ids, a_ids, 3, False)
        assert paths == shortest_relation_paths(memory, q_ids, a_ids, 3, False)
        assert reasoning_paths(saved, q_ids, paths, False, 32) == reasoning_paths(memory, q_ids, paths, False, 32)


def test_small_kg_with_parallel_and_reversed_edges(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source = tmp_path / "kg.jsonl"
    source.write_text("".join(json.dumps(t, ensure_ascii=False) + "\n" for t in SMALL), encoding="utf-8")
    code, stdout, _ = index(capsys, "--kg", source, "--out", tmp_path / "kg", "--json")
    assert code == 0
    manifest = json.loads(stdout)
    assert manifest["counts"] == {"triples": 11, "entities": 8, "relations": 8}
    assert manifest["kind"] == "kg" and manifest["hybridft_version"]
    memory, saved = KG.from_triples(SMALL), read_kg(tmp_path / "kg")
    same_paths(memory, saved, [memory.entity(i) for i in range(memory.size)], 4)
    a, b = saved.ids(["Ärger", "b"])
    assert a is not None and b is not None
    assert shortest_relation_paths(saved, [a], [b], 2, False) == [("r1",), ("r2",), ("r3",)]
    assert reasoning_paths(saved, [b], [("r3",)], False, 32).chains == [[("b", "r3", "Ärger")]]
    assert reasoning_paths(saved, [b], [("r1",)], False, 32).chains == [[("Ärger", "r1", "b")]]


def test_open_maps_the_columns_without_reading_them(sample_dir: Path) -> None:
    before = pa.total_allocated_bytes()
    kg = read_kg(sample_dir)
    assert pa.total_allocated_bytes() == before  # the names point into the memory map
    for array in [*(getattr(kg, name) for name in INT_COLUMNS), kg._index]:
        assert isinstance(array.base, np.memmap) and not array.flags.owndata  # views of the files
    assert kg.ids(["Inception"]) == read_kg(SAMPLE_KG).ids(["Inception"])


def test_build_data_with_a_saved_kg_writes_the_same_bytes(
    capsys: pytest.CaptureFixture[str], sample_dir: Path, tmp_path: Path
) -> None:
    assert build(capsys, "--recipe", RECIPE, "--out", tmp_path / "file")[0] == 0
    assert build(capsys, "--recipe", RECIPE, "--kg", sample_dir, "--out", tmp_path / "saved")[0] == 0
    for name in ("records.jsonl", "train.jsonl", "eval.jsonl"):
        assert (tmp_path / "saved" / name).read_bytes() == (tmp_path / "file" / name).read_bytes(), name
    # The saved folder was the KG used (the recipe names the .tsv), and its manifest is what was hashed.
    manifest = json.loads((tmp_path / "saved" / "manifest.json").read_text())
    assert manifest["options"]["kg"] == str(sample_dir)
    assert str(sample_dir / "manifest.json") in manifest["inputs"]


def test_shards_over_one_saved_kg_merge_into_the_file_build(
    capsys: pytest.CaptureFixture[str], sample_dir: Path, tmp_path: Path
) -> None:
    assert build(capsys, "--recipe", RECIPE, "--out", tmp_path / "file")[0] == 0
    shards = [tmp_path / f"shard{i}" for i in range(2)]
    for i, shard in enumerate(shards):
        assert build(capsys, "--recipe", RECIPE, "--kg", sample_dir, "--shard", f"{i}/2", "--out", shard)[0] == 0
    assert build(capsys, "merge", *shards, "--out", tmp_path / "merged")[0] == 0
    for name in ("records.jsonl", "train.jsonl", "eval.jsonl"):
        assert (tmp_path / "merged" / name).read_bytes() == (tmp_path / "file" / name).read_bytes(), name


def damage(folder: Path, how: str) -> None:
    manifest = folder / "manifest.json"
    if how == "truncated column":
        data = (folder / "heads.npy").read_bytes()
        (folder / "heads.npy").write_bytes(data[: len(data) - 8])
    elif how == "missing column":
        (folder / "rels.npy").unlink()
    elif how == "garbled names":
        (folder / "entities.arrow").write_bytes(b"not arrow at all")
    elif how == "wrong length":
        np.save(folder / "tails.npy", np.zeros(3, dtype=np.int32))
    elif how == "wrong format":
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format": 99}))
    elif how == "manifest not json":
        manifest.write_text("{")
    elif how == "no manifest":
        manifest.unlink()


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("truncated column", "damaged saved KG: heads.npy cannot be read"),
        ("missing column", "damaged saved KG: rels.npy is missing"),
        ("garbled names", "damaged saved KG: entities.arrow cannot be read"),
        ("wrong length", "damaged saved KG: tails.npy holds (3,)"),
        ("wrong format", "saved KG format 99"),
        ("manifest not json", "manifest.json is damaged"),
        ("no manifest", "not a saved KG (no manifest.json)"),
    ],
)
def test_damaged_folder_is_exit_2(
    capsys: pytest.CaptureFixture[str], sample_dir: Path, tmp_path: Path, how: str, says: str
) -> None:
    import shutil

    folder = tmp_path / "kg"
    shutil.copytree(sample_dir, folder)
    damage(folder, how)
    code, err = build(capsys, "--recipe", RECIPE, "--kg", folder, "--out", tmp_path / "out")
    assert code == 2 and f"--kg {folder}: " in err and says in err, err
    assert not (tmp_path / "out").exists()


def test_foreign_folders_are_exit_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert build(capsys, "--recipe", RECIPE, "--out", tmp_path / "rog")[0] == 0
    code, err = build(capsys, "--recipe", RECIPE, "--kg", tmp_path / "rog", "--out", tmp_path / "out")
    assert code == 2 and f"--kg {tmp_path / 'rog'}: a `rog` folder, not a saved KG" in err
    (tmp_path / "empty").mkdir()
    code, err = build(capsys, "--recipe", RECIPE, "--kg", tmp_path / "empty", "--out", tmp_path / "out")
    assert code == 2 and "not a saved KG (no manifest.json)" in err
    assert not (tmp_path / "out").exists()


def test_index_kg_refuses_bad_input_and_writes_nothing(
    capsys: pytest.CaptureFixture[str], sample_dir: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tr\tb\nonly two\tfields\n")
    code, _, err = index(capsys, "--kg", bad, "--out", tmp_path / "kg")
    assert code == 2 and f"{bad}:2: expected head<TAB>relation<TAB>tail" in err
    assert not (tmp_path / "kg").exists() and not list(tmp_path.glob(".kg*"))
    code, _, err = index(capsys, "--kg", sample_dir, "--out", tmp_path / "kg")
    assert code == 2 and "a folder; give the .tsv or .jsonl KG file to pack" in err
    code, _, err = index(capsys, "--kg", SAMPLE_KG, "--out", sample_dir)
    assert code == 2 and "folder exists and is not empty" in err
    code, _, err = index(capsys, "--kg", SAMPLE_KG, "--docs", SAMPLE_KG, "--out", tmp_path / "kg")
    assert code == 2 and "--kg packs a KG, --docs indexes a corpus: give one of them" in err
    code, out, _ = index(capsys, "--help")
    assert code == 0 and "--kg" in out


def test_eval_rog_with_a_saved_kg_answers_as_with_the_file(
    capsys: pytest.CaptureFixture[str], sample_dir: Path, tmp_path: Path
) -> None:
    from hybridft.cli import eval as eval_cli

    examples = {}
    for name, kg in (("file", SAMPLE_KG), ("saved", sample_dir)):
        out = tmp_path / name
        tokens = ["rog", "--data", SAMPLE_QUESTIONS, "--kg", kg, "--model", "tiny", "--max-new-tokens", "24"]
        code = run_guarded(eval_cli.main, [str(t) for t in [*tokens, "--out", out]])
        assert code == 0, capsys.readouterr().err
        examples[name] = (out / "examples.jsonl").read_bytes()
        assert json.loads((out / "report.json").read_text())["count"] == 10
    # Planning follows the graph and reasoning walks it: the same plans, paths and answers.
    assert examples["saved"] == examples["file"]
