"""RAFT build speed: 10,000 questions over a synthetic 100,000-chunk corpus (Zipf-like words).

Prints, from one run:
  1. the whole `build-data raft` with bm25 distractors (read, index, search, build, write);
  2. hybridft's bm25 search against rank_bm25 (BM25Okapi.get_scores + top-k) per query, on a
     sample of queries, as a ratio;
  3. the whole build with `random` distractors against merely serialising the same output
     (best of three runs each, the two sides alternating).

    python bench/raft_build.py [--questions 10000] [--chunks 100000] [--rank-bm25-sample 20]

Needs the bench extra (`pip install -e .[bench]`) for rank_bm25.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic_corpus(folder: Path, n_chunks: int, n_questions: int, seed: int = 0) -> tuple[Path, Path]:
    """Chunks of 40-120 words (sentences of 16) drawn from a Zipf(1.1) vocabulary of 50,000 words. Each question
    takes 8 words of its oracle chunk; its answer is the rarest word of that chunk."""
    rng = np.random.default_rng(seed)
    # "w12x" is no substring of "w112x": distinct words do not contain each other, as in real text.
    vocab = np.array([f"w{i}x" for i in range(50_000)])
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    weights /= weights.sum()
    lengths = rng.integers(40, 121, size=n_chunks)
    words = vocab[rng.choice(len(vocab), size=int(lengths.sum()), p=weights)]
    docs_path, qa_path = folder / "docs.jsonl", folder / "qa.jsonl"
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    with open(docs_path, "w") as handle:
        for i in range(n_chunks):
            chunk_words = words[offsets[i] : offsets[i + 1]]
            # Sentences of 16 words, as prose has (the quote in a CoT answer is one sentence).
            text = ". ".join(" ".join(chunk_words[s : s + 16]) for s in range(0, len(chunk_words), 16)) + "."
            handle.write(json.dumps({"id": f"c{i}", "title": f"chunk {i}", "text": text}) + "\n")
    pyrng = random.Random(seed)
    with open(qa_path, "w") as handle:
        for q in range(n_questions):
            target = pyrng.randrange(n_chunks)
            chunk = list(words[offsets[target] : offsets[target + 1]])
            question = " ".join(pyrng.sample(chunk, 8)) + "?"
            answer = max(chunk, key=lambda w: int(w[1:-1]))  # its rarest word, as real answers are specific
            row = {"id": f"q{q}", "question": question, "answers": [answer], "doc_ids": [f"c{target}"]}
            handle.write(json.dumps(row) + "\n")
    return docs_path, qa_path


def run_build(docs: Path, qa: Path, out: Path, strategy: str) -> float:
    from hybridft.cli import build_data

    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        code = build_data.main(
            [
                "raft",
                "--qa",
                str(qa),
                "--docs",
                str(docs),
                "--out",
                str(out),
                "--distractor-strategy",
                strategy,
                "--overwrite",
            ]
        )
    assert code == 0
    return time.perf_counter() - start


def serialise_only(out: Path, target: Path) -> float:
    """Write the same records and trainer rows again, from memory: the floor for any build."""
    from hybridft.core.outputs import write_jsonl
    from hybridft.core.render import render

    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    target.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_jsonl(target / "records.jsonl", records)
    for split in ("train", "eval"):
        write_jsonl(target / f"{split}.jsonl", (render(r, "messages") for r in records if r["split"] == split))
    return time.perf_counter() - start


def bm25_against_rank_bm25(docs: Path, qa: Path, sample: int) -> dict[str, float]:
    from rank_bm25 import BM25Okapi

    from hybridft.core.readers import read_documents, read_qa
    from hybridft.retrieval.rankers import BM25Index

    texts = [d.text for d in read_documents(docs)[0]]
    questions = [r.question for r in read_qa(qa)]
    start = time.perf_counter()
    index = BM25Index(texts)
    ours_index = time.perf_counter() - start
    start = time.perf_counter()
    index.search(questions, k=24)
    ours_per_query = (time.perf_counter() - start) / len(questions)

    start = time.perf_counter()
    okapi = BM25Okapi([t.lower().split() for t in texts])
    theirs_index = time.perf_counter() - start
    start = time.perf_counter()
    for question in questions[:sample]:
        scores = okapi.get_scores(question.lower().rstrip("?").split())
        np.argpartition(-scores, 24)[:24]
    theirs_per_query = (time.perf_counter() - start) / sample
    return {
        "hybridft_index_s": ours_index,
        "rank_bm25_index_s": theirs_index,
        "hybridft_ms_per_query": ours_per_query * 1e3,
        "rank_bm25_ms_per_query": theirs_per_query * 1e3,
        "speedup": theirs_per_query / ours_per_query,
    }


def bm25_measurements(docs: Path, qa: Path, work: Path, sample: int) -> None:
    bm25_s = run_build(docs, qa, work / "bm25", "bm25")
    print(f"1. build with bm25 distractors: {bm25_s:.1f} s (target < 60 s on 2 cores)")
    r = bm25_against_rank_bm25(docs, qa, sample)
    print(
        f"2. bm25 search: hybridft {r['hybridft_ms_per_query']:.2f} ms/query "
        f"(index {r['hybridft_index_s']:.1f} s), "
        f"rank_bm25 {r['rank_bm25_ms_per_query']:.0f} ms/query on {sample} queries "
        f"(index {r['rank_bm25_index_s']:.1f} s): {r['speedup']:.0f}x (target >= 50x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=10_000)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--rank-bm25-sample", type=int, default=20)
    parser.add_argument("--only-random", action="store_true", help="run measurement 3 alone")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="raft-bench-"))
    try:
        start = time.perf_counter()
        docs, qa = synthetic_corpus(work, args.chunks, args.questions)
        print(f"corpus: {args.chunks} chunks, {args.questions} questions (made in {time.perf_counter() - start:.1f} s)")

        if not args.only_random:
            bm25_measurements(docs, qa, work, args.rank_bm25_sample)
        # Best of three for both: the ratio of two short timings is sensitive to a noisy machine. The
        # two sides alternate, so that a burst of load from elsewhere does not fall on one side only.
        # Each side writes into a new folder: the build is not charged for deleting the previous
        # run's output (~0.03 s for these 60 MB) when the serialiser is not.
        random_runs, write_runs = [], []
        for n in range(3):
            random_runs.append(run_build(docs, qa, work / f"random{n}", "random"))
            write_runs.append(serialise_only(work / f"random{n}", work / f"serialised{n}"))
        random_s, write_s = min(random_runs), min(write_runs)
        print(
            f"3. build with random distractors: {random_s:.2f} s; serialising the same output: {write_s:.2f} s; "
            f"ratio {random_s / write_s:.2f}x (target <= 3x)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
