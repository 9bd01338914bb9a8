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
document texts (none may appear). Jobs run in --workers processes with one torch thread each; the
--out folder gets effects.md, effects.json and the charts (effects-raft.png, effects-rog.png,
effects-invar.png).

  python bench/effects.py [--seeds 0,1,2] [--only raft,rog,invar] [--workers 2] [--out effects-report]

Why this module is long: it is the whole bench (jobs, scheduler, tables, charts) in the one file a
reader runs, and tests/test_effects.py runs the same jobs through it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from datetime import date
from pathlib import Path
from typing import Any

from hybridft.core.errors import UsageError
from hybridft.core.readers import json_or_empty, run_record

RECIPES = Path(__file__).resolve().parent.parent / "data_recipes" / "effects"
sys.path.insert(0, str(RECIPES))
import domain as domain_module  # noqa: E402

RAFT_VARIANTS = {"a_oracle_only": "raft_oracle", "b_distractors": "raft_distractors", "c_oracle_p08": "raft_oracle_p08"}
ROG_MODES = {
    "follow_graph": [],
    "relation_names": ["--follow-graph", "false"],
    "free": ["--constrained", "false"],
    "question_alone": ["--reasoning-paths", "none"],
}
INVAR_WEIGHTS = {"weight_0": "0", "weight_1_default": "1.0"}

# Everything an experiment's size depends on; tests run the same jobs with a smaller copy. A kept
# work folder records it (config.json) and is resumed only with the same one.
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
    "raft_variants": list(RAFT_VARIANTS),
    "test_distractors": [0, 2, 4, 8],
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
# Seconds one job took on one worker in the first full run (under load; only their order matters):
# the scheduler starts the longest job that can start first.
JOB_LENGTH = {
    "reader": 650,
    "rog": 290,
    "raft:b_distractors": 280,
    "raft:c_oracle_p08": 280,
    "invar": 190,
    "raft:a_oracle_only": 120,
}
NEEDS_READER = ("raft", "rog")


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

    test = domain_module.write_domain(work / f"seed{seed}" / "domain", seed, **cfg["domain"])
    if not (work / "model").exists():
        build_tiny(work / "model", **cfg["model"])
    return test


def prepare_shared_data(work: Path, seed: int, test: dict[str, Any]) -> None:
    """Data several jobs of the seed share: RAFT's test questions, Invar-RAG's train and test rows
    (kept when a resumed run finds them built)."""
    folder = work / f"seed{seed}"
    dom = folder / "domain"
    if not (folder / "raft-test" / "manifest.json").exists():
        hybridft("build-data", "raft", "--recipe", RECIPES / "raft_test.yaml", "--qa", dom / "qa_test.jsonl",
                 "--docs", dom / "docs_test.jsonl", "--seed", seed, "--out", folder / "raft-test",
                 "--overwrite")  # fmt: skip
    for split, out in [("train", folder / "invar"), ("test", folder / "invar-test")]:
        if not (out / "manifest.json").exists():
            hybridft("build-data", "invar", "--recipe", RECIPES / "invar.yaml", "--qa", dom / f"qa_{split}.jsonl",
                     "--docs", dom / f"docs_{split}.jsonl", "--seed", seed, "--out", out, "--overwrite")  # fmt: skip
    held_out_check(folder / "invar", test)


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
    return run_record(run).get("status") == "complete"


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
             ",".join(map(str, cfg["test_distractors"])), "--max-new-tokens", 100, "--batch-size", 32,
             "--out", report, "--overwrite", *limit(cfg, "raft"))  # fmt: skip
    rag = folder / f"eval-rag-{variant}"
    hybridft("eval", "rag", "--qa", dom / "qa_test.jsonl", "--docs", dom / "docs_test.jsonl", "--chunk-size", 64,
             "--k", "3", "--adapter", run, "--max-new-tokens", 100, "--batch-size", 32, "--out", rag,
             "--overwrite", *limit(cfg, "raft"))  # fmt: skip
    return raft_result(folder, variant)


def raft_result(folder: Path, variant: str) -> dict[str, Any]:
    """Exact match at each test-time distractor count and through eval rag, from the reports."""
    by_k = metrics_of(folder / f"eval-raft-{variant}")["by_distractors"]
    rag_metrics = metrics_of(folder / f"eval-rag-{variant}")["metrics"]
    result = {f"d{k}": by_k[k]["exact_match"] for k in sorted(by_k, key=int)}
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
    data, run = folder / "invar", folder / f"run-invar-{weight}"  # data: built (and checked) beforehand
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
    result = JOBS[name](Path(work), seed, arg, test, cfg)  # type: ignore[operator,arg-type]
    return _key(name, arg), seed, result, time.perf_counter() - start


# --- scheduling -----------------------------------------------------------------------------------


