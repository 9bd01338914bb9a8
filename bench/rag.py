"""The RAG system: opening a saved index against building it, and `eval rag` answering batched
against one question at a time, each pair measured in this one run.

  1. `hybridft index` over a synthetic corpus of --chunks chunks (bm25: read, chunk, index,
     write) against opening the saved folder (`--index`: chunks read back, the bm25s matrix
     memory-mapped) and answering one query; both must rank the sample queries identically.
  2. `eval rag`'s answering step on the `tiny` model over the bundled sample corpus: --questions
     questions, top-3 chunks each, batches of --batch-size against one at a time; same outputs.
  3. Invar-RAG on one backbone against two models: a random LLaMA of --backbone-hidden x
     --backbone-layers (built here, no download), an invar-retriever and an invar-generator trained
     on it for one step each; peak RSS of a process that loads the pair on one base model and asks
     4 questions, against one that loads the retriever and the generator as two models.

  python bench/rag.py [--chunks 100000] [--questions 64] [--batch-size 16] [--max-new-tokens 32]
                      [--only 1|2|3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from raft_build import synthetic_corpus  # noqa: E402

SAMPLES = Path(__file__).parent.parent / "data_recipes" / "samples" / "raft"


def index_config(docs: Path, out: Path, chunk_size: int = 512, overlap: int = 0) -> dict:
    from hybridft.core.options import resolve
    from hybridft.retrieval.index import OPTIONS

    options = {"docs": str(docs), "out": str(out), "chunk_size": chunk_size, "chunk_overlap": overlap}
    return resolve(OPTIONS, options, {})


def load_against_build(chunks: int, work: Path) -> None:
    from hybridft.core.progress import console
    from hybridft.retrieval.index import build, open_saved

    docs, qa = synthetic_corpus(work, chunks, 200)
    queries = [json.loads(line)["question"] for line in qa.read_text().splitlines()[:50]]
    out = work / "index"
    console.quiet = True
    started = time.perf_counter()
    build(index_config(docs, out))
    built_s = time.perf_counter() - started
    started = time.perf_counter()
    saved = open_saved(out)
    saved.search(queries[:1], 10)
    loaded_s = time.perf_counter() - started
    from hybridft.retrieval.index import corpus_index

    fresh = corpus_index(None, str(docs), "bm25", {"chunk_size": 512, "chunk_overlap": 0, "tokenizer": None})
    same = np.array_equal(saved.search(queries, 10)[0], fresh.search(queries, 10)[0])
    console.quiet = False
    print(
        f"1. {chunks} chunks: build the index {built_s:.2f} s, open the saved index + one query {loaded_s:.2f} s: "
        f"{built_s / loaded_s:.1f}x (target >= 10x); same rankings for {len(queries)} queries: {same}"
    )


def batched_against_one(questions: int, batch_size: int, max_new_tokens: int, work: Path) -> None:
    from hybridft.core.generation import load_generator
    from hybridft.core.readers import read_qa
    from hybridft.retrieval.index import build, open_saved
    from hybridft.retrieval.pipeline import answer, retrieve

    out = work / "sample-index"
    build(index_config(SAMPLES / "docs", out, 128, 16))
    index = open_saved(out)
    qa = read_qa(SAMPLES / "qa.jsonl")
    texts = [qa[i % len(qa)].question for i in range(questions)]
    model = load_generator("tiny", None)
    found = retrieve(index, texts, 3)
    answer(model, index, texts[:2], found[:2], 3, "raft", batch_size=2, max_new_tokens=4)  # warm-up
    timings, outputs = {}, {}
    for name, size in (("one at a time", 1), (f"batched ({batch_size})", batch_size)):
        started = time.perf_counter()
        outputs[name] = answer(model, index, texts, found, 3, "raft", batch_size=size, max_new_tokens=max_new_tokens)
        timings[name] = time.perf_counter() - started
    one, batched = timings.values()
    same = list(outputs.values())[0] == list(outputs.values())[1]
    print(f"2. eval rag answering, {questions} questions, top-3 chunks, {max_new_tokens} new tokens (tiny model):")
    for name, seconds in timings.items():
        print(f"  {name:14s} {seconds:6.2f} s  {questions / seconds:6.1f} questions/s")
    print(f"  batched / one at a time: {one / batched:.1f}x questions/s (target >= 3x); same outputs: {same}")


def backbone_runs(work: Path, hidden: int, layers: int) -> tuple[Path, Path, Path]:
    """A random LLaMA, an invar-retriever run and an invar-generator run over it, and an index."""
    import contextlib
    import io

    from hybridft.cli import build_data, finetune, index
    from hybridft.cli.common import run_guarded
    from hybridft.core.models import build_tiny

    base = build_tiny(work / "base", hidden_size=hidden, layers=layers)
    recipe = SAMPLES.parent.parent / "invar_sample.yaml"
    fast = ["--model", str(base), "--max-steps", "1", "--batch-size", "2", "--max-length", "1024"]
    fast += ["--no-gradient-checkpointing", "--save-steps", "100"]
    with contextlib.redirect_stdout(io.StringIO()):
        steps = [
            (build_data.main, ["--recipe", str(recipe), "--teacher", "none", "--out", str(work / "retrieval")]),
            (
                finetune.main,
                ["--data", str(work / "retrieval"), "--trainer", "invar-retriever", "--align-weight", "0", *fast],
            ),
        ]
        steps[1][1].extend(["--out", str(work / "retriever")])
        generation = ["--recipe", str(recipe), "--stage", "generation", "--top-k", "2"]
        generation += ["--retriever", str(work / "retriever")]
        steps += [
            (build_data.main, [*generation, "--out", str(work / "generation")]),
            (finetune.main, ["--data", str(work / "generation"), "--trainer", "invar-generator", *fast]),
            (index.main, ["--docs", str(SAMPLES / "docs"), "--chunk-size", "128", "--chunk-overlap", "16"]),
        ]
        steps[3][1].extend(["--retriever", str(work / "retriever"), "--out", str(work / "generator")])
        steps[4][1].extend(["--retriever", str(work / "retriever"), "--out", str(work / "index")])
        for command, tokens in steps:
            assert run_guarded(command, tokens) == 0, tokens
    return work / "retriever", work / "generator", work / "index"


def child(side: str, retriever: str, generator: str, index: str) -> None:
    """Load the system one way, answer 4 questions; print the resident memory then and the peak
    (MiB), and the bytes of the distinct parameter tensors held."""
    import gc
    import resource

    from hybridft.core.generation import load_generator
    from hybridft.core.readers import read_qa
    from hybridft.retrieval.index import open_saved
    from hybridft.retrieval.pipeline import answer, load_invar_pair, retrieve

    if side == "shared":
        chat, llm = load_invar_pair(retriever, generator, None)
        saved = open_saved(index, llm=llm)
    else:
        saved = open_saved(index)  # loads the retriever's own copy of the base model
        chat = load_generator(None, generator)
    questions = [row.question for row in read_qa(SAMPLES / "qa.jsonl")[:4]]
    found = retrieve(saved, questions, 3)
    answer(chat, saved, questions, found, 3, "invar", batch_size=4, max_new_tokens=8)
    gc.collect()
    resident = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmRSS"))
    models = {id(chat.model): chat.model, id(saved.ranker.retriever.model): saved.ranker.retriever.model}
    tensors = {id(p): p for model in models.values() for p in model.parameters()}
    held = sum(p.numel() * p.element_size() for p in tensors.values()) / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{int(resident.split()[1]) / 1024} {peak} {held}")


def one_backbone_against_two(work: Path, hidden: int, layers: int) -> None:
    import subprocess

    retriever, generator, index = backbone_runs(work, hidden, layers)
    weights = sum(p.stat().st_size for p in (work / "base").glob("*.safetensors")) / 2**20
    now, peak, held = {}, {}, {}
    for side in ("shared", "separate"):
        done = subprocess.run(
            [sys.executable, __file__, "--child", side, str(retriever), str(generator), str(index)],
            capture_output=True,
            text=True,
            check=True,
        )
        now[side], peak[side], held[side] = map(float, done.stdout.strip().splitlines()[-1].split())
    print(f"3. Invar-RAG, base model of {weights:.0f} MiB (hidden {hidden}, {layers} layers), after 4 questions:")
    for side, name in (("shared", "one backbone"), ("separate", "two models")):
        print(
            f"  {name:13s} parameters {held[side]:6.0f} MiB, resident {now[side]:6.0f} MiB, peak {peak[side]:6.0f} MiB"
        )
    print(
        f"  one backbone / two models: parameters {held['shared'] / held['separate']:.2f}x, "
        f"resident {now['shared'] / now['separate']:.2f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--backbone-hidden", type=int, default=1024)
    parser.add_argument("--backbone-layers", type=int, default=8)
    parser.add_argument("--only", choices=("1", "2", "3"))
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    work = Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        if args.only in (None, "1"):
            load_against_build(args.chunks, work)
        if args.only in (None, "2"):
            batched_against_one(args.questions, args.batch_size, args.max_new_tokens, work)
        if args.only in (None, "3"):
            one_backbone_against_two(work, args.backbone_hidden, args.backbone_layers)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
