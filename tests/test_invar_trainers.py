"""The Invar-RAG trainers on the tiny model, on the CPU: the retriever learns a synthetic task and
becomes more invariant with the invariance term; the index embeds as training does and resumes;
the generator leaves the retriever adapter untouched; bad combinations exit 2."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import CORPUS, QA, read_jsonl, write_jsonl

from hybridft.cli import build_data
from hybridft.cli import finetune as finetune_cli
from hybridft.cli.common import run_guarded
from hybridft.core.options import resolve
from hybridft.training.config import OPTIONS

# A synthetic retrieval task: each query names one item; its positive says where the item is.
ITEMS = "apple river candle violin tiger anchor mirror pepper rocket saddle lantern walnut helmet ribbon turtle compass"
PLACES = (
    "cellar attic garden kitchen garage library harbour stable tower bakery chapel forest market museum school station"
)
FAST = {
    "model": "tiny",
    "trainer": "invar-retriever",
    "max_length": 64,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "learning_rate": 3e-3,
    "warmup_ratio": 0.0,
    "lora_dropout": 0.0,
    "batch_size": 8,
    "save_steps": 1000,
}
STEPS = 40


def synthetic_records() -> list[dict[str, Any]]:
    documents = [
        {"id": f"d-{item}", "text": f"The {item} is kept in the {place}."}
        for item, place in zip(ITEMS.split(), PLACES.split(), strict=True)
    ]
    rng = random.Random(0)
    records = []
    for k, item in enumerate(ITEMS.split()):
        negatives = rng.sample([d for j, d in enumerate(documents) if j != k], 7)
        records.append(
            {
                "id": f"invar-{item}",
                "source_id": item,
                "kind": "invar",
                "stage": "retrieval",
                "split": "train",
                "query": f"Where is the {item} kept?",
                # Variants that move the last token far from the query's: a suffix, a reordering.
                "variants": [
                    f"Could you tell me where the {item} is kept? Thanks a lot, friend!",
                    f"{item} kept where, in which room of the house",
                ],
                "variant_kinds": ["prefix", "shuffle-clauses"],
                "answers": [item],
                "positives": [documents[k]],
                "negatives": negatives,
                "teacher_scores": [0.9] + [0.1] * 7,
            }
        )
    return records


def write_retrieval_folder(folder: Path, records: list[dict[str, Any]]) -> Path:
    from hybridft.core.render import render

    write_jsonl(folder / "records.jsonl", records)
    write_jsonl(folder / "train.jsonl", [render(r, "retrieval") for r in records])
    (folder / "manifest.json").write_text(json.dumps({"kind": "invar", "options": {"format": "retrieval"}}))
    return folder


def config_for(data: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    return resolve(OPTIONS, {**FAST, "data": str(data), "out": str(out), **overrides}, {})


def run_cli(capsys: pytest.CaptureFixture[str], *tokens: Any) -> tuple[int, str, str]:
    code = run_guarded(finetune_cli.main, [str(t) for t in tokens])
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def evaluate(data: Path, run: Path, out: Path) -> dict[str, float]:
    from hybridft.evaluation import retrieval

    config = resolve(
        retrieval.OPTIONS,
        {"data": str(data), "split": "train", "ranker": "adapter", "retriever": str(run), "k": "1,3"},
        {"out": str(out), "invariance_k": "3"},
    )
    assert retrieval.check(config) == []
    return retrieval.evaluate(config).metrics()


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_retrieval_folder(tmp_path_factory.mktemp("synthetic"), synthetic_records())


@pytest.fixture(scope="module")
def runs(synthetic: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An untrained adapter (learning rate 0) and two equal runs, with and without invariance."""
    from hybridft.training.invar_retriever import train

    root = tmp_path_factory.mktemp("runs")
    result: dict[str, Any] = {"root": root}
    result["untrained"] = train(config_for(synthetic, root / "untrained", max_steps=1, learning_rate=0.0))
    for name, weight in (("plain", 0.0), ("invariant", 1.0)):
        result[name] = train(config_for(synthetic, root / name, max_steps=STEPS, invariance_weight=weight))
    return result


def test_recall_at_1_rises_with_training(synthetic: Path, runs: dict[str, Any], tmp_path: Path) -> None:
    root = runs["root"]
    before = evaluate(synthetic, root / "untrained", tmp_path / "a")
    after = evaluate(synthetic, root / "invariant", tmp_path / "b")
    assert before["recall@1"] <= 0.5
    assert after["recall@1"] >= 0.9
    assert after["mrr"] > before["mrr"]