def check_config(work: Path, seeds: list[int], cfg: dict[str, Any]) -> None:
    """A work folder is resumed only with the seeds and configuration it was made with: its finished
    jobs would otherwise be mixed into tables of another configuration."""
    wanted = json.loads(json.dumps({"seeds": seeds, "config": cfg}))
    file = work / "config.json"
    if file.exists():
        kept = json_or_empty(file)
        old, new = kept.get("config", {}), wanted["config"]
        differ = ["seeds"] * (kept.get("seeds") != seeds) + [
            k for k in sorted({*old, *new}) if old.get(k) != new.get(k)
        ]
        if differ:
            raise UsageError(
                f"--work {work}: made with another configuration ({', '.join(differ)} differ); resume it with the "
                "same --seeds (and --smoke or not), or use a new --work folder"
            )
        return
    if any(work.iterdir()):
        raise UsageError(f"--work {work}: not empty and has no config.json (not a work folder of this bench, or one "
                         "made before the bench stored its configuration); use a new --work folder")  # fmt: skip
    file.write_text(json.dumps(wanted, indent=1) + "\n")


def run_all(
    work: Path, seeds: list[int], methods: list[str], cfg: dict[str, Any], workers: int
) -> tuple[dict[str, dict[int, Any]], dict[str, float]]:
    """Every job of ``methods`` for each seed, on ``workers`` processes; (results, seconds per job).

    The reader is the critical path (RAFT's and RoG's jobs start from it), so it starts first; the
    shared data is built here while it trains, and the retriever runs (which start from the random
    model) fill the other workers. Then the longest job that can start goes first. Jobs whose
    reports a kept work folder holds are not run again."""
    work.mkdir(parents=True, exist_ok=True)
    check_config(work, seeds, cfg)
    tests = {seed: prepare(work, seed, cfg) for seed in seeds}
    results: dict[str, dict[int, Any]] = collect(work)
    jobs = [("raft", seed, v) for seed in seeds for v in cfg["raft_variants"] if "raft" in methods]
    jobs += [("rog", seed, None) for seed in seeds if "rog" in methods]
    jobs += [("invar", seed, w) for seed in seeds for w in INVAR_WEIGHTS if "invar" in methods]
    jobs = [job for job in jobs if job[1] not in results.get(_key(job[0], job[2]), {})]
    timings: dict[str, float] = {}
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold torch threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        running: dict[Future[Any], str] = {}

        def start(name: str, seed: int, arg: str | None) -> None:
            test = tests if name == "reader" else tests[seed]
            running[pool.submit(run_job, name, str(work), seed, arg, test, cfg)] = name

        reader_ready = _complete(work / "reader") or not any(name in NEEDS_READER for name, _, _ in jobs)
        if not reader_ready:
            start("reader", 0, None)
        for seed in seeds:
            prepare_shared_data(work, seed, tests[seed])
        while jobs or running:
            ready = [job for job in jobs if reader_ready or job[0] not in NEEDS_READER]
            for job in sorted(ready, key=lambda j: -JOB_LENGTH.get(_key(j[0], j[2]), JOB_LENGTH.get(j[0], 0))):
                if len(running) >= workers:
                    break
                jobs.remove(job)
                start(*job)
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                del running[future]
                key, seed, result, seconds = future.result()
                timings[key if key == "reader" else f"{key}@{seed}"] = round(seconds, 1)
                if key == "reader":
                    reader_ready = True
                else:
                    results.setdefault(key, {})[seed] = result
                print(f"done {key} seed {seed} in {seconds:.0f} s", file=sys.stderr)
    return results, timings


def _key(name: str, arg: str | None) -> str:
    return f"{name}:{arg}" if arg else name


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
    return {key: by_seed for key, by_seed in results.items() if by_seed}


# --- tables and charts ----------------------------------------------------------------------------

RAFT_CLAIMS = [("b_distractors", "a_oracle_only"), ("c_oracle_p08", "a_oracle_only"), ("c_oracle_p08", "b_distractors")]
ROG_METRICS = ["hits@1", "hit", "f1", "rog_f1", "path_validity"]
ROG_CLAIMS = [
    ("follow_graph", "question_alone", "hit"),
    ("follow_graph", "question_alone", "hits@1"),
    ("follow_graph", "relation_names", "hits@1"),
    ("follow_graph", "free", "path_validity"),
    ("relation_names", "free", "path_validity"),
]
INVAR_METRICS = ["recall@1", "recall@3", "mrr", "invariance_overlap@3", "invariance_kendall_tau"]
INVAR_NAMES = {"weight_1_default": "weight 1", "weight_0": "weight 0"}


def span(values: list[float | None]) -> tuple[float, float, float] | None:
    """(mean, min, max) over seeds, None when no seed has a value."""
    present = [v for v in values if v is not None]
    return (sum(present) / len(present), min(present), max(present)) if present else None


