"""QLoRA on the device at hand: trained tokens/s and peak memory of hybridft's training path
against plain TRL + PEFT with the same settings, each side in its own process, in one run.

The model is built here from a config, with random weights (no download): on CUDA the
Llama-3-8B shape (4096 hidden, 32 layers, 32 heads / 8 KV heads, 14336 MLP, 128,256 vocabulary);
on a CPU machine the same script runs the `tiny` shape, so it is tested where there is no GPU.
Both sides: 4-bit NF4 with double quantisation, bf16 compute (fp32 on the CPU), LoRA r=16 on every
linear layer, gradient checkpointing, sequences of --seq-len tokens (random ids written as text,
one row = one sequence), batch size 1, --steps optimiser steps. hybridft runs `finetune` on a
TRL-format dataset file; the baseline is SFTTrainer + peft's LoraConfig + a BitsAndBytesConfig.

Anchor (torchtune's published QLoRA recipe): Llama-3-8B, 7.4 GiB peak, 2,413 tokens/s on an
RTX 4090.

  python bench/gpu_check.py [--shape auto|tiny|llama3-8b] [--steps 10] [--seq-len 2048]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SHAPES = {
    "llama3-8b": {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "vocab_size": 128256,
        "rope_theta": 500000.0,
        "max_position_embeddings": 8192,
    },
}


def build_model(shape: str, folder: Path) -> Path:
    """A random model of ``shape`` with the tiny model's tokenizer, saved in ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hybridft.core.models import build_tiny, build_tiny_tokenizer

    if shape == "tiny":
        return build_tiny(folder)
    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        **SHAPES[shape],
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    del model
    return folder


def write_rows(model: Path, out: Path, steps: int, seq_len: int) -> int:
    """``steps`` prompt/completion rows of about ``seq_len`` tokens each; returns their tokens."""
    from hybridft.core.models import load_tokenizer

    tokenizer = load_tokenizer(str(model))
    rng = random.Random(0)
    ordinary = [i for i in range(len(tokenizer)) if i not in set(tokenizer.all_special_ids)]
    total = 0
    with open(out, "w") as handle:
        for _ in range(steps):
            text = tokenizer.decode([rng.choice(ordinary) for _ in range(seq_len - 16)])
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][: seq_len - 16]
            prompt = tokenizer.decode(ids[: len(ids) - 8])
            completion = tokenizer.decode(ids[len(ids) - 8 :])
            total += len(tokenizer(prompt + completion)["input_ids"]) + 1
            handle.write(json.dumps({"prompt": prompt, "completion": completion}) + "\n")
    return total


def run_hybridft(model: Path, data: Path, out: Path, steps: int, seq_len: int) -> float:
    from hybridft.core.options import resolve
    from hybridft.training.config import OPTIONS
    from hybridft.training.sft import train

    options = {
        "model": str(model),
        "data": str(data),
        "out": str(out),
        "method": "qlora",
        "lora_r": 16,
        "lora_alpha": 32,
        "max_length": seq_len + 64,
        "max_steps": steps,
        "batch_size": 1,
        "gradient_checkpointing": True,
        "save_steps": steps * 10,
        "logging_steps": steps,
    }
    with contextlib.redirect_stdout(io.StringIO()):
        return float(train(resolve(OPTIONS, options, {}))["train_seconds"])


def run_baseline(model: Path, data: Path, out: Path, steps: int, seq_len: int) -> float:
    """Plain TRL + PEFT: what a user writes from TRL's QLoRA guide, with the same settings."""
    import torch
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig
    from trl import SFTConfig, SFTTrainer

    from hybridft.core.models import disable_cpu_4bit_repacking

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
    )
    network = AutoModelForCausalLM.from_pretrained(
        model, quantization_config=quantization, dtype=dtype, device_map={"": 0 if cuda else "cpu"}
    )
    disable_cpu_4bit_repacking(network)  # the CPU's 4-bit trap (STACK-NOTES), as hybridft avoids it
    tokenizer = AutoTokenizer.from_pretrained(model)
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=1,
        max_steps=steps,
        max_length=seq_len + 64,
        gradient_checkpointing=True,
        bf16=cuda,
        use_cpu=not cuda,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=network,
        args=args,
        train_dataset=load_dataset("json", data_files=str(data), split="train"),
        processing_class=tokenizer,
        peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear"),
    )
    return float(trainer.train().metrics["train_runtime"])


def child(side: str, model: Path, data: Path, steps: int, seq_len: int) -> None:
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        runner = run_baseline if side == "baseline" else run_hybridft
        seconds = runner(model, data, Path(tmp) / "out", steps, seq_len)
    gpu = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"seconds": seconds, "peak_gpu_gib": gpu, "peak_rss_gib": rss}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("auto", "tiny", "llama3-8b"), default="auto")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        side, model, data = args.child
        child(side, Path(model), Path(data), args.steps, args.seq_len)
        return
    import torch

    cuda = torch.cuda.is_available()
    shape = args.shape if args.shape != "auto" else ("llama3-8b" if cuda else "tiny")
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    work = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        started = time.perf_counter()
        model = build_model(shape, work / "model")
        tokens = write_rows(model, work / "rows.jsonl", args.steps, args.seq_len)
        print(
            f"{shape} on {device}: model built in {time.perf_counter() - started:.0f} s; {args.steps} steps of "
            f"one {args.seq_len}-token sequence ({tokens} tokens), QLoRA r=16 all-linear, gradient checkpointing"
        )
        results: dict[str, Any] = {}
        for side in ("baseline", "hybridft"):
            command = [sys.executable, __file__, "--steps", str(args.steps), "--seq-len", str(args.seq_len)]
            done = subprocess.run(
                [*command, "--child", side, str(model), str(work / "rows.jsonl")], capture_output=True, text=True
            )
            if done.returncode != 0:
                sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
            results[side] = json.loads(done.stdout.strip().splitlines()[-1])
        for side, result in results.items():
            memory = (
                f"peak GPU {result['peak_gpu_gib']:.2f} GiB" if cuda else f"peak RSS {result['peak_rss_gib']:.2f} GiB"
            )
            print(f"  {side:9s} {result['seconds']:8.1f} s  {tokens / result['seconds']:8.0f} tokens/s  {memory}")
        key = "peak_gpu_gib" if cuda else "peak_rss_gib"
        print(
            f"hybridft / TRL + PEFT: {results['baseline']['seconds'] / results['hybridft']['seconds']:.2f}x tokens/s, "
            f"{results['hybridft'][key] / results['baseline'][key]:.2f}x peak memory "
            "(anchor: torchtune Llama-3-8B QLoRA, 7.4 GiB, 2,413 tokens/s on an RTX 4090)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
