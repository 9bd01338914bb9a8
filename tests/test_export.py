"""`hybridft export`: merged models whose logits equal the adapter model's (added tokens included),
that `transformers.pipeline` generates with as hybridft does; a retriever as a sentence-transformers
folder with hybridft's embeddings; a QLoRA adapter; bad input refused with nothing written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_TRAINING

from hybridft.cli import export as export_cli
from hybridft.cli.common import run_guarded
from hybridft.core.options import resolve
from hybridft.training.config import OPTIONS

RECIPES = Path(__file__).parent.parent / "data_recipes"
FAST = {**TINY_TRAINING, "max_steps": 3}
PROBE = "Question: how long is a year on Mercury? <PATH>orbit<SEP>days</PATH>"


def build(recipe: str, out: Path, *extra: str) -> Path:
    from hybridft.cli import build_data

    assert run_guarded(build_data.main, ["--recipe", str(RECIPES / recipe), *extra, "--out", str(out)]) == 0
    return out


def train(data: Path, out: Path, **overrides: Any) -> Path:
    from hybridft.training.invar_retriever import train as train_retriever
    from hybridft.training.sft import train as train_sft

    config = resolve(OPTIONS, {**FAST, "data": str(data), "out": str(out), **overrides}, {})
    run = (train_retriever if config["trainer"] == "invar-retriever" else train_sft)(config)
    assert run["status"] == "complete"
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    raft = build("raft_sample.yaml", root / "raft", "--distractors", "1")
    rog = build("rog_sample.yaml", root / "rog")
    return {"root": root, "sft": train(raft, root / "sft"), "rog": train(rog, root / "rog-run")}


def export(capsys: pytest.CaptureFixture[str], run: Path, out: Path, *extra: str) -> tuple[int, str]:
    code = run_guarded(export_cli.main, [str(run), "--out", str(out), *extra])
    return code, " ".join(capsys.readouterr().err.split())


def adapter_logits(run: Path, text: str) -> Any:
    import torch

    from hybridft.core.generation import load_generator

    model = load_generator(None, str(run))
    with torch.no_grad():
        ids = model.tokenizer(text, return_tensors="pt")
        return model.model(**ids).logits, model


@pytest.mark.parametrize("name", ["sft", "rog"])
def test_merged_logits_equal_the_adapter_models(runs, tmp_path, capsys, name: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "exported"
    code, err = export(capsys, runs[name], out, "--dtype", "fp32")
    assert code == 0, err
    assert (out / "model.safetensors").is_file() and (out / "generation_config.json").is_file()
    assert (out / "chat_template.jinja").is_file()
    expected, _ = adapter_logits(runs[name], PROBE)
    tokenizer = AutoTokenizer.from_pretrained(out)
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    with torch.no_grad():
        got = merged(**tokenizer(PROBE, return_tensors="pt")).logits
    assert expected.shape == got.shape
    assert (expected - got).abs().max().item() < 1e-4
    run = json.loads((runs[name] / "run.json").read_text())
    if name == "rog":  # the marker tokens the run added are single tokens of the exported tokenizer
        assert set(run["added_tokens"]) == {"<PATH>", "<SEP>", "</PATH>"}
        assert all(len(tokenizer(m, add_special_tokens=False)["input_ids"]) == 1 for m in run["added_tokens"])
    card = (out / "README.md").read_text()
    assert card.startswith("---\nbase_model: tiny\n") and "## Prompt format" in card
    assert "fine-tuned version of [None]" not in (runs[name] / "README.md").read_text()


def test_the_exported_folder_generates_as_hybridft_does(runs, tmp_path, capsys) -> None:
    from transformers import pipeline

    out = tmp_path / "exported"
    assert export(capsys, runs["sft"], out, "--dtype", "fp32")[0] == 0
    _, model = adapter_logits(runs["sft"], PROBE)
    question = "Into which sea does the Rhine flow?"
    ours = model.generate([question], batch_size=1, max_new_tokens=12)[0][0]
    generator = pipeline("text-generation", model=str(out), device="cpu")
    messages = [{"role": "user", "content": question}]
    theirs = generator(messages, max_new_tokens=12, do_sample=False)[0]["generated_text"][-1]["content"]
    assert theirs.strip() == ours


def test_a_retriever_exports_as_sentence_transformers(tmp_path, capsys) -> None:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    from hybridft.retrieval.llm_index import load_retriever

    data = build("invar_sample.yaml", tmp_path / "invar", "--teacher", "none")
    run = train(data, tmp_path / "retriever", trainer="invar-retriever", align_weight=0.0, max_length=128)
    out = tmp_path / "exported"
    code, err = export(capsys, run, out, "--dtype", "fp32")
    assert code == 0, err
    texts = ["The Rhine flows into the North Sea.", "Mercury is the smallest planet.", "tea"]
    ours = load_retriever(run)
    exported = SentenceTransformer(str(out), device="cpu")
    for role in ("query", "passage"):
        theirs = exported.encode(texts, prompt_name=role, normalize_embeddings=False)
        cosine = np.sum(theirs * ours.encode(texts, role), axis=1) / np.linalg.norm(theirs, axis=1)
        assert cosine.min() >= 0.9999, (role, cosine)


def test_a_qlora_adapter_exports(tmp_path, capsys) -> None:
    data = build("raft_sample.yaml", tmp_path / "raft", "--distractors", "1")
    run = train(data, tmp_path / "qlora", method="qlora")
    out = tmp_path / "exported"
    code, err = export(capsys, run, out, "--dtype", "fp32")
    assert code == 0, err
    assert json.loads((out / "config.json").read_text()).get("quantization_config") is None  # dequantised base


def test_bad_input_is_exit_2_and_the_run_untouched(runs, tmp_path, capsys) -> None:
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "run.json").write_text(json.dumps({"status": "running", "config": {"model": "tiny"}}))
    no_base = tmp_path / "no-base"
    no_base.mkdir()
    for item in runs["sft"].iterdir():
        if item.is_file():
            (no_base / item.name).write_bytes(item.read_bytes())
    run = json.loads((no_base / "run.json").read_text())
    run["config"]["model"] = str(tmp_path / "gone")
    (no_base / "run.json").write_text(json.dumps(run))
    existing = tmp_path / "existing"
    existing.mkdir()
    before = {p.name: p.read_bytes() for p in runs["sft"].iterdir() if p.is_file()}
    cases = [
        (tmp_path, tmp_path / "a", "no run.json"),
        (unfinished, tmp_path / "b", "the run is not finished"),
        (no_base, tmp_path / "c", f"base model {tmp_path / 'gone'}: {tmp_path / 'gone'}: no such folder"),
        (runs["sft"], existing, f"--out {existing}: exists"),
    ]
    for run_dir, out, message in cases:
        code, err = export(capsys, run_dir, out)
        assert code == 2 and message in err, (message, err)
        assert out == existing or not out.exists()
    assert {p.name: p.read_bytes() for p in runs["sft"].iterdir() if p.is_file()} == before


def test_the_card_of_a_mix_run_names_its_kinds_prompts_and_trainer_args(tmp_path) -> None:
    from hybridft.training.model_card import model_card

    data = tmp_path / "mix"
    data.mkdir()
    inputs = {"a": {"kind": "raft"}, "b": {"kind": "rog"}}
    manifest = {"kind": "mix", "format": "messages", "counts": {"inputs": inputs, "train": 9, "eval": 1}}
    (data / "manifest.json").write_text(json.dumps(manifest))
    config = {"model": "tiny", "data": str(data), "trainer": "sft", "lora_r": 16, "learning_rate": 0.001}
    run = {"config": {**config, "trainer_args": {"weight_decay": 0.1}}, "method": "full", "steps": 3}
    card = model_card(tmp_path / "run", run)
    assert "tags:\n- hybridft\n- sft\n- full\n- mix\n- raft\n- rog\n" in card
    assert "a `build-data mix` folder (mix, raft, rog), 9 train and 1 eval rows." in card
    assert "- RAFT: every document" in card and "- RoG: planning" in card
    assert "| trainer_args.weight_decay | 0.1 |" in card and "| learning_rate | 0.001 |" in card
    assert "lora_r" not in card  # a full fine-tune has no adapter
    assert "| lora_r | 16 |" in model_card(tmp_path / "run", {**run, "method": "lora"})
