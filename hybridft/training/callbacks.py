"""What a training run reports while it runs: ``log.jsonl``, a progress bar on stderr, and a
Ctrl-C that stops at the next step with a checkpoint instead of losing the work.

Only the main process writes (under ``accelerate launch`` every process runs these callbacks).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from hybridft.core.errors import UsageError
from hybridft.core.progress import console


class JsonlLogCallback(TrainerCallback):
    """One JSON line per logged step in ``path``; a resumed run appends after its checkpoint."""

    def __init__(self, path: Path):
        self.path = path

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        record = {"step": state.global_step, **logs}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def truncate_log(path: Path, last_step: int) -> int:
    """Drop lines logged after ``last_step`` (the checkpoint a resumed run restarts from), so the
    loss curve continues instead of repeating steps. Returns the number of lines dropped."""
    if not path.is_file():
        return 0
    lines = path.read_bytes().decode("utf-8", errors="replace").splitlines()
    kept = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            step = json.loads(line).get("step", 0)
            if isinstance(step, bool) or not isinstance(step, int):
                raise ValueError(f'"step" is {step!r}, not a step number')
        except (ValueError, AttributeError) as exc:
            if number == len(lines):  # the line a killed run was writing: it never finished
                continue
            raise UsageError(f"{path}:{number}: not a log line ({exc}); use --overwrite to start over") from None
        if step <= last_step:
            kept.append(line)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    os.replace(temporary, path)
    return len(lines) - len(kept)


class RichProgressCallback(TrainerCallback):
    """A rich progress bar over optimiser steps, with the latest loss, on stderr."""

    def __init__(self) -> None:
        self._progress: Any = None
        self._task: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=state.max_steps, completed=state.global_step, loss="")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=state.global_step)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        shown = {k: v for k, v in logs.items() if k in ("loss", "eval_loss", "learning_rate")}
        if self._progress is not None and "loss" in logs:
            self._progress.update(self._task, loss=f"loss {logs['loss']:.4f}")
        if shown:
            text = "  ".join(f"{k}={v:.4g}" for k, v in shown.items())
            console.print(f"step {state.global_step}: {text}", highlight=False)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class InterruptCallback(TrainerCallback):
    """The first Ctrl-C (SIGINT) finishes the current step, saves a checkpoint and stops; a
    second one aborts at once."""

    def __init__(self) -> None:
        self.interrupted = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.interrupted:
            raise KeyboardInterrupt
        self.interrupted = True
        console.print("interrupt: saving a checkpoint after this step (Ctrl-C again to abort)")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: leave the default handler
            self._previous = None

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.interrupted:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def plot_losses(log_path: Path, png_path: Path) -> bool:
    """Train and eval loss against step from ``log.jsonl``; False when nothing was logged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train: list[tuple[int, float]] = []
    evaluation: list[tuple[int, float]] = []
    if log_path.is_file():
        for line in log_path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if "loss" in record:
                train.append((record["step"], record["loss"]))
            if "eval_loss" in record:
                evaluation.append((record["step"], record["eval_loss"]))
    if not train and not evaluation:
        return False
    figure, axes = plt.subplots(figsize=(7, 4))
    if train:
        axes.plot(*zip(*train, strict=True), label="train loss")
    if evaluation:
        axes.plot(*zip(*evaluation, strict=True), marker="o", label="eval loss")
    axes.set_xlabel("step")
    axes.set_ylabel("loss")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(png_path, dpi=100)
    plt.close(figure)
    return True
