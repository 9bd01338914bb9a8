"""Each paper's effect reproduced in miniature, on questions about people held out from training.

A synthetic domain (data_recipes/effects/domain.py: made-up people with attributes drawn at random,
one document per attribute, a knowledge graph over the same people; whole families held out) and
tiny LLaMA models trained from scratch on the CPU, every step through hybridft's own commands
(build-data, finetune, eval), with the data recipes of data_recipes/effects/:

- RAFT: train on (a) the oracle document only, (b) the oracle + 4 distractors, (c) the same with
  the oracle kept in 80% of the examples; evaluate each on the held-out questions with 0, 2, 4, 8
  test-time distractors (`eval raft --distractors`) and answering from bm25-retrieved documents
  (`eval rag`).
- RoG: one model trained on planning + reasoning; evaluated with planning that follows the graph,
  planning over the graph's relation names only, free planning, and no planning at all (the
  question alone: `eval rog --reasoning-paths none`).
- Invar-RAG: the retriever trained with invariance weight 0 and with the default (1.0); recall and
  the invariance metrics (top-k overlap, Kendall tau between a query's ranking and its variants')
  on the held-out queries (`eval retrieval`).

Every experiment runs once per seed (the seed draws the domain, the data and the training); the
tables give the mean and the range over seeds, and an effect is claimed only where every seed shows
it. Before training, every training file is checked for held-out entity names, questions and
document texts (none may appear). Jobs run in --workers processes with one torch thread each.

  python bench/effects.py [--seeds 0,1,2] [--only raft,rog,invar] [--workers 2] [--out effects-report]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

RECIPES = Path(__file__).resolve().parent.parent / "data_recipes" / "effects"
sys.path.insert(0, str(RECIPES))
import domain as domain_module  # noqa: E402

# Everything an experiment's size depends on; tests run the same jobs with a smaller copy.
FULL: dict[str, Any] = {
    # 200 families of 6 people, 3 attributes each; the last 10 families (180 questions) held out.
    "domain": {"families": 200, "per_family": 6, "held_out_families": 10},
    # One model size for every experiment: a 2-layer LLaMA, hidden 128, random init (seed 0).
    "model": {"hidden_size": 128, "layers": 2},
    # The reader's own domain (3-syllable names, so none is a test person's): its pretraining.
    "reader_domain": {"families": 200, "per_family": 6, "held_out_families": 0, "syllables": 3},
    "steps": {"reader": 800, "raft": 300, "rog": 600, "invar": 300},
    "batch_size": {"reader": 16, "raft": 8, "rog": 16, "invar": 16},
    "learning_rate": {"reader": "2e-3", "raft": "1e-3", "rog": "1e-3", "invar": "1e-3"},
    # Held-out questions evaluated (None: all): RAFT's 180 are asked at 4 distractor counts and
    # through eval rag with a chain of thought each, so half of them (5 of the 10 families).
    "limit": {"raft": 90, "rog": 150, "invar": None},
}
# A run that only checks the plumbing (seconds of training, numbers meaningless).
SMOKE: dict[str, Any] = {
    **FULL,
    "domain": {"families": 12, "per_family": 4, "held_out_families": 3},
    "reader_domain": {"families": 12, "per_family": 4, "held_out_families": 0, "syllables": 3},
    "steps": dict.fromkeys(FULL["steps"], 3),
    "limit": {"raft": 6, "rog": 6, "invar": 6},
}
TRAIN = [
    "--method", "full", "--warmup-ratio", "0.05", "--no-gradient-checkpointing",
    "--logging-steps", "100", "--save-steps", "100000", "--max-length", "512",
]  # fmt: skip
RAFT_VARIANTS = {"a_oracle_only": "raft_oracle", "b_distractors": "raft_distractors", "c_oracle_p08": "raft_oracle_p08"}
TEST_DISTRACTORS = [0, 2, 4, 8]
ROG_MODES = {
    "follow_graph": [],
    "relation_names": ["--follow-graph", "false"],
    "free": ["--constrained", "false"],
    "question_alone": ["--reasoning-paths", "none"],
}
INVAR_WEIGHTS = {"weight_0": "0", "weight_1_default": "1.0"}


# --- running hybridft's commands in-process ---------------------------------------------------


def hybridft(command: str, *tokens: Any) -> None:
    """``hybridft COMMAND TOKENS`` in this process; stdout (results) is dropped, failures raise."""
    import importlib

    from hybridft.cli.common import run_guarded

    module = importlib.import_module(f"hybridft.cli.{command.replace('-', '_')}")
    with contextlib.redirect_stdout(io.StringIO()):
        code = run_guarded(module.main, [str(t) for t in tokens])
    if code != 0:
        raise RuntimeError(f"hybridft {command} {' '.join(map(str, tokens))}: exit {code}")


def metrics_of(report_dir: Path) -> dict[str, Any]:
    return json.loads((report_dir / "report.json").read_text())


def held_out_check(data_dir: Path, test: dict[str, Any]) -> None:
    found = domain_module.leaks(data_dir / "train.jsonl", test)
    if found:
        raise AssertionError(f"{data_dir}: held-out text in the training rows: {found[:5]}")


def prepare(work: Path, seed: int, cfg: dict[str, Any]) -> dict[str, Any]:
    """The seed's domain and the base model (shared by that seed's jobs); the held-out texts."""
    from hybridft.core.models import build_tiny

    folder = work / f"seed{seed}"
    dom = folder / "domain"
    test = domain_module.write_domain(dom, seed, **cfg["domain"])
    if not (work / "model").exists():
        build_tiny(work / "model", **cfg["model"])
    # Data several jobs of the seed share: RAFT's test questions, Invar-RAG's train and test rows
    # (kept when a resumed run finds them built).
    if not (folder / "raft-test" / "manifest.json").exists():
        hybridft("build-data", "raft", "--recipe", RECIPES / "raft_test.yaml", "--qa", dom / "qa_test.jsonl",
                 "--docs", dom / "docs_test.jsonl", "--seed", seed, "--out", folder / "raft-test",
                 "--overwrite")  # fmt: skip
    for split, out in [("train", folder / "invar"), ("test", folder / "invar-test")]:
        if not (out / "manifest.json").exists():
            hybridft("build-data", "invar", "--recipe", RECIPES / "invar.yaml", "--qa", dom / f"qa_{split}.jsonl",
                     "--docs", dom / f"docs_{split}.jsonl", "--seed", seed, "--out", out, "--overwrite")  # fmt: skip
    held_out_check(folder / "invar", test)
    return test


def reader_job(work: Path, seed: int, arg: str | None, tests: dict[int, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    """The base model of the generation experiments, "pretrained" to read: the random tiny model
    fine-tuned on oracle-only RAFT data of a domain of its own (as RAFT starts from a pretrained
    LLaMA that can already read a document). Its rows are checked against every seed's test texts."""
    if _complete(work / "reader"):  # a resumed run
        return {}
    folder = work / "reader-domain"
    domain_module.write_domain(folder, 10_000, **cfg["reader_domain"])
    data = work / "reader-data"
    hybridft("build-data", "raft", "--recipe", RECIPES / "raft_oracle.yaml", "--qa", folder / "qa_train.jsonl",
             "--docs", folder / "docs_train.jsonl", "--out", data, "--overwrite")  # fmt: skip
    for test in tests.values():
        held_out_check(data, test)
    finetune(data, work / "reader", "reader", 0, cfg, base=work / "model")
    return {}


