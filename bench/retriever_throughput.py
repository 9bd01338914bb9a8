"""Invar-RAG retriever: texts (queries + documents) encoded per second, batched against a naive
loop that encodes one text at a time, in training and in indexing, on the `tiny` model.

Training: one optimiser step of the invar-retriever loss (InfoNCE + alignment + invariance) on
batches of retrieval rows from the bundled Invar-RAG sample; hybridft encodes all queries,
variants and the batch's distinct documents in three padded forward passes, the naive loop one
forward per text (the same texts). Both must reach the same losses.
Indexing: the sample's chunks embedded by `Retriever.encode` in length-sorted batches against
one text per forward pass; the embeddings must agree.

  python bench/retriever_throughput.py [--rows-per-step 8] [--steps 5] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

RECIPE = Path(__file__).parent.parent / "data_recipes" / "invar_sample.yaml"


def retrieval_rows() -> list[dict[str, Any]]:
    from hybridft.cli import build_data
    from hybridft.cli.common import run_guarded

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        out = Path(tmp) / "invar"
        code = run_guarded(build_data.main, ["--recipe", str(RECIPE), "--teacher", "none", "--out", str(out)])
        assert code == 0
        rows = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    for row in rows:  # synthetic teacher scores, so that the alignment term runs too
        row["teacher_scores"] = [0.9] * len(row["positives"]) + [0.1] * len(row["negatives"])
    return rows


def embed_one_by_one(model: Any, ids: Any, mask: Any) -> Any:
    """The naive encoder: one forward pass per text, unpadded."""
    import torch

    from hybridft.retrieval.llm_index import embed_for_training

    rows = []
    for i in range(len(ids)):
        length = int(mask[i].sum())
        rows.append(embed_for_training(model, ids[i : i + 1, :length], mask[i : i + 1, :length]))
    return torch.cat(rows) if rows else embed_for_training(model, ids, mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows-per-step", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32, help="texts per forward pass when indexing")
    parser.add_argument("--max-length", type=int, default=256)
    args = parser.parse_args()

    import numpy as np
    import torch
    import transformers
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from hybridft.core import models
    from hybridft.retrieval.llm_index import Retriever, embed_for_training, encoder_settings
    from hybridft.training.invar_retriever import RetrievalCollator, retriever_losses

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    rows = retrieval_rows()
    path = models.resolve_model("tiny")
    tokenizer = models.load_tokenizer(path)
    base = AutoModelForCausalLM.from_pretrained(path)
    lora = models.lora_config({"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": ["all-linear"]})
    model = get_peft_model(base, lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    config = {
        "temperature": 0.05,
        "teacher_temperature": 0.05,
        "align_weight": 1.0,
        "invariance_weight": 1.0,
        "invariance": "sym-kl",
        "max_length": args.max_length,
    }
    collate = RetrievalCollator(tokenizer, args.max_length)
    steps = [rows[(i * args.rows_per_step) % len(rows) :][: args.rows_per_step] for i in range(args.steps)]

    print(f"tiny model, LoRA r=16; {len(rows)} Invar-RAG sample rows, {args.rows_per_step} rows per step")
    model.train()
    retriever_losses(model, collate(steps[0][:2]), config)  # warm-up
    timings, totals, losses = {}, {}, {}
    for name in ("naive (one text per forward)", "hybridft (batched)"):
        started, encoded, final = time.perf_counter(), 0, []
        for batch_rows in steps:
            optimizer.zero_grad()
            batch = collate(batch_rows)
            embed = embed_one_by_one if name.startswith("naive") else embed_for_training
            loss = retriever_losses(model, batch, config, embed)["loss"]
            loss.backward()
            final.append(float(loss.detach()))
            encoded += len(batch["query_ids"]) + len(batch["variant_ids"]) + len(batch["doc_ids"])
        timings[name], totals[name] = time.perf_counter() - started, encoded
        losses[name] = final
    print("training (forward + backward of the full loss, no optimiser update):")
    for name, seconds in timings.items():
        print(f"  {name:30s} {seconds:6.2f} s  {totals[name] / seconds:7.1f} texts/s")
    naive_s, batched_s = timings.values()
    naive_losses, batched_losses = losses.values()
    same = bool(np.allclose(naive_losses, batched_losses, atol=1e-4))
    print(f"  batched / naive: {naive_s / batched_s:.1f}x texts/s; same losses: {same}")

    model.eval()
    documents = sorted({t for r in rows for t in r["positives"] + r["negatives"]})
    documents = (documents * (1 + 512 // max(1, len(documents))))[:512]
    retriever = Retriever(model, tokenizer, encoder_settings("tiny", args.max_length), "bench", "bench")
    retriever.encode(documents[:4], "passage", args.batch_size)  # warm-up
    timings, embeddings = {}, {}
    for name, batch_size in (
        ("naive (one text per forward)", 1),
        (f"hybridft (batches of {args.batch_size})", args.batch_size),
    ):
        started = time.perf_counter()
        embeddings[name] = retriever.encode(documents, "passage", batch_size)
        timings[name] = time.perf_counter() - started
    print(f"indexing ({len(documents)} passages):")
    for name, seconds in timings.items():
        print(f"  {name:30s} {seconds:6.2f} s  {len(documents) / seconds:7.1f} texts/s")
    naive_s, batched_s = timings.values()
    one, batched = embeddings.values()
    same = bool(np.allclose(one, batched, atol=1e-4))
    print(f"  batched / naive: {naive_s / batched_s:.1f}x texts/s; same embeddings: {same}")


if __name__ == "__main__":
    main()
