"""Peak RSS of reading and preparing the training rows of a large build-data folder: what
``finetune --trainer sft`` holds before its model loads (issue 22, item 4).

    python bench/sft_rows.py --rows 200000 --folder rows-200k [--num-proc 2]

writes a synthetic RAFT-like ``messages`` folder (once: kept for the next run), then reads it as
the sft trainer does and prints rows, seconds and the process's peak RSS (VmHWM, Linux). Run it
against another checkout (``PYTHONPATH=that-checkout``) to compare; a checkout whose
``load_sft_data`` returns lists gets them made into a Dataset as its sft.py did
(``Dataset.from_list``). Give each run a fresh ``HF_DATASETS_CACHE`` to measure a first load.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path


def write_folder(folder: Path, rows: int, seed: int = 0) -> None:
    """~2 KB a row: a question, four passages and an answer with a quote, as RAFT writes them."""
    rng = random.Random(seed)
    words = [f"w{n}" for n in range(5000)]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"kind": "raft", "options": {"format": "messages"}}))
    for split, count in (("train", rows), ("eval", rows // 20)):
        with (folder / f"{split}.jsonl").open("w", encoding="utf-8") as handle:
            for n in range(count):
                docs = "\n\n".join(" ".join(rng.choices(words, k=80)) for _ in range(4))
                question = " ".join(rng.choices(words, k=12)) + "?"
                answer = "##begin_quote##" + " ".join(rng.choices(words, k=20)) + "##end_quote## <ANSWER>: w1"
                row = {
                    "messages": [
                        {"role": "user", "content": f"{docs}\n\nQuestion: {question}"},
                        {"role": "assistant", "content": answer},
                    ],
                    "source": "raft",
                    "id": f"{split}-{n}",
                }
                handle.write(json.dumps(row) + "\n")


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--folder", type=Path, required=True)
    parser.add_argument("--num-proc", type=int, default=None)
    args = parser.parse_args()
    if not (args.folder / "manifest.json").is_file():
        write_folder(args.folder, args.rows)
    from datasets import Dataset

    from hybridft.training.sft_data import load_sft_data

    start, before = time.perf_counter(), peak_rss_mb()
    data = load_sft_data(args.folder, args.num_proc) if args.num_proc else load_sft_data(args.folder)
    train, evaluation = data.train, data.eval
    if isinstance(train, list):  # a checkout from before the rows were datasets
        train, evaluation = Dataset.from_list(train), Dataset.from_list(evaluation) if evaluation else None
    result = {
        "train_rows": len(train),
        "eval_rows": len(evaluation) if evaluation is not None else 0,
        "sources": data.sources,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb_before_loading": round(before),
        "peak_rss_mb": round(peak_rss_mb()),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