def _complete(run: Path) -> bool:
    try:
        return json.loads((run / "run.json").read_text()).get("status") == "complete"
    except (FileNotFoundError, ValueError):
        return False


def finetune(
    data: Path, out: Path, method: str, seed: int, cfg: dict[str, Any], *extra: Any, base: Path | None = None
) -> None:
    steps, lr, batch = cfg["steps"][method], cfg["learning_rate"][method], cfg["batch_size"][method]
    base = base or out.parent.parent / "reader"
    hybridft("finetune", "--model", base, "--data", data, "--out", out, "--overwrite",
             *TRAIN, "--max-steps", steps, "--learning-rate", lr, "--batch-size", batch, "--seed", seed,
             *extra)  # fmt: skip


def limit(cfg: dict[str, Any], method: str) -> list[Any]:
    return ["--limit", cfg["limit"][method]] if cfg["limit"][method] else []


# --- the three experiments ----------------------------------------------------------------------


def raft_job(work: Path, seed: int, variant: str, test: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    folder, dom = work / f"seed{seed}", work / f"seed{seed}" / "domain"
    data, run = folder / f"raft-{variant}", folder / f"run-raft-{variant}"
    hybridft("build-data", "raft", "--recipe", RECIPES / f"{RAFT_VARIANTS[variant]}.yaml", "--qa",
             dom / "qa_train.jsonl", "--docs", dom / "docs_train.jsonl", "--seed", seed, "--out", data,
             "--overwrite")  # fmt: skip
    held_out_check(data, test)
    finetune(data, run, "raft", seed, cfg)
    test_data = folder / "raft-test"
    report = folder / f"eval-raft-{variant}"
    hybridft("eval", "raft", "--data", test_data, "--split", "all", "--adapter", run, "--distractors",
             ",".join(map(str, TEST_DISTRACTORS)), "--max-new-tokens", 100, "--batch-size", 32, "--out", report,
             "--overwrite", *limit(cfg, "raft"))  # fmt: skip
    rag = folder / f"eval-rag-{variant}"
    hybridft("eval", "rag", "--qa", dom / "qa_test.jsonl", "--docs", dom / "docs_test.jsonl", "--chunk-size", 64,
             "--k", "3", "--adapter", run, "--max-new-tokens", 100, "--batch-size", 32, "--out", rag,
             "--overwrite", *limit(cfg, "raft"))  # fmt: skip
    return raft_result(folder, variant)


def raft_result(folder: Path, variant: str) -> dict[str, Any]:
    """Exact match at each test-time distractor count and through eval rag, from the reports."""
    by_k = metrics_of(folder / f"eval-raft-{variant}")["by_distractors"]
    rag_metrics = metrics_of(folder / f"eval-rag-{variant}")["metrics"]
    result = {f"d{k}": by_k[str(k)]["exact_match"] for k in TEST_DISTRACTORS}
    result["rag_top3"] = rag_metrics["exact_match"]
    result["answer_recall@3"] = rag_metrics.get("answer_recall@3")
    return result


def rog_job(work: Path, seed: int, arg: str | None, test: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    folder, dom = work / f"seed{seed}", work / f"seed{seed}" / "domain"
    data, run = folder / "rog", folder / "run-rog"
    hybridft("build-data", "rog", "--recipe", RECIPES / "rog.yaml", "--questions", dom / "kg_train.jsonl",
             "--seed", seed, "--out", data, "--overwrite")  # fmt: skip
    held_out_check(data, test)
    finetune(data, run, "rog", seed, cfg)
    for mode, extra in ROG_MODES.items():
        report = folder / f"eval-rog-{mode}"
        hybridft("eval", "rog", "--data", dom / "kg_test.jsonl", "--adapter", run, "--directed", "true",
                 "--max-hops", 2, "--beams", 3, "--max-new-tokens", 24, "--batch-size", 32, *extra,
                 "--out", report, "--overwrite", *limit(cfg, "rog"))  # fmt: skip
    return rog_result(folder)


def rog_result(folder: Path) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for mode in ROG_MODES:
        metrics = metrics_of(folder / f"eval-rog-{mode}")["metrics"]
        result[mode] = {name: metrics[name] for name in ("hits@1", "hit", "f1", "rog_f1", "path_validity")}
    return result


def invar_job(work: Path, seed: int, weight: str, test: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    folder = work / f"seed{seed}"
    data, run = folder / "invar", folder / f"run-invar-{weight}"  # data: built (and checked) by prepare()
    test_data = folder / "invar-test"
    extra = ["--trainer", "invar-retriever", "--align-weight", "0", "--invariance-weight", INVAR_WEIGHTS[weight]]
    finetune(data, run, "invar", seed, cfg, *extra, base=work / "model")
    report = folder / f"eval-invar-{weight}"
    hybridft("eval", "retrieval", "--data", test_data, "--split", "all", "--ranker", "adapter", "--retriever", run,
             "--k", "1,3", "--invariance-k", 3, "--out", report, "--overwrite", *limit(cfg, "invar"))  # fmt: skip
    return invar_result(folder, weight)


def invar_result(folder: Path, weight: str) -> dict[str, Any]:
    metrics = metrics_of(folder / f"eval-invar-{weight}")["metrics"]
    keys = ("recall@1", "recall@3", "mrr", "invariance_overlap@3", "invariance_kendall_tau")
    return {key: metrics.get(key) for key in keys}


JOBS = {"reader": reader_job, "raft": raft_job, "rog": rog_job, "invar": invar_job}


def run_job(
    name: str, work: str, seed: int, arg: str | None, test: Any, cfg: dict[str, Any]
) -> tuple[str, int, Any, float]:
    """One experiment (a pool worker's task): (name, seed, results, seconds)."""
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    done = collect(Path(work)).get(f"{name}:{arg}" if arg else name, {})
    if seed in done:  # a resumed run: this job's reports are there
        return f"{name}:{arg}" if arg else name, seed, done[seed], 0.0
    result = JOBS[name](Path(work), seed, arg, test, cfg)  # type: ignore[operator,arg-type]
    return f"{name}:{arg}" if arg else name, seed, result, time.perf_counter() - start


# --- tables ---------------------------------------------------------------------------------------


def spread(values: list[float | None]) -> str:
    """``mean (min–max)`` over seeds."""
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    mean = sum(present) / len(present)
    return f"{mean:.3f} ({min(present):.3f}–{max(present):.3f})"


def every_seed(better: list[float | None], worse: list[float | None], margin: float = 0.0) -> bool:
    """True when ``better`` beats ``worse`` by more than ``margin`` in every seed."""
    pairs = list(zip(better, worse, strict=True))
    return bool(pairs) and all(b is not None and w is not None and b - w > margin for b, w in pairs)


def compare(better: list[float | None], worse: list[float | None]) -> str:
    """ "every seed" (better wins in each), "reversed in every seed", "equal in every seed" or "mixed"."""
    if every_seed(better, worse):
        return "every seed"
    if every_seed(worse, better):
        return "reversed in every seed"
    if better and all(b is not None and b == w for b, w in zip(better, worse, strict=True)):
        return "equal in every seed"
    return "mixed"


def per_seed(results: dict[int, Any], *path: str) -> list[Any]:
    values = []
    for seed in sorted(results):
        value = results[seed]
        for key in path:
            value = value[key]
        values.append(value)
    return values


def raft_table(results: dict[str, dict[int, Any]]) -> tuple[str, list[str]]:
    columns = [f"d{k}" for k in TEST_DISTRACTORS] + ["rag_top3"]
    lines = [
        "| trained on | "
        + " | ".join(f"{k} test distractors" for k in TEST_DISTRACTORS)
        + " | eval rag (bm25 top 3) |",
        "|---|" + "---|" * len(columns),
    ]
    for variant in RAFT_VARIANTS:
        if variant in results:
            cells = [spread(per_seed(results[variant], c)) for c in columns]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    claims = []
    pairs = [("b_distractors", "a_oracle_only"), ("c_oracle_p08", "a_oracle_only"), ("c_oracle_p08", "b_distractors")]
    for better, worse in pairs:
        if better in results and worse in results:
            shared = results[better].keys() & results[worse].keys()
            for column in columns:
                b = per_seed({k: results[better][k] for k in shared}, column)
                w = per_seed({k: results[worse][k] for k in shared}, column)
                verdict = compare(b, w)
                claims.append(f"{better} > {worse} at {column}: {verdict} ({_deltas(b, w)})")
    return "\n".join(lines), claims


def rog_table(results: dict[int, Any]) -> tuple[str, list[str]]:
    metrics = ("hits@1", "hit", "f1", "rog_f1", "path_validity")
    lines = ["| reasoning from | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for mode in ROG_MODES:
        cells = [spread(per_seed(results, mode, m)) for m in metrics]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    claims = []
    comparisons = [
        ("follow_graph", "question_alone", "hit"),
        ("follow_graph", "question_alone", "hits@1"),
        ("follow_graph", "relation_names", "hits@1"),
        ("follow_graph", "free", "path_validity"),
        ("relation_names", "free", "path_validity"),
    ]
    for better, worse, metric in comparisons:
        b, w = per_seed(results, better, metric), per_seed(results, worse, metric)
        verdict = compare(b, w)
        claims.append(f"{better} > {worse} on {metric}: {verdict} ({_deltas(b, w)})")
    return "\n".join(lines), claims


def invar_table(results: dict[str, dict[int, Any]]) -> tuple[str, list[str]]:
    metrics = ("recall@1", "recall@3", "mrr", "invariance_overlap@3", "invariance_kendall_tau")
    lines = ["| invariance weight | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for weight in INVAR_WEIGHTS:
        if weight in results:
            lines.append(f"| {weight} | " + " | ".join(spread(per_seed(results[weight], m)) for m in metrics) + " |")
    claims = []
    if len(results) == len(INVAR_WEIGHTS):
        shared = results["weight_1_default"].keys() & results["weight_0"].keys()
        for metric in metrics:
            b = per_seed({k: results["weight_1_default"][k] for k in shared}, metric)
            w = per_seed({k: results["weight_0"][k] for k in shared}, metric)
            verdict = compare(b, w)
            claims.append(f"weight 1 > weight 0 on {metric}: {verdict} ({_deltas(b, w)})")
    return "\n".join(lines), claims


def _deltas(better: list[float | None], worse: list[float | None]) -> str:
    return "deltas " + ", ".join(
        "-" if b is None or w is None else f"{b - w:+.3f}" for b, w in zip(better, worse, strict=True)
    )


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default="raft,rog,invar")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="effects-report", help="folder for effects.json and effects.md")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (data, runs, reports)")
    parser.add_argument("--work", help="work in this folder and keep it; resumes: finished jobs are not run again")
    parser.add_argument("--smoke", action="store_true", help="a few training steps: checks the plumbing only")
    parser.add_argument("--summarise", metavar="WORK", help="print the tables of a kept work folder's reports")
    args = parser.parse_args()
    if args.summarise:
        found = collect(Path(args.summarise))
        done = sorted({key.split(":")[0] for key, by_seed in found.items() if by_seed})
        print(summarise(found, done, sorted({s for by_seed in found.values() for s in by_seed}), 0.0, 0))
        return
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.only.split(",") if m]
    os.environ["OMP_NUM_THREADS"] = "1"  # one torch thread per worker: no oversubscription
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="effects-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        cfg = SMOKE if args.smoke else FULL
        tests = {seed: prepare(work, seed, cfg) for seed in seeds}
        results: dict[str, dict[int, Any]] = {}
        timings: dict[str, float] = {}
        with ProcessPoolExecutor(max_workers=args.workers) as pool:

            def submit(name: str, seed: int, arg: str | None) -> Any:
                test = tests if name == "reader" else tests[seed]
                return pool.submit(run_job, name, str(work), seed, arg, test, cfg)

            # The reader first; the retriever runs (which start from the random model) beside it;
            # then the generation experiments, which start from the reader: RAFT's, RoG's.
            # (A resumed run with its reader trained puts the retriever runs last.)
            invar_jobs = [("invar", seed, w) for seed in seeds for w in INVAR_WEIGHTS if "invar" in methods]
            resumed = _complete(work / "reader")
            reader = submit("reader", 0, None) if {"raft", "rog"} & set(methods) else None
            invar = [] if resumed else [submit(*job) for job in invar_jobs]
            if reader is not None:
                timings["reader"] = round(reader.result()[3], 1)
            futures = [submit("raft", seed, v) for seed in seeds for v in RAFT_VARIANTS if "raft" in methods]
            futures += [submit("rog", seed, None) for seed in seeds if "rog" in methods]
            futures += invar or [submit(*job) for job in invar_jobs]
            for future in futures:
                key, seed, result, seconds = future.result()
                results.setdefault(key, {})[seed] = result
                timings[f"{key}@{seed}"] = round(seconds, 1)
                print(f"done {key} seed {seed} in {seconds:.0f} s", file=sys.stderr)
        elapsed = time.perf_counter() - start
        report = summarise(results, methods, seeds, elapsed, args.workers)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "effects.json").write_text(json.dumps({"results": results, "timings_s": timings}, indent=1) + "\n")
        (out / "effects.md").write_text(report)
        print(report)
    finally:
        if args.keep or args.work:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def collect(work: Path) -> dict[str, dict[int, Any]]:
    """The results of every finished job in a kept work folder (a partial run gives partial tables)."""
    results: dict[str, dict[int, Any]] = {}
    for folder in sorted(work.glob("seed*")):
        seed = int(folder.name[4:])
        readers: list[tuple[str, Any, tuple[Any, ...]]] = [("rog", rog_result, (folder,))]
        readers += [(f"raft:{v}", raft_result, (folder, v)) for v in RAFT_VARIANTS]
        readers += [(f"invar:{w}", invar_result, (folder, w)) for w in INVAR_WEIGHTS]
        for key, read, arguments in readers:
            with contextlib.suppress(FileNotFoundError):
                results.setdefault(key, {})[seed] = read(*arguments)
    return results


def summarise(
    results: dict[str, dict[int, Any]], methods: list[str], seeds: list[int], elapsed: float, workers: int
) -> str:
    lines = [
        f"# Effects in miniature — {date.today().isoformat()}, seeds {seeds}, {elapsed / 60:.1f} min "
        f"on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), {workers} workers",
        "",
        "Held-out people only (whole families never seen in training; checked). Mean (min–max) over seeds;",
        "a claim holds only where every seed shows it.",
    ]
    if "raft" in methods:
        raft = {name.split(":", 1)[1]: by_seed for name, by_seed in results.items() if name.startswith("raft:")}
        table, claims = raft_table(raft)
        lines += ["", "## RAFT: exact match on held-out questions", "", table, "", *[f"- {c}" for c in claims]]
    if "rog" in methods:
        table, claims = rog_table(results["rog"])
        lines += ["", "## RoG: held-out KG questions", "", table, "", *[f"- {c}" for c in claims]]
    if "invar" in methods:
        invar = {name.split(":", 1)[1]: by_seed for name, by_seed in results.items() if name.startswith("invar:")}
        table, claims = invar_table(invar)
        lines += ["", "## Invar-RAG: retrieval on held-out queries", "", table, "", *[f"- {c}" for c in claims]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