def spread(values: list[float | None]) -> str:
    """``mean (min–max)`` over seeds."""
    found = span(values)
    return "-" if found is None else f"{found[0]:.3f} ({found[1]:.3f}–{found[2]:.3f})"


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


def _deltas(better: list[float | None], worse: list[float | None]) -> str:
    return "deltas " + ", ".join(
        "-" if b is None or w is None else f"{b - w:+.3f}" for b, w in zip(better, worse, strict=True)
    )


def table(
    label: str,
    rows: dict[str, dict[int, dict[str, Any]]],
    columns: dict[str, str],
    claims: list[tuple[str, str, str]],
    claim: str = "{better} > {worse} on {column}",
    names: dict[str, str] | None = None,
) -> tuple[str, list[str]]:
    """A markdown table, one row per experiment (``rows``: name -> seed -> metrics) and one column
    per metric (``columns``: key -> heading), each cell the mean (min–max) over seeds; and one line
    per claim (better, worse, metric): whether every seed shows it, with the per-seed deltas."""
    lines = [f"| {label} | " + " | ".join(columns.values()) + " |", "|---|" + "---|" * len(columns)]
    for name, by_seed in rows.items():
        cells = [spread([by_seed[s].get(key) for s in sorted(by_seed)]) for key in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    found = []
    for better, worse, column in claims:
        if better in rows and worse in rows:
            shared = sorted(rows[better].keys() & rows[worse].keys())
            b = [rows[better][s].get(column) for s in shared]
            w = [rows[worse][s].get(column) for s in shared]
            shown = claim.format(
                better=(names or {}).get(better, better), worse=(names or {}).get(worse, worse), column=column
            )
            found.append(f"{shown}: {compare(b, w)} ({_deltas(b, w)})")
    return "\n".join(lines), found


def by_experiment(results: dict[str, dict[int, Any]], method: str) -> dict[str, dict[int, dict[str, Any]]]:
    """name -> seed -> metrics, for one method's results (RoG's runs are keyed by mode)."""
    if method == "rog":
        by_seed = results.get("rog", {})
        return {mode: {s: by_seed[s][mode] for s in sorted(by_seed)} for mode in ROG_MODES} if by_seed else {}
    order = RAFT_VARIANTS if method == "raft" else INVAR_WEIGHTS
    return {name: results[f"{method}:{name}"] for name in order if f"{method}:{name}" in results}


def raft_columns(rows: dict[str, dict[int, dict[str, Any]]]) -> dict[str, str]:
    counts = sorted({int(k[1:]) for by_seed in rows.values() for r in by_seed.values() for k in r if k[1:].isdigit()})
    return {f"d{k}": f"{k} test distractors" for k in counts} | {"rag_top3": "eval rag (bm25 top 3)"}


def tables(results: dict[str, dict[int, Any]], methods: list[str]) -> list[str]:
    lines: list[str] = []
    if "raft" in methods:
        rows = by_experiment(results, "raft")
        columns = raft_columns(rows)
        claims = [(b, w, c) for b, w in RAFT_CLAIMS for c in columns]
        text, found = table("trained on", rows, columns, claims, "{better} > {worse} at {column}")
        lines += ["", "## RAFT: exact match on held-out questions", "", text, "", *[f"- {c}" for c in found]]
    if "rog" in methods:
        text, found = table("reasoning from", by_experiment(results, "rog"), {m: m for m in ROG_METRICS}, ROG_CLAIMS)
        lines += ["", "## RoG: held-out KG questions", "", text, "", *[f"- {c}" for c in found]]
    if "invar" in methods:
        claims = [("weight_1_default", "weight_0", m) for m in INVAR_METRICS]
        rows = by_experiment(results, "invar")
        text, found = table("invariance weight", rows, {m: m for m in INVAR_METRICS}, claims, names=INVAR_NAMES)
        lines += ["", "## Invar-RAG: retrieval on held-out queries", "", text, "", *[f"- {c}" for c in found]]
    return lines


def summarise(
    results: dict[str, dict[int, Any]], methods: list[str], seeds: list[int], elapsed: float, workers: int
) -> str:
    lines = [
        f"# Effects in miniature — {date.today().isoformat()}, seeds {seeds}, {elapsed / 60:.1f} min "
        f"on {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), {workers} workers",
        "",
        "Held-out people only (whole families never seen in training; checked). Mean (min–max) over seeds;",
        "a claim holds only where every seed shows it.",
        *tables(results, methods),
    ]
    return "\n".join(lines) + "\n"


def _points(by_seed: dict[int, dict[str, Any]], keys: list[str]) -> tuple[list[int], list[float], list[list[float]]]:
    """The positions of the ``keys`` some seed has a value for, their means over seeds, and the
    distances from each mean down to the lowest seed and up to the highest (matplotlib's yerr)."""
    found = [(i, f) for i, key in enumerate(keys) if (f := span([by_seed[s].get(key) for s in sorted(by_seed)]))]
    low, high = [f[0] - f[1] for _, f in found], [f[2] - f[0] for _, f in found]
    return [i for i, _ in found], [f[0] for _, f in found], [low, high]


def _bars(axes: Any, rows: dict[str, dict[int, dict[str, Any]]], metrics: list[str], title: str) -> None:
    """Grouped bars: one group per metric, one bar per experiment, the mean with min–max over seeds."""
    width = 0.8 / max(len(rows), 1)
    for i, (name, by_seed) in enumerate(rows.items()):
        places, means, errors = _points(by_seed, metrics)
        shift = (i - (len(rows) - 1) / 2) * width
        axes.bar([p + shift for p in places], means, width, yerr=errors, capsize=3, label=name)
    axes.set_xticks(range(len(metrics)))
    axes.set_xticklabels(metrics, rotation=20, ha="right")
    axes.set_ylim(min(0.0, axes.get_ylim()[0]), 1.05)  # Kendall tau can be negative
    axes.set_title(title)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)


