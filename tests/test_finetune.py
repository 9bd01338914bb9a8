"""`hybridft finetune` on the tiny model, on the CPU: loss, masks, parameters, outputs, resume."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_TRAINING, read_jsonl

from hybridft.cli import finetune as finetune_cli
from hybridft.cli.common import run_guarded
from hybridft.core.options import resolve
from hybridft.training.config import OPTIONS

RECIPES = Path(__file__).parent.parent / "data_recipes"
FAST = TINY_TRAINING


def config_for(data: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    return resolve(OPTIONS, {**FAST, "data": str(data), "out": str(out), **overrides}, {})


def run_cli(capsys: pytest.CaptureFixture[str], *tokens: Any) -> tuple[int, str, str]:
    code = run_guarded(finetune_cli.main, [str(t) for t in tokens])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def raft_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from hybridft.cli import build_data

    out = tmp_path_factory.mktemp("raft") / "data"
    code = run_guarded(
        build_data.main,
        ["--recipe", str(RECIPES / "raft_sample.yaml"), "--distractors", "1", "--eval-fraction", "0.2"]
        + ["--out", str(out)],
    )
    assert code == 0
    return out


class Capture:
    """Trainer callback that keeps parameter copies and the first batch, for the assertions."""

    def __init__(self) -> None:
        self.before: dict[str, Any] = {}
        self.after: dict[str, Any] = {}
        self.batch: dict[str, Any] = {}
        self.tokenizer: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.batch = next(iter(kwargs["train_dataloader"]))
        self.tokenizer = kwargs["processing_class"]

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self.after = {n: p.detach().clone() for n, p in model.named_parameters()}

    def __getattr__(self, name: str) -> Any:  # every other callback event: nothing to do
        if name.startswith("on_"):
            return lambda *args, **kwargs: None
        raise AttributeError(name)


@pytest.fixture(scope="module")
def trained(raft_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One 30-step LoRA run shared by the tests that only read its results."""
    from hybridft.training.sft import train

    out = tmp_path_factory.mktemp("run") / "out"
    capture = Capture()
    run = train(config_for(raft_data, out, max_steps=30, eval_steps=15, save_steps=15), extra_callbacks=[capture])
    return {"run": run, "out": out, "capture": capture, "data": raft_data}


def test_loss_falls(trained: dict[str, Any]) -> None:
    losses = [r["loss"] for r in read_jsonl(trained["out"] / "log.jsonl") if "loss" in r]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3


def test_every_lora_parameter_changes_and_no_base_parameter(trained: dict[str, Any]) -> None:
    capture = trained["capture"]
    lora = [n for n in capture.before if "lora_" in n]
    base = [n for n in capture.before if "lora_" not in n]
    assert lora and base
    unchanged = [n for n in lora if capture.before[n].equal(capture.after[n])]
    assert unchanged == []
    changed = [n for n in base if not capture.before[n].equal(capture.after[n])]
    assert changed == []


def test_only_answer_tokens_carry_labels(trained: dict[str, Any]) -> None:
    capture = trained["capture"]
    batch, tokenizer = capture.batch, capture.tokenizer
    for ids, labels in zip(batch["input_ids"], batch["labels"], strict=True):
        labelled = labels[labels != -100]
        text = tokenizer.decode(labelled)
        assert text.startswith("##Reason:") and text.endswith("</s>") and "<ANSWER>:" in text
        # The labelled tokens are exactly the tail of the real tokens (the answer comes last).
        real = ids[ids != tokenizer.pad_token_id]
        assert real[-len(labelled) :].tolist() == labelled.tolist()
        assert "<DOCUMENT>" not in text and "<|user|>" not in text


def test_outputs_of_a_run(trained: dict[str, Any]) -> None:
    out, run = trained["out"], trained["run"]
    saved = json.loads((out / "run.json").read_text())
    assert saved["status"] == "complete" and saved["steps"] == 30 and saved["method"] == "lora"
    assert saved["data"]["manifest_sha256"] and saved["versions"]["trl"]
    assert set(saved["final"]) == {"train_loss", "eval_loss"}
    assert saved == json.loads(json.dumps(run))
    assert (out / "adapter_model.safetensors").is_file() and (out / "loss.png").stat().st_size > 1000
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-15", "checkpoint-30"]
    steps = [r["step"] for r in read_jsonl(out / "log.jsonl") if "loss" in r]
    assert steps == list(range(1, 31))