def test_invariance_is_higher_with_the_invariance_term(synthetic: Path, runs: dict[str, Any], tmp_path: Path) -> None:
    root = runs["root"]
    plain = evaluate(synthetic, root / "plain", tmp_path / "a")
    invariant = evaluate(synthetic, root / "invariant", tmp_path / "b")
    assert invariant["invariance_overlap@3"] > plain["invariance_overlap@3"] + 0.05
    assert invariant["invariance_kendall_tau"] > plain["invariance_kendall_tau"] + 0.1
    # The logged term says the same (it is watched, without gradient, at weight 0).
    assert runs["invariant"]["final"]["invariance"] < runs["plain"]["final"]["invariance"]


def test_each_term_is_logged_and_the_loss_is_their_weighted_sum(runs: dict[str, Any]) -> None:
    lines = [r for r in read_jsonl(runs["root"] / "invariant" / "log.jsonl") if "loss" in r]
    assert len(lines) == STEPS
    for line in lines[:5]:
        assert line["loss"] == pytest.approx(line["info_nce"] + line["alignment"] + line["invariance"], rel=1e-3)
    assert lines[-1]["info_nce"] < lines[0]["info_nce"] / 4


def test_run_folder_holds_what_embedding_needs(runs: dict[str, Any]) -> None:
    out = runs["root"] / "invariant"
    for name in ("adapter_model.safetensors", "adapter_config.json", "retriever.json", "tokenizer.json", "loss.png"):
        assert (out / name).is_file(), name
    settings = json.loads((out / "retriever.json").read_text())
    assert settings["model"] == "tiny" and settings["pooling"] == "last-token" and settings["max_length"] == 64
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "complete" and run["data"]["format"] == "retrieval"
    assert run["data"]["train_rows_with_variants"] == 16
    assert {"info_nce", "alignment", "invariance", "train_loss"} <= set(run["final"])


