"""Trained tokens per second and peak memory of `hybridft finetune` against a plain TRL script.

Both sides fine-tune the same `tiny` model with the same LoRA (r=16, all linear layers), batch
size and number of epochs on the same prompt/completion rows, whose lengths vary widely (from a
few dozen to ~900 tokens). The baseline is what a TRL user writes first: SFTTrainer with default
settings (random batches padded to their longest row). Trained tokens are the rows' real tokens
(no padding); each side runs in its own process, so each peak RSS is its own.

  python bench/sft_throughput.py [--rows 400] [--batch-size 8] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the", "a", "river", "city", "capital", "flows", "north", "south", "old", "new", "bridge", "harbour", "tower")


def write_data(folder: Path, rows: int, seed: int = 0) -> None:
    """A build-data-like folder: manifest.json + train.jsonl with widely varying lengths."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.jsonl", "w") as handle:
        for i in range(rows):
            n_words = int(rng.choice([16, 32, 64, 128, 256, 384]) * rng.uniform(0.7, 1.0))
            prompt = " ".join(rng.choice(WORDS) for _ in range(n_words))
            answer = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))
            handle.write(json.dumps({"prompt": f"Question {i}: {prompt}\nAnswer:", "completion": " " + answer}) + "\n")
    (folder / "manifest.json").write_text(json.dumps({"kind": "bench", "options": {"format": "prompt-completion"}}))


def real_tokens(data: Path) -> int:
    from hybridft.core.models import load_tokenizer, resolve_model

    tokenizer = load_tokenizer(resolve_model("tiny"))
    rows = [json.loads(line) for line in (data / "train.jsonl").read_text().splitlines()]
    return sum(len(tokenizer(r["prompt"] + r["completion"])["input_ids"]) + 1 for r in rows)  # + eos


def run_baseline(data: Path, out: Path, batch_size: int, epochs: float) -> float:
    """Plain TRL: SFTTrainer with its defaults (CPU needs bf16=False) and a LoRA config."""
    from datasets import load_dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from hybridft.core.models import resolve_model

    path = resolve_model("tiny")
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=batch_size,
        num_train_epochs=epochs,
        bf16=False,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(path),
        args=args,
        train_dataset=load_dataset("json", data_files=str(data / "train.jsonl"), split="train"),
        processing_class=AutoTokenizer.from_pretrained(path),
        peft_config=LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules="all-linear"),
    )
    return trainer.train().metrics["train_runtime"]


def run_hybridft(data: Path, out: Path, batch_size: int, epochs: float) -> float:
    from hybridft.core.options import resolve
    from hybridft.training.config import OPTIONS
    from hybridft.training.sft import train

    config = resolve(
        OPTIONS,
        {"model": "tiny", "data": str(data), "out": str(out), "batch_size": batch_size, "epochs": epochs},
        {},
    )
    return train(config)["train_seconds"]


def child(side: str, data: Path, batch_size: int, epochs: float) -> None:
    import contextlib
    import io

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        runner = run_baseline if side == "baseline" else run_hybridft
        seconds = runner(data, Path(tmp) / "out", batch_size, epochs)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--child", choices=["baseline", "hybridft"])
    parser.add_argument("--data")
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.data), args.batch_size, args.epochs)
        return

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write_data(data, args.rows)
        tokens = real_tokens(data) * args.epochs
        results = {}
        for side in ("baseline", "hybridft"):
            command = [sys.executable, __file__, "--child", side, "--data", str(data)]
            command += ["--batch-size", str(args.batch_size), "--epochs", str(args.epochs)]
            started = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{side} failed:\n{done.stderr[-3000:]}")
            results[side] = json.loads(done.stdout.strip().splitlines()[-1])
            results[side]["wall"] = time.perf_counter() - started
    print(f"{args.rows} rows, {tokens:.0f} trained (non-padding) tokens, batch {args.batch_size}, {args.epochs} epochs")
    for side, result in results.items():
        rate = tokens / result["seconds"]
        print(
            f"  {side:9s} {result['seconds']:7.1f} s training  {rate:8.0f} tokens/s"
            f"  peak RSS {result['peak_mib']:.0f} MiB"
        )
    speedup = results["baseline"]["seconds"] / results["hybridft"]["seconds"]
    memory = results["hybridft"]["peak_mib"] / results["baseline"]["peak_mib"]
    print(f"hybridft / TRL defaults: {speedup:.2f}x trained tokens/s (target >= 1.3x), peak memory {memory:.2f}x")


if __name__ == "__main__":
    main()
