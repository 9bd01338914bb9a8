"""``hybridft finetune``: options -> checks -> a training run in --out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hybridft.cli.common import EXIT_INTERRUPTED, EXIT_OK, emit, options_command

USAGE = """\
usage: hybridft finetune [--config FILE.yaml] [--OPTION VALUE ...] --out DIR

Fine-tune a LLaMA-family model on a build-data folder (LoRA, QLoRA or full):
--trainer sft (TRL SFT, answer-only loss), invar-retriever (the LLM as a bi-encoder retriever,
Invar-RAG) or invar-generator (a second adapter beside a frozen --retriever RUN_DIR).
Every config key is also a long option (lora_r <-> --lora-r); the command line wins.
Rerunning the same command continues from the newest checkpoint in DIR.
Under `accelerate launch ... -m hybridft finetune ...` it trains on every process.

  --config, --recipe FILE   YAML config (relative paths start at its folder)
  --dry-run                 check and print the resolved options; train nothing, write nothing
  --json                    print the result as one JSON document on stdout
  --debug                   show tracebacks
"""


def _trainer(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The train function of ``--trainer`` (each imports its heavy libraries itself)."""
    if name == "invar-retriever":
        from hybridft.training import invar_retriever

        return invar_retriever.train
    if name == "invar-generator":
        from hybridft.training import invar_generator

        return invar_generator.train
    from hybridft.training import sft

    return sft.train


def _read_inputs(config: dict[str, Any]) -> None:
    """What ``--dry-run`` adds to the checks: the model's config and tokenizer loaded and the
    method checked, as the run does before it touches ``--out``; every row of ``--data`` read and
    checked as its trainer reads it (through the rows cache, which the run then reuses). An
    ``hf:`` dataset is only parsed (downloading it is work)."""
    from hybridft.core.models import resolve_model
    from hybridft.training.run import loadable

    loadable(resolve_model(config["model"]), config)
    data = config.get("data")
    if not data or str(data).startswith("hf:"):
        return
    if config["trainer"] == "invar-retriever":
        from hybridft.training.invar_retriever import load_retrieval_data

        load_retrieval_data(data, config["dataset_num_proc"])
    else:
        from hybridft.training.sft_data import load_sft_data

        load_sft_data(data, config["dataset_num_proc"])


def main(tokens: list[str]) -> int:
    from hybridft.training.config import OPTIONS, check

    parsed = options_command(tokens, OPTIONS, check, name="finetune", usage=USAGE, read_inputs=_read_inputs)
    if parsed is None:
        return EXIT_OK
    config, control = parsed
    as_json = bool(control.get("json"))
    run = _trainer(config["trainer"])(config)
    from accelerate import PartialState

    if not PartialState().is_main_process:  # under accelerate launch, one process reports
        return EXIT_OK if run["status"] == "complete" else EXIT_INTERRUPTED
    if run["status"] == "interrupted":
        emit(
            {"command": "finetune", "status": "interrupted", "out": str(config["out"]), "steps": run["steps"]},
            as_json,
            f"interrupted at step {run['steps']}; checkpoint saved in {config['out']}. "
            "Run the same command again to resume.",
        )
        return EXIT_INTERRUPTED
    final = run.get("final", {})
    losses = ", ".join(f"{k}={v:.4f}" for k, v in final.items())
    emit(
        {
            "command": "finetune",
            "status": "complete",
            "out": str(config["out"]),
            "steps": run["steps"],
            "method": run["method"],
            "final": final,
            **{key: run[key] for key in ("skipped", "truncated") if key in run},
        },
        as_json,
        f"finetune: {run['steps']} steps ({run['method']}), {losses} -> {config['out']}",
    )
    return EXIT_OK