def test_adapter_reloads_generates_and_merges(trained: dict[str, Any]) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hybridft.core.models import resolve_model
    from hybridft.training.export import save_merged

    out = trained["out"]
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(resolve_model("tiny")), out).eval()
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Question: how long is a year on Mercury?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    generated = model.generate(**prompt, max_new_tokens=5, do_sample=False)
    assert generated.shape[1] == prompt["input_ids"].shape[1] + 5

    merged_dir = save_merged(out, json.loads((out / "run.json").read_text()))
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()
    with torch.no_grad():
        expected = model(**prompt).logits
        got = merged(**prompt).logits
    assert torch.allclose(expected, got, atol=1e-4)


def test_resume_continues_the_loss_curve(raft_data: Path, tmp_path: Path) -> None:
    """A run interrupted by Ctrl-C at step 5 and rerun ends with the same losses, step for
    step, as a run that was never interrupted."""
    from transformers import TrainerCallback

    from hybridft.training.sft import train

    settings = {"max_steps": 8, "save_steps": 4}
    straight = train(config_for(raft_data, tmp_path / "straight", **settings))
    assert straight["status"] == "complete"

    class CtrlCAtStep5(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 4:  # Ctrl-C during step 5
                os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "resumed"
    first = train(config_for(raft_data, out, **settings), extra_callbacks=[CtrlCAtStep5()])
    assert first["status"] == "interrupted" and first["steps"] == 5
    assert (out / "checkpoint-5").is_dir()
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    second = train(config_for(raft_data, out, **settings))
    assert second["status"] == "complete" and second["resumed_from"] == "checkpoint-5"

    def losses(folder: Path) -> list[tuple[int, float]]:
        return [(r["step"], r["loss"]) for r in read_jsonl(folder / "log.jsonl") if "loss" in r]

    resumed, reference = losses(out), losses(tmp_path / "straight")
    assert [s for s, _ in resumed] == list(range(1, 9))
    assert [s for s, _ in reference] == list(range(1, 9))
    assert [loss for _, loss in resumed] == pytest.approx([loss for _, loss in reference], abs=1e-4)


def test_interrupted_cli_exits_130_and_says_how_to_resume(
    raft_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import TrainerCallback

    from hybridft.training import sft

    class CtrlC(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 1:  # Ctrl-C during step 2
                os.kill(os.getpid(), signal.SIGINT)

    real_train = sft.train
    monkeypatch.setattr(sft, "train", lambda config: real_train(config, extra_callbacks=[CtrlC()]))
    out = tmp_path / "run"
    code, stdout, _ = run_cli(
        capsys, "--model", "tiny", "--data", raft_data, "--out", out, "--max-steps", "6", "--no-gradient-checkpointing"
    )
    assert code == 130 and "Run the same command again to resume" in stdout
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()


def test_marker_tokens_are_added_initialised_and_trained(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from hybridft.cli import build_data
    from hybridft.core.models import add_marker_tokens, load_tokenizer, resolve_model
    from hybridft.training.sft import train

    path = resolve_model("tiny")
    tokenizer = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    pieces = tokenizer("<PATH>", add_special_tokens=False)["input_ids"]
    assert len(pieces) > 1
    original = model.get_input_embeddings().weight[pieces].mean(dim=0).clone()
    ids = add_marker_tokens(model, tokenizer, ["<PATH>"])
    assert tokenizer("<PATH>", add_special_tokens=False)["input_ids"] == ids
    assert torch.equal(model.get_input_embeddings().weight[ids[0]], original)

    data = tmp_path / "rog"
    assert run_guarded(build_data.main, ["--recipe", str(RECIPES / "rog_sample.yaml"), "--out", str(data)]) == 0
    probe = torch.tensor([tokenizer("<PATH>a<SEP>b</PATH> x", add_special_tokens=False)["input_ids"]])

    class CaptureLogits(Capture):
        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            super().on_train_end(args, state, control, model=model, **kwargs)
            with torch.no_grad():
                self.logits = model.eval()(input_ids=probe).logits

    capture = CaptureLogits()
    run = train(config_for(data, tmp_path / "run", max_steps=3), extra_callbacks=[capture])
    assert set(run["added_tokens"]) == {"<PATH>", "</PATH>", "<SEP>"}
    deltas = [n for n in capture.before if "trainable_tokens_delta" in n]
    assert len(deltas) == 1 and "embed_tokens" in deltas[0]  # TRL's fused LM head bypasses lm_head adapters
    assert not capture.before[deltas[0]].equal(capture.after[deltas[0]])
    # The saved adapter is small (no embedding matrices) and reloads to the very same model.
    from safetensors import safe_open

    from hybridft.core.generation import load_generator

    with safe_open(str(tmp_path / "run" / "adapter_model.safetensors"), "pt") as saved:
        names = list(saved.keys())  # noqa: SIM118 - safe_open is not iterable
        assert not [k for k in names if k.endswith(("embed_tokens.weight", "lm_head.weight"))]
    reloaded = load_generator(None, str(tmp_path / "run"))
    with torch.no_grad():
        assert torch.allclose(reloaded.model(input_ids=probe).logits, capture.logits, atol=1e-5)


def test_qlora_on_cpu_gradients_match_dequantised_reference_after_eval() -> None:
    """STACK-NOTES trap: a no-grad forward repacks 4-bit weights on AVX512-BF16 CPUs and later
    gradients vanish. hybridft disables the repacking; gradients must survive an eval forward
    and equal those of an fp32 model holding the dequantised weights."""
    import bitsandbytes as bnb
    import torch
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from hybridft.core.models import detect_device, load_for_training, lora_config, resolve_model

    path = resolve_model("tiny")
    lora = {"lora_r": 4, "lora_alpha": 8, "lora_dropout": 0.0, "target_modules": ["all-linear"]}
    quantised = load_for_training(path, "qlora", detect_device(), gradient_checkpointing=False)
    torch.manual_seed(0)
    student = get_peft_model(quantised, lora_config(lora))
    with torch.no_grad():  # non-zero B so gradients flow into A as well
        for name, param in student.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.02)

    reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    for name, module in quantised.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            weight = bnb.functional.dequantize_4bit(module.weight.data, module.weight.quant_state)
            target = reference.get_submodule(name.removeprefix("base_model.model.").removesuffix(".base_layer"))
            target.weight.data = weight.to(torch.float32)
    torch.manual_seed(0)
    reference = get_peft_model(reference, lora_config(lora))
    reference.load_state_dict({k: v for k, v in student.state_dict().items() if "lora_" in k}, strict=False)

    batch = torch.tensor([[1, 40, 41, 42, 43, 44, 45, 2]])

    def lora_grads(model: Any) -> dict[str, Any]:
        model.zero_grad()
        model(input_ids=batch, labels=batch).loss.backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if "lora_" in n}

    before = lora_grads(student)
    with torch.no_grad():
        student.eval()(input_ids=batch)
    student.train()
    after = lora_grads(student)
    expected = lora_grads(reference)
    assert before.keys() == after.keys() == expected.keys()
    for name in before:
        assert torch.allclose(before[name], after[name], atol=1e-6), name
        assert torch.allclose(after[name], expected[name], atol=1e-4, rtol=1e-3), name


def test_qlora_run_on_cpu_with_evaluation(raft_data: Path, tmp_path: Path) -> None:
    from hybridft.training.sft import train

    run = train(config_for(raft_data, tmp_path / "run", method="qlora", max_steps=4, eval_steps=2))
    assert run["status"] == "complete" and run["method"] == "qlora"
    assert run["final"]["eval_loss"] > 0


@pytest.mark.gpu
def test_qlora_on_cuda(raft_data: Path, tmp_path: Path) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    from hybridft.training.sft import train

    run = train(config_for(raft_data, tmp_path / "run", method="auto", max_steps=10, gradient_checkpointing=True))
    assert run["method"] == "qlora" and run["device"].startswith("cuda")
    losses = [r["loss"] for r in read_jsonl(tmp_path / "run" / "log.jsonl") if "loss" in r]
    assert losses[-1] < losses[0]


def test_packing_needs_flash_attention_because_sdpa_leaks_across_examples() -> None:
    """Why packing is refused on sdpa/eager: with packed rows and position ids, the second
    example's logits change, i.e. it attends to the first."""
    import torch
    from transformers import AutoModelForCausalLM

    from hybridft.core.models import resolve_model
    from hybridft.training.config import check

    model = AutoModelForCausalLM.from_pretrained(resolve_model("tiny"), attn_implementation="sdpa").eval()
    first, second = torch.tensor([[5, 9, 12, 30, 40]]), torch.tensor([[7, 8, 50]])
    with torch.no_grad():
        alone = model(input_ids=second).logits[0]
        packed = model(input_ids=torch.cat([first, second], 1), position_ids=torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2]]))
    assert not torch.allclose(packed.logits[0, 5:], alone, atol=1e-4)
    config = {"trainer": "sft", "packing": True, "attn_implementation": None, "max_steps": 5, "epochs": 1.0}
    config["target_modules"] = ["all-linear"]
    assert any("packing=true needs attn_implementation" in e for e in check(config))
    assert not check({**config, "attn_implementation": "flash_attention_2"})


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--packing"], "packing=true needs attn_implementation"),
        (["--trainer", "invar-retriever"], "rows are in format 'messages'; trainer=invar-retriever reads retrieval"),
        (["--lora-r", "0", "--method", "qlor"], "lora_r=0: must be at least 1"),
        (["--lora-rank", "8"], "unknown option --lora-rank (did you mean --lora-r?)"),
        (["--target-modules", "q_proj,lm_head"], "lm_head cannot take LoRA here"),
    ],
)
def test_bad_options_exit_2_before_any_work(
    raft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "--model", "tiny", "--data", raft_data, "--out", out, *extra)
    assert code == 2 and message in " ".join(err.split())
    assert not out.exists()