def test_index_embeds_as_training_does_and_resumes(
    runs: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np
    import torch

    from hybridft.retrieval import llm_index as retriever_index
    from hybridft.retrieval.llm_index import PASSAGE_PREFIX, embed_for_training, load_retriever, pad, tokenize

    retriever = load_retriever(runs["root"] / "invariant")
    texts = [f"The {item} is kept somewhere." for item in ITEMS.split()] + ["a much longer text " * 20]
    encoded = retriever.encode(texts, "passage", batch_size=3)
    rows, cut = tokenize(retriever.tokenizer, texts, PASSAGE_PREFIX, 64)
    assert cut == 1 and all(row[-1] == retriever.tokenizer.eos_token_id for row in rows)
    with torch.no_grad():
        trained = embed_for_training(retriever.model, *pad(rows, retriever.tokenizer.pad_token_id)).numpy()
    assert np.allclose(encoded, trained, atol=1e-5)

    # Shards of 4 texts; the third shard fails once; the rerun encodes only the missing ones.
    monkeypatch.setattr(retriever_index, "SHARD_TEXTS", 4)
    calls: list[int] = []
    real_encode = retriever.encode

    def flaky(batch: list[str], role: str, *args: Any) -> Any:
        calls.append(len(batch))
        if len(calls) == 3 and not hasattr(flaky, "failed"):
            flaky.failed = True  # type: ignore[attr-defined]
            raise KeyboardInterrupt
        return real_encode(batch, role, *args)

    monkeypatch.setattr(retriever, "encode", flaky)
    folder = tmp_path / "index"
    with pytest.raises(KeyboardInterrupt):
        retriever.index(texts, 2, folder)
    assert sorted(p.name for p in folder.iterdir()) == ["shard-00000.npy", "shard-00001.npy"]
    calls.clear()
    resumed = retriever.index(texts, 2, folder)
    assert calls == [4, 4, 1]  # shards 2, 3 and 4 of 17 texts
    assert np.allclose(resumed, encoded, atol=1e-5)


@pytest.fixture(scope="module")
def generation_data(runs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Generation-stage rows ranked by the trained retriever (build-data's retriever seam)."""
    root = tmp_path_factory.mktemp("gen")
    docs, qa = write_jsonl(root / "docs.jsonl", CORPUS), write_jsonl(root / "qa.jsonl", QA)
    out = root / "data"
    tokens = ["invar", "--qa", qa, "--docs", docs, "--stage", "generation", "--top-k", "2", "--eval-fraction", "0"]
    tokens += ["--retriever", runs["root"] / "invariant", "--out", out]
    assert run_guarded(build_data.main, [str(t) for t in tokens]) == 0
    return out


def test_generation_rows_come_from_the_trained_retriever(generation_data: Path, runs: dict[str, Any]) -> None:
    from hybridft.retrieval.llm_index import open_index

    records = read_jsonl(generation_data / "records.jsonl")
    index = open_index(runs["root"] / "invariant", [d["text"] for d in CORPUS])
    found, _ = index.search([r["query"] for r in records], 2)
    assert [[d["text"] for d in r["docs"]] for r in records] == [[CORPUS[i]["text"] for i in row] for row in found]


def test_generator_trains_its_own_adapter_and_leaves_the_retriever_bit_for_bit(
    generation_data: Path, runs: dict[str, Any], tmp_path: Path
) -> None:
    import torch
    from transformers import TrainerCallback

    from hybridft.core.generation import load_generator
    from hybridft.training.invar_generator import train

    retriever = runs["root"] / "invariant"
    files = sorted(p for p in retriever.iterdir() if p.is_file())
    before = {p.name: sha256(p) for p in files}
    probe = torch.tensor([[5, 9, 12, 30, 40, 7]])

    class Watch(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self.active = list(model.active_adapters)
            self.start = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
            self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}

        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            self.end = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}
            with torch.no_grad():
                self.logits = model.eval()(input_ids=probe).logits

    watch = Watch()
    config = config_for(
        generation_data, tmp_path / "gen", trainer="invar-generator", retriever=str(retriever), max_steps=4
    )
    config["max_length"] = 1024
    run = train(config, extra_callbacks=[watch])
    assert run["status"] == "complete" and run["retriever"]["unchanged"] is True
    assert {p.name: sha256(p) for p in files} == before
    assert watch.active == ["default"]
    frozen = [n for n in watch.start if ".retriever." in n]
    trained = [n for n in watch.start if ".default." in n]
    assert frozen and trained and not (set(frozen) & watch.trainable)
    assert all(watch.start[n].equal(watch.end[n]) for n in frozen)
    assert all(not watch.start[n].equal(watch.end[n]) for n in trained)
    # The run folder holds the generator alone, and base + generator is exactly what trained:
    # the retriever adapter took no part in the forward pass.
    from safetensors import safe_open

    with safe_open(str(tmp_path / "gen" / "adapter_model.safetensors"), "pt") as saved:
        assert not [k for k in saved.keys() if "retriever" in k]  # noqa: SIM118 - safe_open is not iterable
    reloaded = load_generator(None, str(tmp_path / "gen"))
    with torch.no_grad():
        assert torch.allclose(reloaded.model(input_ids=probe).logits, watch.logits, atol=1e-5)


def test_vrex_invariance_runs_and_logs(synthetic: Path, tmp_path: Path) -> None:
    from hybridft.training.invar_retriever import train

    run = train(config_for(synthetic, tmp_path / "vrex", max_steps=2, invariance="vrex", batch_size=4))
    lines = [r for r in read_jsonl(tmp_path / "vrex" / "log.jsonl") if "loss" in r]
    assert run["status"] == "complete" and len(lines) == 2 and all(line["invariance"] >= 0 for line in lines)


def test_bad_combinations_exit_2_before_any_work(
    synthetic: Path, runs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat = tmp_path / "chat"
    chat.mkdir()
    (chat / "manifest.json").write_text(json.dumps({"options": {"format": "messages"}}))
    write_jsonl(
        chat / "train.jsonl", [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}]
    )
    no_teacher = write_retrieval_folder(
        tmp_path / "noteacher", [{**r, "teacher_scores": None} for r in synthetic_records()]
    )
    retriever = runs["root"] / "invariant"
    cases = [
        (
            [synthetic, "--trainer", "sft"],
            "retrieval rows (`build-data invar --stage retrieval`) train trainer=invar-retriever",
        ),
        (
            [chat, "--trainer", "invar-retriever"],
            "rows are in format 'messages'; trainer=invar-retriever reads retrieval",
        ),
        ([chat, "--trainer", "invar-generator"], "trainer=invar-generator needs --retriever RUN_DIR"),
        ([chat, "--retriever", retriever], "retriever: only trainer=invar-generator uses a retriever run"),
        ([chat, "--trainer", "invar-generator", "--retriever", chat], "holds no retriever adapter"),
        ([chat, "--trainer", "invar-generator", "--retriever", retriever, "--method", "full"], "method=full"),
        ([synthetic, "--trainer", "invar-retriever", "--temperature", "0"], "temperature=0.0: must be above 0"),
        ([synthetic, "--trainer", "invar-retriever", "--invariance", "l2"], "invariance=l2"),
        ([no_teacher, "--trainer", "invar-retriever"], "has no teacher_scores"),
    ]
    for n, (extra, message) in enumerate(cases):
        out = tmp_path / f"run{n}"
        code, _, err = run_cli(capsys, "--model", "tiny", "--out", out, "--data", *extra)
        assert code == 2 and message in err, (extra, err)
        assert not out.exists()


def test_eval_and_build_data_name_the_retriever_run(
    synthetic: Path, tmp_path: Path, sample: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    from hybridft.cli import eval as eval_cli

    code = run_guarded(
        eval_cli.main, ["retrieval", "--data", str(synthetic), "--ranker", "adapter", "--out", str(tmp_path / "e")]
    )
    assert code == 2 and "--ranker adapter and --retriever RUN_DIR" in capsys.readouterr().err
    tokens = ["invar", "--qa", sample["qa"], "--docs", sample["docs"], "--stage", "generation", "--retriever", tmp_path]
    code = run_guarded(build_data.main, [str(t) for t in [*tokens, "--out", tmp_path / "b"]])
    assert code == 2 and "expected bm25, dense, or the --out folder" in " ".join(capsys.readouterr().err.split())


@pytest.mark.slow
def test_retriever_resume_continues_the_loss_curve(synthetic: Path, tmp_path: Path) -> None:
    from transformers import TrainerCallback

    from hybridft.training.invar_retriever import train

    settings = {"max_steps": 6, "save_steps": 3, "batch_size": 4}
    train(config_for(synthetic, tmp_path / "straight", **settings))

    class CtrlCAtStep4(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "resumed"
    first = train(config_for(synthetic, out, **settings), extra_callbacks=[CtrlCAtStep4()])
    assert first["status"] == "interrupted" and first["steps"] == 4
    second = train(config_for(synthetic, out, **settings))
    assert second["status"] == "complete" and second["resumed_from"] == "checkpoint-4"

    def losses(folder: Path) -> list[float]:
        return [r["info_nce"] for r in read_jsonl(folder / "log.jsonl") if "loss" in r]

    assert losses(out) == pytest.approx(losses(tmp_path / "straight"), abs=1e-4)


@pytest.fixture(scope="module")
def generator_run(generation_data: Path, runs: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An invar-generator trained (briefly) over the invariant retriever."""
    from hybridft.training.invar_generator import train

    out = tmp_path_factory.mktemp("generator") / "gen"
    config = config_for(
        generation_data, out, trainer="invar-generator", retriever=str(runs["root"] / "invariant"), max_steps=2
    )
    config["max_length"] = 1024
    assert train(config)["status"] == "complete"
    return out


def test_invar_rag_runs_on_one_backbone(
    runs: dict[str, Any], generator_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Retriever and generator share the base model's weights: each base tensor once, the active
    adapter switched; retrieval and generation equal those of two separately loaded models."""
    import numpy as np
    import torch
    from transformers import AutoModelForCausalLM

    from hybridft.cli import ask as ask_cli
    from hybridft.cli import eval as eval_cli
    from hybridft.cli import index as index_cli
    from hybridft.core.generation import load_generator
    from hybridft.core.models import resolve_model
    from hybridft.retrieval.llm_index import load_retriever
    from hybridft.retrieval.pipeline import load_invar_pair

    retriever_run = runs["root"] / "invariant"
    chat, shared = load_invar_pair(str(retriever_run), str(generator_run), None)
    assert chat.model is shared.model
    base = AutoModelForCausalLM.from_pretrained(resolve_model("tiny"))
    base_tensors = {name for name, _ in base.named_parameters()}
    shared_base = [n for n, _ in chat.model.named_parameters() if "lora_" not in n]
    assert len(shared_base) == len(base_tensors)  # the base weights are held once
    adapters = {n.split("lora_A.")[1].split(".")[0] for n, _ in chat.model.named_parameters() if "lora_A." in n}
    assert adapters == {"retriever", "generator"}

    texts = [d["text"] for d in CORPUS]
    alone = load_retriever(retriever_run)
    assert np.allclose(shared.encode(texts, "passage"), alone.encode(texts, "passage"), atol=1e-5)
    questions = [q["question"] for q in QA]
    separate = load_generator(None, str(generator_run))
    kwargs = {"batch_size": 4, "max_new_tokens": 6}
    assert chat.generate(questions, **kwargs) == separate.generate(questions, **kwargs)
    with torch.no_grad():  # retrieval again after generation: the switch goes both ways
        assert np.allclose(shared.encode(texts[:3], "query"), alone.encode(texts[:3], "query"), atol=1e-5)

    docs, qa = write_jsonl(tmp_path / "docs.jsonl", CORPUS), write_jsonl(tmp_path / "qa.jsonl", QA)
    index = tmp_path / "index"
    tokens = ["--docs", docs, "--retriever", retriever_run, "--out", index]
    assert run_guarded(index_cli.main, [str(t) for t in tokens]) == 0
    capsys.readouterr()
    tokens = ["rag", "--qa", qa, "--index", index, "--adapter", generator_run, "--k", "1,2", "--max-new-tokens", "6"]
    assert run_guarded(eval_cli.main, [str(t) for t in [*tokens, "--out", tmp_path / "report", "--json"]]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prompt"] == "invar" and str(retriever_run) in report["model"] and report["count"] == len(QA)
    tokens = ["Where is the Seine?", "--index", index, "--adapter", generator_run, "--retriever", retriever_run]
    assert run_guarded(ask_cli.main, [*map(str, tokens), "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"question", "answer", "chunks"}


def test_generator_refuses_documents_ranked_by_another_retriever(
    runs: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs, qa = write_jsonl(tmp_path / "docs.jsonl", CORPUS), write_jsonl(tmp_path / "qa.jsonl", QA)
    data = tmp_path / "bm25-data"
    tokens = ["invar", "--qa", qa, "--docs", docs, "--stage", "generation", "--top-k", "2", "--out", data]
    assert run_guarded(build_data.main, [str(t) for t in tokens]) == 0
    retriever = runs["root"] / "invariant"
    tokens = ["--model", "tiny", "--data", data, "--trainer", "invar-generator", "--retriever", retriever]
    code = run_guarded(finetune_cli.main, [str(t) for t in [*tokens, "--out", tmp_path / "run"]])
    err = " ".join(capsys.readouterr().err.split())
    assert code == 2 and "its documents were ranked by bm25, not by retriever=" in err
    assert not (tmp_path / "run").exists()


def test_context_size_variant_cuts_every_document_and_joins_the_invariance_term(
    synthetic: Path, tmp_path: Path
) -> None:
    from hybridft.core.models import load_tokenizer, resolve_model
    from hybridft.training.invar_retriever import RetrievalCollator, train

    tokenizer = load_tokenizer(resolve_model("tiny"))
    rows = [
        {"query": "Where is the apple?", "positives": ["The apple is kept in the cellar of the old house."]},
        {"query": "Where is the tiger?", "positives": ["The tiger sleeps."], "negatives": ["A long river runs."]},
    ]
    batch = RetrievalCollator(tokenizer, 64, context_window=0.5)(rows)
    full, cut = batch["doc_mask"].sum(dim=1), batch["cut_doc_mask"].sum(dim=1)
    assert ((cut - 1) == ((full - 1) // 2).clamp(min=1)).all()  # half the tokens, then EOS
    for ids, length in zip(batch["cut_doc_ids"], cut, strict=True):
        assert ids[int(length) - 1] == tokenizer.eos_token_id
    assert "cut_doc_ids" not in RetrievalCollator(tokenizer, 64)(rows)

    no_variants = tmp_path / "no-variants"
    rows = [{**r, "variants": []} for r in read_jsonl(synthetic / "train.jsonl")]
    write_jsonl(no_variants / "train.jsonl", rows)
    (no_variants / "manifest.json").write_text((synthetic / "manifest.json").read_text())
    run = train(config_for(no_variants, tmp_path / "run", max_steps=2, context_window=0.5))
    logged = [r for r in read_jsonl(tmp_path / "run" / "log.jsonl") if "loss" in r]
    assert run["status"] == "complete" and all(r["invariance"] > 0 for r in logged)
