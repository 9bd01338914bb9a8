"""The ``invar-generator`` trainer (Invar-RAG's second stage): the base model carries the trained
retriever adapter, frozen, and a second LoRA adapter trains on generation-stage rows (question +
retrieved documents -> answer) with the answer-only SFT loss of :mod:`hybridft.training.sft`.

What the generator sees: PEFT runs one LoRA adapter at a time. The retriever adapter is loaded
under the name ``retriever`` with ``is_trainable=False`` and the generator adapter (``default``) is
made the active one, so the forward pass of training is base + generator. The retriever adapter
serves the other pass of the same backbone, retrieval (``build-data invar --stage generation
--retriever RUN_DIR``, ``eval retrieval --ranker adapter``); stacking it under the generator would
make generation depend on a delta trained for a contrastive embedding objective, and would need
both adapters active at every later use. The run folder holds only the generator adapter (a
plain PEFT adapter for ``eval raft --adapter`` and ``--save-merged``); run.json names the
retriever and the sha256 of its files, checked unchanged after training.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hybridft.core import models
from hybridft.core.outputs import sha256_file
from hybridft.training import sft
from hybridft.training.run_folder import write_run_json

RETRIEVER_ADAPTER = "retriever"
GENERATOR_ADAPTER = "default"  # saved at the top of the run folder, where PEFT loaders look


def adapter_hashes(folder: Path) -> dict[str, str]:
    """sha256 of the retriever run's adapter and settings files."""
    names = ("adapter_model.safetensors", "adapter_config.json", "retriever.json")
    return {name: sha256_file(folder / name) for name in names if (folder / name).is_file()}


def with_frozen_retriever(retriever: Path, model: Any, config: dict[str, Any], added: list[int]) -> Any:
    """``model`` with the retriever adapter (frozen, inactive) and a new trainable generator adapter
    (active)."""
    from peft import PeftModel

    if config["gradient_checkpointing"]:
        model.enable_input_require_grads()
    peft_model = PeftModel.from_pretrained(model, str(retriever), adapter_name=RETRIEVER_ADAPTER, is_trainable=False)
    lora = models.lora_config(config, {"embed_tokens": added} if added else None)
    peft_model.add_adapter(GENERATOR_ADAPTER, lora)
    peft_model.set_adapter(GENERATOR_ADAPTER)  # the only adapter in the forward pass; the rest frozen
    for name, parameter in peft_model.named_parameters():
        if f".{RETRIEVER_ADAPTER}." in name:
            parameter.requires_grad_(False)
    save: dict[str, Any] = {"selected_adapters": [GENERATOR_ADAPTER]}
    if added:  # as in sft: the trained marker rows are in the adapter, the rest is re-created on load
        save["save_embedding_layers"] = False
    peft_model.save_pretrained = functools.partial(peft_model.save_pretrained, **save)  # type: ignore[method-assign]
    return peft_model


def train(config: dict[str, Any], extra_callbacks: Sequence[Any] = ()) -> dict[str, Any]:
    """Run (or resume) one invar-generator run; return run.json's content."""
    from accelerate import PartialState

    retriever = Path(config["retriever"])
    before = adapter_hashes(retriever)
    run_extra = {
        "retriever": {
            "dir": str(retriever),
            "sha256": before,
            "adapters": {RETRIEVER_ADAPTER: "frozen, inactive", GENERATOR_ADAPTER: "trained, active"},
        }
    }
    run = sft.train(
        config,
        extra_callbacks,
        adapters=functools.partial(with_frozen_retriever, retriever),
        run_extra=run_extra,
    )
    after = adapter_hashes(retriever)
    if after != before:
        raise RuntimeError(f"retriever={retriever}: its adapter files changed during training")
    run["retriever"]["unchanged"] = True
    if run["status"] == "complete" and PartialState().is_main_process:
        write_run_json(Path(config["out"]), run)
    return run