def test_bad_data_and_out_folders_exit_2(
    raft_data: Path, trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run(data: Path, out: Path, *extra: str) -> str:
        code, _, err = run_cli(capsys, "--model", "tiny", "--data", data, "--out", out, "--max-steps", "2", *extra)
        assert code == 2, err
        return " ".join(err.split())

    assert "no manifest.json" in run(tmp_path, tmp_path / "a")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "manifest.json").write_text(json.dumps({"options": {"format": "raft-hf"}}))
    assert "rows are in format 'raft-hf'" in run(hf, tmp_path / "b")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert "holds no hybridft run" in run(raft_data, busy)
    assert "holds a finished run" in run(raft_data, trained["out"])
    assert (busy / "notes.txt").read_text() == "mine"


def test_changed_options_do_not_resume(raft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    run_json = {"status": "interrupted", "config": config_for(raft_data, out, max_steps=8)}
    (out / "run.json").write_text(json.dumps(run_json))
    code, _, err = run_cli(
        capsys,
        *sum(([f"--{k}", str(v)] for k, v in FAST.items() if k != "model"), []),
        "--model",
        "tiny",
        "--data",
        raft_data,
        "--out",
        out,
        "--max-steps",
        "9",
    )
    assert code == 2 and "max_steps: 8 -> 9" in err


def test_dry_run_prints_options_and_writes_nothing(
    raft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    code, stdout, _ = run_cli(capsys, "--model", "tiny", "--data", raft_data, "--out", out, "--dry-run", "--json")
    assert code == 0 and json.loads(stdout)["options"]["lora_r"] == 16
    assert not out.exists()


ACCELERATE = Path(__file__).parent.parent / "data_recipes" / "accelerate"


def launch(launcher_args: list[str], args: list[str]) -> Any:
    import subprocess
    import sys

    launcher = [sys.executable, "-m", "accelerate.commands.launch", *launcher_args, "-m", "hybridft", *args]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(launcher, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_two_processes_under_accelerate_launch_with_the_shipped_ddp_config(raft_data: Path, tmp_path: Path) -> None:
    """DDP on the CPU: two processes (torchrun through accelerate), one adapter, one report."""
    out = tmp_path / "run"
    args = ["finetune", "--model", "tiny", "--data", str(raft_data), "--out", str(out), "--max-steps", "3"]
    args += ["--batch-size", "2", "--no-gradient-checkpointing", "--json"]
    done = launch(["--config_file", str(ACCELERATE / "ddp.yaml")], args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout)["status"] == "complete"  # one JSON document: only rank 0 reports
    run = json.loads((out / "run.json").read_text())
    assert run["processes"] == 2 and run["status"] == "complete" and run["steps"] == 3
    assert "launch_warning" not in run
    assert len(list(out.glob("adapter_model.safetensors"))) == 1


@pytest.mark.slow
def test_a_launch_that_ends_up_in_one_process_says_so(raft_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["finetune", "--model", "tiny", "--data", str(raft_data), "--out", str(out), "--max-steps", "1"]
    done = launch(["--cpu", "--num_processes", "2"], [*args, "--batch-size", "2", "--no-gradient-checkpointing"])
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["processes"] == 1 and run["processes_requested"] == 2
    assert "asked for 2 processes" in run["launch_warning"] and "asked for 2 processes" in done.stderr


def test_shipped_accelerate_configs_load(tmp_path: Path) -> None:
    from accelerate.commands.config.config_args import load_config_from_file

    kinds = {path.stem: load_config_from_file(str(path)).distributed_type for path in ACCELERATE.glob("*.yaml")}
    assert {k: str(v).split(".")[-1] for k, v in kinds.items()} == {
        "ddp": "MULTI_GPU",
        "fsdp_qlora": "FSDP",
        "deepspeed_zero3": "DEEPSPEED",
    }


@pytest.mark.slow
def test_the_fsdp_qlora_config_validates_on_the_cpu(raft_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["finetune", "--model", "tiny", "--data", str(raft_data), "--method", "qlora", "--out", str(out)]
    done = launch(["--config_file", str(ACCELERATE / "fsdp_qlora.yaml")], [*args, "--dry-run"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "method: qlora" in done.stdout and not out.exists()


def test_qlora_places_each_process_model_on_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from hybridft.core.models import Device, local_device

    assert local_device(Device("cpu", bf16=False, fp16=False)) == "cpu"
    monkeypatch.setattr("accelerate.PartialState", lambda: SimpleNamespace(local_process_index=3))
    assert local_device(Device("cuda", bf16=True, fp16=False)) == 3


@pytest.mark.parametrize("argv", [["finetune", "--help"], ["finetune", "--model", "tiny", "--dry-run"]])
def test_finetune_help_and_checks_import_no_heavy_library(argv: list[str]) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from hybridft.cli.main import app\n"
        f"sys.argv = ['hybridft', *{argv!r}]\n"
        "try:\n    app()\nexcept SystemExit as e:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'bitsandbytes') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip().endswith("HEAVY []"), done.stderr


def test_config_file_with_command_line_override(
    raft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text(f"model: tiny\ndata: {raft_data}\nlora_r: 8\nlearning_rate: 1.0e-4\nmax_steps: 5\n")
    out = tmp_path / "o"
    code, stdout, _ = run_cli(capsys, "--config", config, "--lora-r", "4", "--out", out, "--dry-run", "--json")
    options = json.loads(stdout)["options"]
    assert code == 0 and options["lora_r"] == 4 and options["learning_rate"] == 1e-4 and options["max_steps"] == 5
    config.write_text("model: tiny\nlora_alpha: many\nbatch_sise: 2\n")
    code, _, err = run_cli(capsys, "--config", config, "--out", tmp_path / "o")
    err = " ".join(err.split())
    assert code == 2
    assert "lora_alpha=many: expected an integer" in err and "unknown key 'batch_sise'" in err
    assert "--data is required" in err


def test_full_fine_tuning_saves_a_whole_model(raft_data: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    from hybridft.training.sft import train

    capture = Capture()
    out = tmp_path / "run"
    run = train(config_for(raft_data, out, method="full", max_steps=2, learning_rate=1e-3), extra_callbacks=[capture])
    assert run["method"] == "full" and not any("lora_" in n for n in capture.before)
    changed = [n for n in capture.before if not capture.before[n].equal(capture.after[n])]
    assert len(changed) == len(capture.before)  # every weight trains
    assert (out / "model.safetensors").is_file() and not (out / "adapter_config.json").exists()
    AutoModelForCausalLM.from_pretrained(out)


def test_trainer_args_reach_the_trainer_and_typos_name_the_field(
    raft_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from transformers import TrainerCallback

    from hybridft.training.sft import train

    class Args(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.args = args

    seen = Args()
    template = tmp_path / "template.jinja"
    template.write_text(
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant] {% endif %}"
    )
    config = config_for(
        raft_data,
        tmp_path / "run",
        max_steps=1,
        trainer_args={"weight_decay": "0.1", "optim": "adamw_torch"},
        chat_template=str(template),
        dataset_num_proc=2,
    )
    run = train(config, extra_callbacks=[seen])
    assert run["status"] == "complete"
    assert seen.args.weight_decay == 0.1 and seen.args.optim == "adamw_torch"
    assert seen.args.dataset_num_proc == 2  # --dataset-num-proc reaches TRL's own maps
    assert run["config"]["trainer_args"] == {"weight_decay": "0.1", "optim": "adamw_torch"}
    assert (tmp_path / "run" / "chat_template.jinja").read_text() == template.read_text()

    out = tmp_path / "typo"
    tokens = ["--model", "tiny", "--data", raft_data, "--out", out, "--trainer-arg", "wieght_decay=0.1"]
    code, _, err = run_cli(
        capsys, *tokens, "--trainer-arg", "max_grad_norm=big", "--trainer-arg", "dataset_num_proc=2", "--dry-run"
    )
    assert code == 2
    assert "wieght_decay is not a field of SFTConfig; did you mean weight_decay" in err
    assert "trainer_args: dataset_num_proc is --dataset-num-proc" in err  # one knob for every trainer
    assert "max_grad_norm" in err and "big" in err
    assert not out.exists()
    bad = tmp_path / "bad.jinja"
    bad.write_text("{% for m in messages %}")
    code, _, err = run_cli(capsys, "--model", "tiny", "--data", raft_data, "--out", out, "--chat-template", bad)
    assert code == 2 and f"chat_template={bad}" in err and not out.exists()


def test_trl_format_datasets_train_and_bad_ones_are_refused_by_dry_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from hybridft.training.sft import train

    chat = [
        {"messages": [{"role": "user", "content": f"What is {n} + {n}?"}, {"role": "assistant", "content": str(2 * n)}]}
        for n in range(8)
    ]
    messages = tmp_path / "chat.jsonl"
    messages.write_text("".join(json.dumps(row) + "\n" for row in chat))
    pairs = tmp_path / "pairs.parquet"
    pq.write_table(
        pa.Table.from_pylist([{"prompt": f"{n} + {n} =", "completion": f" {2 * n}"} for n in range(8)]), pairs
    )
    for data, fmt, conversational in (
        (messages, "messages", True),
        (pairs, "prompt-completion", False),
    ):
        run = train(config_for(data, tmp_path / f"run-{data.stem}", max_steps=2))
        assert run["status"] == "complete" and run["data"]["format"] == fmt and run["data"]["train_rows"] == 8
        assert run["data"]["conversational"] is conversational

    # The evaluations ask a model trained on plain-text prompts with the plain text, as TRL trained it.
    from hybridft.core.generation import load_generator, prompt_ids

    plain, chatted = load_generator(None, str(tmp_path / "run-pairs")), load_generator(None, str(tmp_path / "run-chat"))
    assert (plain.chat, chatted.chat) == (False, True)
    question = [{"role": "user", "content": "3 + 3 ="}]
    assert prompt_ids(plain.tokenizer, question, chat=False) == plain.tokenizer("3 + 3 =")["input_ids"]
    assert prompt_ids(chatted.tokenizer, question) != prompt_ids(chatted.tokenizer, question, chat=False)

    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    folder = tmp_path / "not-built"
    folder.mkdir()
    cases = [
        (["--data", wrong], 'wrong.jsonl:1: expected TRL rows with "messages" or "prompt" and "completion"'),
        (["--data", folder], "neither a build-data folder (no manifest.json) nor a .jsonl/.parquet dataset file"),
        (["--data", messages, "--trainer", "invar-retriever"], "trainer=invar-retriever reads a `hybridft build-data"),
        (["--data", "hf:"], "expected hf:NAME"),
    ]
    for tokens, message in cases:
        code, _, err = run_cli(capsys, "--model", "tiny", *tokens, "--out", tmp_path / "out", "--dry-run")
        assert code == 2 and message in " ".join(err.split()), (tokens, err)
    code, _, err = run_cli(
        capsys, "--model", "tiny", "--data", "hf:org/chat@train", "--out", tmp_path / "o", "--dry-run"
    )
    assert code == 0 and "checked when training loads it" in " ".join(err.split())


@pytest.mark.slow
def test_gpu_check_runs_its_cpu_shape() -> None:
    """bench/gpu_check.py measures both sides on whatever device there is; here, the tiny shape."""
    import subprocess
    import sys

    script = Path(__file__).parent.parent / "bench" / "gpu_check.py"
    done = subprocess.run(
        [sys.executable, str(script), "--shape", "tiny", "--steps", "2", "--seq-len", "256"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("tiny on CPU") and "QLoRA r=16" in lines[0]
    assert [line.split()[0] for line in lines[1:3]] == ["baseline", "hybridft"]
    assert lines[3].startswith("hybridft / TRL + PEFT:")


def test_overwrite_with_a_model_that_cannot_load_keeps_the_previous_run(
    trained: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained["out"], out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    missing = tmp_path / "no-such-model"
    code, _, err = run_cli(capsys, "--model", missing, "--data", trained["data"], "--out", out, "--overwrite")
    assert code == 2 and f"model={missing}: {missing}: no such folder" in " ".join(err.split())
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before


def test_a_run_stopped_after_its_last_step_completes_without_training_more(raft_data: Path, tmp_path: Path) -> None:
    """Ctrl-C during the last step saves that step's checkpoint and stops before the end; the rerun
    takes that checkpoint as the trained model (transformers would train one step too many)."""
    from transformers import TrainerCallback

    from hybridft.training.sft import train

    class CtrlCInTheLastStep(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "run"
    settings = {"max_steps": 4, "save_steps": 2}
    first = train(config_for(raft_data, out, **settings), extra_callbacks=[CtrlCInTheLastStep()])
    assert first["status"] == "interrupted" and first["steps"] == 4 and (out / "checkpoint-4").is_dir()
    second = train(config_for(raft_data, out, **settings))
    assert second["status"] == "complete" and second["steps"] == 4 and second["resumed_from"] == "checkpoint-4"
    assert (out / "adapter_model.safetensors").is_file()
    steps = [r["step"] for r in read_jsonl(out / "log.jsonl") if "loss" in r]
    assert steps == [1, 2, 3, 4]


def test_a_last_step_checkpoint_with_no_logged_loss_leaves_valid_json(raft_data: Path, tmp_path: Path) -> None:
    """Fewer steps than --logging-steps: no loss was logged, so the resumed run has no mean training
    loss to report: null, not NaN (which no strict JSON reader accepts)."""
    from transformers import TrainerCallback

    from hybridft.training.sft import train

    class CtrlCInTheLastStep(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 1:
                os.kill(os.getpid(), signal.SIGINT)

    out = tmp_path / "run"
    settings = {"max_steps": 2, "save_steps": 2, "logging_steps": 10}
    assert (
        train(config_for(raft_data, out, **settings), extra_callbacks=[CtrlCInTheLastStep()])["status"] == "interrupted"
    )
    assert train(config_for(raft_data, out, **settings))["resumed_from"] == "checkpoint-2"

    def refuse(constant: str) -> None:
        raise ValueError(f"run.json holds {constant}")

    run = json.loads((out / "run.json").read_text(), parse_constant=refuse)
    assert run["final"]["train_loss"] is None


def test_dry_run_reads_every_row_of_the_data(raft_data: Path, tmp_path: Path, capsys) -> None:
    """A build folder whose train.jsonl is damaged on its third row passed --dry-run (it read the
    manifest only) and failed the run."""
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(raft_data, damaged)
    lines = (damaged / "train.jsonl").read_text().splitlines(keepends=True)
    lines[2] = json.dumps({"messages": "not a list"}) + "\n"
    (damaged / "train.jsonl").write_text("".join(lines))
    code, _, err = run_cli(capsys, "--model", "tiny", "--data", damaged, "--out", tmp_path / "run", "--dry-run")
    assert code == 2 and "train.jsonl:3: " in err and '"messages"' in err, err
    assert not (tmp_path / "run").exists()
    code, _, err = run_cli(capsys, "--model", "tiny", "--data", raft_data, "--out", tmp_path / "run", "--dry-run")
    assert code == 0, err
