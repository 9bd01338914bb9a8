"""What every ``finetune`` trainer shares around its ``Trainer``: starting in the run folder (see
``run_folder``), the common TrainingArguments, the callbacks (log.jsonl, progress, Ctrl-C), run.json
before and after training, the final save and loss.png."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hybridft.core import models
from hybridft.core.errors import UsageError, cannot_load
from hybridft.core.progress import log
from hybridft.training.callbacks import (
    InterruptCallback,
    JsonlLogCallback,
    RichProgressCallback,
    plot_losses,
    truncate_log,
)
from hybridft.training.model_card import write_model_card
from hybridft.training.run_folder import package_versions, prepare_out, write_run_json


@dataclass
class RunStart:
    """Where a run stands before its model loads."""

    model_path: str
    state: Any  # accelerate's PartialState
    out: Path
    checkpoint: str | None  # the checkpoint to resume from
    tokenizer: Any  # loaded (with pad token and chat template) before --out was touched
    method: str  # lora, qlora or full: checked to run here before --out was touched
    fresh: bool = False  # --out starts empty: what it holds (a previous run) is replaced by ``begin``


def start(config: dict[str, Any]) -> RunStart:
    """Quiet the libraries, resolve the model, and check ``--out`` (fresh, to replace, or to resume).

    ``--out`` is not touched here: a previous run in it (``--overwrite``) stays whole until
    ``begin``, once the model has loaded and training is about to start, so a model, tokenizer,
    weights file or method that fails first costs nothing (and a fresh ``--out`` is not created).
    """
    import datasets
    import transformers
    from accelerate import PartialState

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    datasets.disable_progress_bars()  # hybridft draws its own progress (rich, on stderr)
    transformers.utils.logging.disable_progress_bar()
    # Before the process group starts: the tiny model is built (once, atomically) by plain saves
    # that transformers would skip on ranks other than 0.
    model_path = models.resolve_model(config["model"])
    tokenizer, method = loadable(model_path, config)  # before --out is touched: a typo must not cost the previous run
    # cpu=True on a machine without CUDA: without it, processes started by `accelerate launch` on
    # CPUs each see a one-process state (all 'main'), so they would clear --out together.
    state = PartialState(cpu=models.detect_device().kind == "cpu")
    out = Path(config["out"])
    resume_from = prepare_out(config)
    if state.is_main_process:
        _remove_replaced(out)  # left by a kill while ``begin`` replaced a previous run
    fresh = resume_from in (None, "overwrite")
    return RunStart(model_path, state, out, None if fresh else resume_from, tokenizer, method, fresh)


def _replaced(out: Path) -> Path:
    """Where ``begin`` moves a previous run before deleting it (a hidden sibling of ``--out``)."""
    out = out.resolve()  # `--out .` has no name of its own
    return out.with_name(f".{out.name}.replaced")


def _remove_replaced(out: Path) -> None:
    if _replaced(out).exists():
        shutil.rmtree(_replaced(out))


def _replace_out(out: Path) -> None:
    """An empty ``--out``: a previous run in it is moved aside in one rename (a kill never leaves
    half of it in ``--out``), then deleted."""
    if out.is_dir() and any(out.iterdir()):
        _remove_replaced(out)
        out.rename(_replaced(out))
    out.mkdir(parents=True, exist_ok=True)
    _remove_replaced(out)


def loadable(model_path: str, config: dict[str, Any]) -> tuple[Any, str]:
    """The model's tokenizer and the method that runs here; exit 2 when the model's config or
    tokenizer does not load or the method cannot run."""
    from transformers import AutoConfig

    from hybridft.training.config import method_for

    try:
        AutoConfig.from_pretrained(model_path)
    except (OSError, ValueError) as exc:
        raise UsageError(cannot_load(f"model={config['model']}", model_path, exc)) from None
    tokenizer = models.load_tokenizer(model_path)
    return tokenizer, method_for(config, models.detect_device().kind)


def training_arguments(config: dict[str, Any], device: models.Device, has_eval: bool, **own: Any) -> dict[str, Any]:
    """TrainingArguments keywords: those every trainer takes from the finetune options, then the
    trainer's ``own``, then the user's ``trainer_args`` (which win)."""
    from hybridft.training.config import parse_trainer_args

    common = {
        "output_dir": str(config["out"]),
        "per_device_train_batch_size": config["batch_size"],
        "per_device_eval_batch_size": config["batch_size"],
        "gradient_accumulation_steps": config["grad_accum"],
        "learning_rate": config["learning_rate"],
        "lr_scheduler_type": config["lr_scheduler"],
        "warmup_steps": config["warmup_ratio"],
        "num_train_epochs": config["epochs"],
        "max_steps": config["max_steps"] or -1,
        "logging_steps": config["logging_steps"],
        "eval_strategy": ("steps" if config["eval_steps"] else "epoch") if has_eval else "no",
        "eval_steps": config["eval_steps"],
        "save_strategy": "steps",
        "save_steps": config["save_steps"],
        "save_total_limit": config["save_total_limit"],
        "seed": config["seed"],
        "data_seed": config["seed"],
        "bf16": device.bf16,
        "fp16": device.fp16,
        "use_cpu": device.kind == "cpu",
        "report_to": [] if config["report_to"] == ["none"] else config["report_to"],
        "disable_tqdm": True,
        "dataloader_drop_last": False,
        "activation_checkpointing": config["gradient_checkpointing"],
    }
    return {**common, **own, **parse_trainer_args(config["trainer"], config["trainer_args"])}


def callbacks(out: Path) -> dict[str, Any]:
    return {
        "log": JsonlLogCallback(out / "log.jsonl"),
        "progress": RichProgressCallback(),
        "interrupt": InterruptCallback(),
    }


def quiet(trainer: Any) -> None:
    """Results go to stdout only at the end; the default printers would write every log dict there."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def new_run(run_start: RunStart, config: dict[str, Any], method: str, device: models.Device) -> dict[str, Any]:
    """The keys every trainer's run.json starts with (status running until ``finish``)."""
    run = {
        "status": "running",
        "started_at": now(),
        "config": config,
        "method": method,
        "device": device.description,
        "processes": run_start.state.num_processes,
        "versions": package_versions(),
        "model_path": run_start.model_path if config["model"] != "tiny" else "tiny",
    }
    asked = launched_processes()
    if asked is not None and asked > run_start.state.num_processes:
        run["processes_requested"] = asked
        run["launch_warning"] = (
            f"accelerate launch asked for {asked} processes, but this run trains in "
            f"{run_start.state.num_processes}: accelerate's --cpu launcher starts one process; use "
            "--multi_gpu (CPU-only machines too) or --config_file data_recipes/accelerate/ddp.yaml"
        )
        log(f"warning: {run['launch_warning']}")
    return run