def draw_charts(results: dict[str, dict[int, Any]], out: Path) -> list[str]:
    """effects-raft.png (exact match against test-time distractors per training variant, and through
    eval rag), effects-rog.png (per reasoning mode) and effects-invar.png (per invariance weight):
    the mean over seeds, bars from the lowest to the highest seed. Returns the files drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    seeds = sorted({s for by_seed in results.values() for s in by_seed})
    drawn = []
    raft = by_experiment(results, "raft")
    if raft:
        figure, (curve, rag) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1]})
        counts = [c for c in raft_columns(raft) if c != "rag_top3"]
        for name, by_seed in raft.items():
            places, means, errors = _points(by_seed, counts)
            xs = [int(counts[p][1:]) for p in places]
            curve.errorbar(xs, means, yerr=errors, marker="o", capsize=3, label=name)
        curve.set_xticks([int(c[1:]) for c in counts])
        curve.set_xlabel("test-time distractors")
        curve.set_ylabel("exact match (held-out questions)")
        curve.set_ylim(0, 1.05)
        curve.set_title(f"RAFT: exact match against distractors (seeds {seeds})")
        curve.grid(alpha=0.3)
        curve.legend(fontsize=8)
        _bars(rag, raft, ["rag_top3"], "eval rag (bm25 top 3)")
        drawn.append(_save(plt, figure, out / "effects-raft.png"))
    rog = by_experiment(results, "rog")
    if rog:
        figure, axes = plt.subplots(figsize=(7, 4))
        _bars(axes, rog, ["hits@1", "hit", "path_validity"], f"RoG: reasoning and planning modes (seeds {seeds})")
        drawn.append(_save(plt, figure, out / "effects-rog.png"))
    invar = by_experiment(results, "invar")
    if invar:
        figure, axes = plt.subplots(figsize=(7, 4))
        _bars(axes, invar, INVAR_METRICS, f"Invar-RAG: invariance weight (seeds {seeds})")
        drawn.append(_save(plt, figure, out / "effects-invar.png"))
    return drawn


def _save(plt: Any, figure: Any, path: Path) -> str:
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path.name


# --- main -----------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--only", default="raft,rog,invar")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="effects-report", help="folder for effects.json, effects.md and the charts")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (data, runs, reports)")
    parser.add_argument("--work", help="work in this folder and keep it; resumes: finished jobs are not run again")
    parser.add_argument("--smoke", action="store_true", help="a few training steps: checks the plumbing only")
    parser.add_argument("--summarise", metavar="WORK", help="the tables and charts of a kept work folder's reports")
    args = parser.parse_args()
    out = Path(args.out)
    if args.summarise:
        found = collect(Path(args.summarise))
        done = sorted({key.split(":")[0] for key in found})
        print(summarise(found, done, sorted({s for by_seed in found.values() for s in by_seed}), 0.0, 0))
        print(f"charts: {', '.join(str(out / name) for name in draw_charts(found, out))}", file=sys.stderr)
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.only.split(",") if m]
    os.environ["OMP_NUM_THREADS"] = "1"  # one torch thread per worker: no oversubscription
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="effects-"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    try:
        results, timings = run_all(work, seeds, methods, SMOKE if args.smoke else FULL, args.workers)
        report = summarise(results, methods, seeds, time.perf_counter() - start, args.workers)
        out.mkdir(parents=True, exist_ok=True)
        (out / "effects.json").write_text(json.dumps({"results": results, "timings_s": timings}, indent=1) + "\n")
        (out / "effects.md").write_text(report)
        draw_charts(results, out)
        print(report)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep or args.work:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
