"""The ``sft`` trainer: TRL's SFTTrainer on a build-data folder, answer-only loss, LoRA / QLoRA /
full, with run.json, log.jsonl, loss.png, resume and Ctrl-C handled."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hybridft.core import models
from hybridft.core.errors import UsageError
from hybridft.core.progress import log
from hybridft.training import run as training_run
from hybridft.training.sft_data import SFTData, load_sft_data


def train(
    config: dict[str, Any],
    extra_callbacks: Sequence[Any] = (),
    *,
    adapters: Callable[[Any, dict[str, Any], list[int]], Any] | None = None,
    run_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run (or resume) one SFT run described by resolved ``config``; return run.json's content.

    ``extra_callbacks`` are added to the trainer (tests use it to interrupt a run midway).
    ``adapters(model, config, added_token_ids)`` puts the adapters on the base model (default: one
    new LoRA adapter; the invar-generator puts the frozen retriever adapter under its own), and
    ``run_extra`` adds keys to run.json.
    """
    import transformers

    data = load_sft_data(config["data"], config["dataset_num_proc"])  # bad data is refused before --out is touched
    start = training_run.start(config)
    transformers.set_seed(config["seed"])  # LoRA and marker rows are initialised before the Trainer seeds
    device = models.detect_device()
    method, tokenizer = start.method, start.tokenizer
    if config["chat_template"]:
        tokenizer.chat_template = Path(config["chat_template"]).read_text(encoding="utf-8")
    model = models.load_for_training(
        start.model_path, method, device, gradient_checkpointing=config["gradient_checkpointing"]
    )
    added = models.add_marker_tokens(model, tokenizer, models.missing_markers(tokenizer, data.markers))
    if method != "full":
        model = (adapters or _with_lora)(model, config, added)

    trainer, callbacks = _build_trainer(config, model, tokenizer, data, device, extra_callbacks)
    skipped = _drop_too_long(trainer, config["max_length"])
    trained_tokens = _answer_tokens(trainer.train_dataset)

    run = training_run.new_run(start, config, method, device)
    run |= {
        "data": {
            "dir": str(config["data"]),
            "manifest_sha256": data.manifest_sha256,
            "format": data.format,
            "conversational": data.conversational,
            "train_rows": len(trainer.train_dataset),
            "eval_rows": len(trainer.eval_dataset) if trainer.eval_dataset is not None else 0,
            "sources": data.sources,
            "answer_tokens_per_epoch": trained_tokens,
        },
        "added_tokens": dict(zip(tokenizer.convert_ids_to_tokens(added), added, strict=True)),
        "skipped": skipped,
        "resumed_from": Path(start.checkpoint).name if start.checkpoint else None,
        **(run_extra or {}),
    }
    what = f"{config['model']} ({method}) on {device.description}, {run['data']['train_rows']} train rows"
    training_run.begin(start, run, what)

    def merge() -> None:
        if config["save_merged"]:
            from hybridft.training.export import save_merged

            save_merged(start.out, run)

    return training_run.finish(trainer, start, run, callbacks["interrupt"], after_save=merge)


def _with_lora(model: Any, config: dict[str, Any], added: list[int]) -> Any:
    from peft import get_peft_model

    # Only the input rows of added markers train. TRL's SFTTrainer computes the loss with a fused
    # LM head that reads lm_head.weight directly, bypassing any adapter on lm_head; the output rows
    # keep their initialisation (the mean of the marker's pieces), see docs/finetune.md.
    trainable_tokens = {"embed_tokens": added} if added else {}
    lora = models.lora_config(config, trainable_tokens)
    if config["gradient_checkpointing"]:
        model.enable_input_require_grads()
    peft_model = get_peft_model(model, lora)
    if added:
        # peft would save both whole embedding matrices once the vocabulary grew (~1 GB on an 8B
        # model). The trained rows are in the adapter and the rest is re-created exactly on load
        # (models.readd_marker_tokens), so the adapter stays small.
        peft_model.save_pretrained = functools.partial(peft_model.save_pretrained, save_embedding_layers=False)
    return peft_model


def _build_trainer(
    config: dict[str, Any],
    model: Any,
    tokenizer: Any,
    data: SFTData,
    device: models.Device,
    extra_callbacks: Sequence[Any],
) -> tuple[Any, dict[str, Any]]:
    from trl import SFTConfig, SFTTrainer

    out = Path(config["out"])
    has_eval = data.eval is not None
    args = SFTConfig(
        **training_run.training_arguments(
            config,
            device,
            has_eval,
            gradient_checkpointing=config["gradient_checkpointing"],
            train_sampling_strategy="group_by_length" if config["group_by_length"] else "random",
            max_length=None,  # over-long rows are dropped and counted below, never cut mid-answer
            packing=config["packing"],
            completion_only_loss=True,
            dataset_num_proc=config["dataset_num_proc"],
        )
    )
    if config["attn_implementation"]:
        model.config._attn_implementation = config["attn_implementation"]
    callbacks = training_run.callbacks(out)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=data.train,
        eval_dataset=data.eval,
        processing_class=tokenizer,
        callbacks=[*callbacks.values(), *extra_callbacks],
    )
    training_run.quiet(trainer)
    return trainer, callbacks


def _drop_too_long(trainer: Any, max_length: int) -> dict[str, int]:
    """Drop (and count) tokenised rows longer than ``max_length``: cutting them would cut the
    answer, which comes last, and train on a prompt with no answer."""
    import numpy as np
    import pyarrow.compute as pc

    skipped = {}
    for split in ("train", "eval"):
        dataset = getattr(trainer, f"{split}_dataset")
        if dataset is None:
            continue
        lengths = np.concatenate([pc.list_value_length(batch["input_ids"]).to_numpy() for batch in _batches(dataset)])
        keep = np.flatnonzero(lengths <= max_length)
        skipped[f"{split}_too_long"] = len(dataset) - len(keep)
        if len(keep) < len(dataset):
            setattr(trainer, f"{split}_dataset", dataset.select(keep))
    if skipped.get("train_too_long"):
        log(f"skipped {skipped['train_too_long']} train rows longer than max_length={max_length} tokens")
    if not len(trainer.train_dataset):
        raise UsageError(f"max_length={max_length}: every train row is longer; raise max_length")
    return skipped


def _answer_tokens(dataset: Any) -> int:
    """Tokens that carry a label (the answers'), over the tokenised rows."""
    import pyarrow.compute as pc

    return sum(pc.sum(pc.not_equal(pc.list_flatten(batch["labels"]), -100)).as_py() or 0 for batch in _batches(dataset))


def _batches(dataset: Any) -> Any:
    """The rows as Arrow tables of 10,000 (an index mapping from ``select`` applied)."""
    return dataset.with_format("arrow").iter(batch_size=10_000)