def launched_processes() -> int | None:
    """The processes the ``accelerate launch`` that started this one asked for (``--num_processes``
    or its config file), read from the parent's command line (Linux); None when unknown."""
    try:
        argv = Path(f"/proc/{os.getppid()}/cmdline").read_bytes().decode().split("\0")
    except (OSError, UnicodeDecodeError):
        return None
    if not any("accelerate" in arg for arg in argv) or "launch" not in " ".join(argv):
        return None
    for flag in ("--num_processes", "--num-processes"):
        if flag in argv[:-1] and argv[argv.index(flag) + 1].isdigit():
            return int(argv[argv.index(flag) + 1])
    for flag in ("--config_file", "--config-file"):
        if flag in argv[:-1]:
            try:
                value = yaml.safe_load(Path(argv[argv.index(flag) + 1]).read_text(encoding="utf-8"))
                return int(value["num_processes"])
            except (OSError, ValueError, TypeError, KeyError, RecursionError, yaml.YAMLError):
                return None
    return None


def begin(run_start: RunStart, run: dict[str, Any], what: str) -> None:
    """Training starts: replace what a fresh run's ``--out`` held (the previous run is deleted only
    now, after the model has loaded), or, when resuming, drop log lines after the checkpoint; then
    write run.json (status running)."""
    checkpoint = run_start.checkpoint
    if run_start.fresh:
        if run_start.state.is_main_process:
            _replace_out(run_start.out)
        run_start.state.wait_for_everyone()
    if not run_start.state.is_main_process:
        return
    if checkpoint:
        truncate_log(run_start.out / "log.jsonl", int(Path(checkpoint).name.removeprefix("checkpoint-")))
    write_run_json(run_start.out, run)
    log(f"{'resuming from ' + Path(checkpoint).name if checkpoint else 'training'}: {what}")


def finish(
    trainer: Any,
    run_start: RunStart,
    run: dict[str, Any],
    interrupt: InterruptCallback,
    *,
    after_save: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Train (or resume), then save the model and complete run.json; an interrupted run keeps its
    checkpoint and says so in run.json. Returns run.json's content."""
    out, state = run_start.out, run_start.state
    if run_start.checkpoint is not None and _trained_to_the_end(trainer, run_start.checkpoint):
        train_loss, seconds = _load_last_checkpoint(trainer, run_start.checkpoint)
    else:
        result = trainer.train(resume_from_checkpoint=run_start.checkpoint)
        train_loss, seconds = result.training_loss, result.metrics.get("train_runtime", 0.0)
    run["train_seconds"] = round(seconds, 3)
    run["steps"] = trainer.state.global_step
    if interrupt.interrupted:
        run["status"] = "interrupted"
        if state.is_main_process:
            write_run_json(out, run)
        return run

    final = {"train_loss": train_loss}
    if trainer.eval_dataset is not None and len(trainer.eval_dataset):
        final["eval_loss"] = final_eval_loss(trainer)
    trainer.save_model(str(out))
    state.wait_for_everyone()
    run.update(status="complete", finished_at=now(), final=final)
    if state.is_main_process:
        if after_save is not None:
            after_save()
        plot_losses(out / "log.jsonl", out / "loss.png")
        write_run_json(out, run)
        write_model_card(out, out, run)
    return run


def _trained_to_the_end(trainer: Any, checkpoint: str) -> bool:
    """Whether the checkpoint to resume from is the last step's: the run was stopped after saving
    it and before completing. (transformers would resume it with one step too many.)"""
    if trainer.args.max_steps <= 0:
        return False
    return int(Path(checkpoint).name.removeprefix("checkpoint-")) >= trainer.args.max_steps


def _load_last_checkpoint(trainer: Any, checkpoint: str) -> tuple[float | None, float]:
    """The last step's checkpoint as the trained model and state; its mean training loss (over the
    logged steps; None when no step was logged, as with fewer steps than --logging-steps) and no
    training time."""
    from transformers import TrainerState

    trainer._load_from_checkpoint(checkpoint)
    trainer.state = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json"))
    losses = [record["loss"] for record in trainer.state.log_history if "loss" in record]
    log(f"{Path(checkpoint).name} is the last step's: nothing left to train")
    return (sum(losses) / len(losses) if losses else None), 0.0  # NaN would make run.json invalid JSON


def final_eval_loss(trainer: Any) -> float:
    """The eval loss at the last step: logged already when an evaluation fell on it."""
    for record in reversed(trainer.state.log_history):
        if "eval_loss" in record and record.get("step") == trainer.state.global_step:
            return float(record["eval_loss"])
    return float(trainer.evaluate()["eval_loss"])
