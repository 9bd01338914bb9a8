"""TRL's SFTTrainer takes train.jsonl as written, in both trainer formats, with answer-only loss."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from conftest import read_jsonl

from hybridft.core.models import resolve_model

logging.getLogger("bitsandbytes").setLevel(logging.ERROR)


@pytest.mark.parametrize("fmt", ["messages", "prompt-completion"])
def test_sft_trainer_accepts_train_jsonl(cli, sample: dict[str, Path], fmt: str) -> None:
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    out = sample["tmp"] / "data"
    assert (
        cli(
            "raft",
            "--qa",
            sample["qa"],
            "--docs",
            sample["docs"],
            "--distractors",
            "2",
            "--eval-fraction",
            "0",
            "--format",
            fmt,
            "--out",
            out,
        )[0]
        == 0
    )
    assert read_jsonl(out / "train.jsonl")
    folder = resolve_model("tiny")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    dataset = load_dataset("json", data_files=str(out / "train.jsonl"), split="train")
    args = SFTConfig(
        output_dir=str(sample["tmp"] / "run"),
        max_steps=2,
        per_device_train_batch_size=2,
        use_cpu=True,
        bf16=False,
        report_to="none",
        save_strategy="no",
        activation_checkpointing=False,
        assistant_only_loss=fmt == "messages",
        max_length=512,
    )
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    batch = next(iter(trainer.get_train_dataloader()))
    # Loss only on the answer: every labelled position decodes to text of the assistant turn.
    labelled = batch["labels"][0][batch["labels"][0] != -100]
    answer = tokenizer.decode(labelled)
    assert "<ANSWER>:" in answer and "<DOCUMENT>" not in answer
    result = trainer.train()
    assert result.training_loss > 0
