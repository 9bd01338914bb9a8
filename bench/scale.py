"""Scale: time and peak RSS as the inputs grow (issue 22, item 5). See docs/scale.md.

Two sections, ``--only kg`` and ``--only corpus`` (both run without ``--only``).

Corpus: ``bench/raft_build.py``'s synthetic chunks (Zipf words, 10,000 questions naming their
oracle) at each size of ``--corpus-chunks``; at each, in fresh processes that report their own
peak RSS (VmHWM): ``hybridft index`` (bm25), ``build-data raft`` with bm25 distractors indexing
the corpus itself, and the same build over the saved index (``--index``). Printed: time and peak
RSS of each, the ratio of the two builds' peak RSS (target <= 0.5x at 1M chunks), the growth per
step, and a projection to ``--project-chunks`` (a projection, from the largest measured step).

KG: a synthetic global KG (heads drawn Zipf-like, so a few entities are hubs; tails uniform;
2,000 relations; half as many entities as triples) at each size of ``--kg-triples``, written as
.tsv. Each configuration runs in a fresh process and reports its own peak RSS (VmHWM):

  pack   ``hybridft index --kg KG.tsv --out KG_DIR``: read, index, save (once per KG);
  again  what every run without a saved KG pays: ``read_kg(KG.tsv)`` and the first name lookup;
  open   ``read_kg(KG_DIR)`` and the first name lookup (memory-mapped; the page cache is warm
         after ``pack``, as it is for the 2nd..Nth shard process on one machine);
  cold   the same after dropping the saved KG's pages from the page cache (posix_fadvise);
  shared two ``open`` processes at once, each reading its PSS while both hold the KG (the
         mapped pages are counted once between them);

then, in the again, open, cold and shared processes, ``--kg-questions`` questions (relation paths up to
3 hops between a head and an entity two edges away, and the reasoning paths that follow them).
Printed: each number per size, the ratio "pack again / open saved" (target >= 20x), the growth
per step, and a projection to ``--project`` triples (a projection, from the largest measured step).

    python bench/scale.py [--only kg|corpus] [--kg-triples 2000000,20000000] [--kg-questions 200]
        [--corpus-chunks 100000,300000,1000000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def synthetic_kg(path: Path, n_triples: int, n_questions: int, seed: int = 1) -> list[list[str]]:
    """Write a KG of ``n_triples`` as .tsv; return (question entity, answer entity) pairs two edges
    apart, so that every question has a path to find."""
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv

    rng = np.random.default_rng(seed)
    n_nodes = n_triples // 2
    cumulative = np.cumsum(1.0 / np.arange(1, n_nodes + 1) ** 0.8)
    heads = np.searchsorted(cumulative, rng.random(n_triples) * cumulative[-1])  # Zipf-like hubs
    tails = rng.integers(n_nodes, size=n_triples)
    rels = rng.integers(2000, size=n_triples)
    names = pc.binary_join_element_wise("m.", pc.cast(pa.array(np.arange(n_nodes)), pa.string()), "")
    table = pa.table(
        {
            "h": names.take(pa.array(heads)),
            "r": pc.binary_join_element_wise("rel.r", pc.cast(pa.array(rels), pa.string()), ""),
            "t": names.take(pa.array(tails)),
        }
    )
    options = csv.WriteOptions(include_header=False, delimiter="\t", quoting_style="none")
    csv.write_csv(table, str(path), options)
    by_head = np.argsort(heads, kind="stable")
    sorted_heads = heads[by_head]
    pairs = []
    for edge in rng.integers(n_triples, size=n_questions * 4).tolist():
        middle = tails[edge]
        start = np.searchsorted(sorted_heads, middle)
        if start < n_triples and sorted_heads[start] == middle and tails[by_head[start]] != heads[edge]:
            pairs.append([f"m.{heads[edge]}", f"m.{tails[by_head[start]]}"])
        if len(pairs) == n_questions:
            break
    return pairs


# --- one configuration, in its own process ------------------------------------------------------


def child(mode: str, source: str, saved: str, pairs_path: str) -> dict[str, Any]:
    """``generate``, ``pack``, ``again`` or ``open``: one configuration, run in a fresh process.
    The libraries are imported before the clock starts (every process pays that once, ~0.3 s)."""
    import pyarrow.compute
    import pyarrow.csv
    import pyarrow.ipc  # noqa: F401

    from hybridft.cli import index
    from hybridft.kg.graph import read_kg, reasoning_paths, shortest_relation_paths

    if mode == "generate":
        n_triples, n_questions = (int(x) for x in saved.split(","))
        Path(pairs_path).write_text(json.dumps(synthetic_kg(Path(source), n_triples, n_questions)))
        return _memory()
    if mode == "pack":
        start = time.perf_counter()
        code = index.main(["--kg", source, "--out", saved, "--overwrite"])
        assert code == 0
        return {"load_s": time.perf_counter() - start, **_memory()}
    pairs = json.loads(Path(pairs_path).read_text())
    if mode == "cold":  # the first process after a reboot: the saved KG's pages dropped from the cache
        for file in Path(saved).iterdir():
            fd = os.open(file, os.O_RDONLY)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            os.close(fd)
    start = time.perf_counter()
    kg = read_kg(source if mode == "again" else saved)
    kg.ids([pairs[0][0]])  # the name lookup's sorted order: computed (again) or mapped (open)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    found = 0
    for q, a in pairs:
        q_ids, a_ids = kg.ids([q]), kg.ids([a])
        paths = shortest_relation_paths(kg, q_ids, a_ids, 3, False)  # type: ignore[arg-type]
        found += len(reasoning_paths(kg, q_ids, paths, False, 32).chains)  # type: ignore[arg-type]
    query_s = time.perf_counter() - start
    result = {"load_s": load_s, "query_s": query_s, "chains": found, **_memory()}
    if mode == "shared":  # measured while every sibling holds the KG too
        _wait_for_siblings("ready")
        result.update(_proportional())
        _wait_for_siblings("measured")
    return result


def _wait_for_siblings(stage: str) -> None:
    """Mark this ``stage`` done and wait until the other ``shared`` processes have done it."""
    folder, rank, count = Path(os.environ["SCALE_SYNC"]), os.environ["SCALE_RANK"], int(os.environ["SCALE_N"])
    (folder / f"{stage}.{rank}").touch()
    while len(list(folder.glob(f"{stage}.*"))) < count:
        time.sleep(0.05)


def _proportional() -> dict[str, float]:
    """PSS: each resident page divided by the number of processes mapping it, in MiB."""
    rollup = Path("/proc/self/smaps_rollup").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in rollup[1:] if ":" in line)
    return {key: int(fields[key].split()[0]) / 1024 for key in ("Pss", "Pss_Anon", "Pss_File")}


def _memory() -> dict[str, float]:
    """Peak RSS (VmHWM) and, at the end, resident memory split into private (RssAnon) and
    file-backed (RssFile: shared libraries and the page cache's mapped columns), in MiB.

    VmHWM rather than getrusage's ru_maxrss: the latter keeps the forking parent's RSS of the
    moment before exec, which would charge the bench's own memory to every child."""
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    memory = {key: int(status[key].split()[0]) / 1024 for key in ("VmHWM", "RssAnon", "RssFile")}
    return {"peak_mib": memory.pop("VmHWM"), **memory}


def run_child(mode: str, source: Path, saved: Path | str, pairs_path: Path) -> dict[str, Any]:
    """Run one configuration in a fresh process and return what it measured."""
    return run_together(mode, source, saved, pairs_path, 1)[0]


def run_together(mode: str, source: Path, saved: Path | str, pairs_path: Path, count: int) -> list[dict[str, Any]]:
    """Run ``count`` processes of one configuration at the same time; what each measured."""
    command = [sys.executable, __file__, "--child", mode, str(source), str(saved), str(pairs_path)]
    sync = Path(tempfile.mkdtemp(prefix="sync-", dir=Path(pairs_path).parent))
    processes = [
        subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "SCALE_SYNC": str(sync), "SCALE_RANK": str(rank), "SCALE_N": str(count)},
        )
        for rank in range(count)
    ]
    results = []
    for process in processes:
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            raise SystemExit(f"{mode} on {source} failed with exit code {process.returncode}:\n{stderr[-2000:]}")
        results.append(json.loads(stdout.strip().splitlines()[-1]))
    shutil.rmtree(sync)
    return results


# --- the KG section -----------------------------------------------------------------------------


def measure_kg(work: Path, sizes: list[int], n_questions: int, project: int) -> list[dict[str, Any]]:
    rows = []
    for n_triples in sizes:
        source, saved, pairs_path = work / f"kg{n_triples}.tsv", work / f"kg{n_triples}", work / "pairs.json"
        start = time.perf_counter()
        run_child("generate", source, f"{n_triples},{n_questions}", pairs_path)
        print(f"[{n_triples:,} triples: KG written in {time.perf_counter() - start:.0f} s]", file=sys.stderr)
        row: dict[str, Any] = {"triples": n_triples, "tsv_mib": source.stat().st_size / 2**20}
        for mode in ("pack", "again", "open", "cold"):
            row[mode] = run_child(mode, source, saved, pairs_path)
        row["shared"] = run_together("shared", source, saved, pairs_path, 2)
        row["saved_mib"] = sum(p.stat().st_size for p in saved.iterdir()) / 2**20
        rows.append(row)
        _print_size(row, n_questions)
        source.unlink()
        shutil.rmtree(saved)
    if len(rows) > 1:
        _print_growth(rows, project)
    return rows


def _print_size(row: dict[str, Any], n_questions: int) -> None:
    pack, again, opened, cold, shared = row["pack"], row["again"], row["open"], row["cold"], row["shared"]
    print(
        f"KG {row['triples']:,} triples (tsv {row['tsv_mib']:.0f} MiB, saved {row['saved_mib']:.0f} MiB):\n"
        f"  pack (index --kg)   {pack['load_s']:8.2f} s   peak RSS {pack['peak_mib']:7.0f} MiB\n"
        f"  pack again (tsv)    {again['load_s']:8.2f} s   peak RSS {again['peak_mib']:7.0f} MiB "
        f"(after {n_questions} questions: {again['query_s']:.2f} s, private {again['RssAnon']:.0f} MiB)\n"
        f"  open saved          {opened['load_s']:8.3f} s   peak RSS {opened['peak_mib']:7.0f} MiB "
        f"(after {n_questions} questions: {opened['query_s']:.2f} s, private {opened['RssAnon']:.0f} MiB, "
        f"mapped from the page cache {opened['RssFile']:.0f} MiB)\n"
        f"  open saved, cold    {cold['load_s']:8.3f} s   peak RSS {cold['peak_mib']:7.0f} MiB "
        f"(its pages dropped from the page cache first; after {n_questions} questions: {cold['query_s']:.2f} s)\n"
        f"  pack again / open saved: {again['load_s'] / opened['load_s']:.0f}x (target >= 20x), cold "
        f"{again['load_s'] / cold['load_s']:.0f}x; with the questions: "
        f"{(again['load_s'] + again['query_s']) / (opened['load_s'] + opened['query_s']):.1f}x, cold "
        f"{(again['load_s'] + again['query_s']) / (cold['load_s'] + cold['query_s']):.1f}x; "
        f"same reasoning paths found: {again['chains'] == opened['chains'] == cold['chains']} ({opened['chains']})\n"
        f"  2 processes on the saved KG at once: RSS {_each(shared, 'RssAnon', 'RssFile')} MiB, PSS "
        f"{_each(shared, 'Pss')} MiB (mapped files {_each(shared, 'Pss_File')} MiB: the KG's pages counted "
        f"once between them)"
    )


def _each(results: list[dict[str, Any]], *keys: str) -> str:
    return " + ".join(f"{sum(result[key] for key in keys):.0f}" for result in results)


def _print_growth(rows: list[dict[str, Any]], project: int) -> None:
    """Growth per step, and a projection from the last step (its exponent, at least linear)."""
    print("growth per step:")
    for low, high in zip(rows, rows[1:], strict=False):
        scale = high["triples"] / low["triples"]
        print(f"  {low['triples']:,} -> {high['triples']:,} triples ({scale:.0f}x):")
        for mode, key in (("pack", "load_s"), ("pack", "peak_mib"), ("again", "load_s"), ("again", "peak_mib")):
            print(f"    {mode:5} {key:8} x{high[mode][key] / low[mode][key]:.2f}")
        for key in ("load_s", "query_s", "peak_mib", "RssAnon"):
            print(f"    open  {key:8} x{high['open'][key] / low['open'][key]:.2f}")
    low, high = rows[-2], rows[-1]
    step = math.log(high["triples"] / low["triples"])
    factor = project / high["triples"]

    def projected(mode: str, key: str) -> float:
        exponent = max(1.0, math.log(high[mode][key] / low[mode][key]) / step)
        return high[mode][key] * factor**exponent

    print(
        f"projection to {project:,} triples (not measured: {factor:.0f}x the largest size, at the last "
        f"step's growth, at least linear): pack {projected('pack', 'load_s'):.0f} s and "
        f"{projected('pack', 'peak_mib') / 1024:.1f} GiB peak RSS once; every run without a saved KG "
        f"{projected('again', 'load_s'):.0f} s and {projected('again', 'peak_mib') / 1024:.1f} GiB; saved KG on "
        f"disk {high['saved_mib'] * factor / 1024:.1f} GiB, shared by every process on the machine"
    )


# Runs a hybridft command in this process and prints its peak RSS (kB) on the last line of stderr.
_CLI_WITH_PEAK = """
import sys
from hybridft.cli.main import app
try:
    app(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM"))
print("PEAK_KB", peak.split()[1], file=sys.stderr)
sys.exit(code)
"""


def run_cli(*tokens: Any) -> dict[str, float]:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CLI_WITH_PEAK, *map(str, tokens)], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"hybridft {' '.join(map(str, tokens))} failed:\n{done.stderr[-2000:]}")
    peak_kb = int(done.stderr.rstrip().rsplit("PEAK_KB", 1)[1])
    return {"seconds": seconds, "peak_mib": peak_kb / 1024}


def measure_corpus(work: Path, sizes: list[int], project: int) -> list[dict[str, Any]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from raft_build import synthetic_corpus

    rows = []
    for n_chunks in sizes:
        folder = work / f"corpus{n_chunks}"
        folder.mkdir()
        docs, qa = synthetic_corpus(folder, n_chunks, 10_000)
        row: dict[str, Any] = {"chunks": n_chunks}
        row["index"] = run_cli("index", "--docs", docs, "--out", folder / "index")
        row["build"] = run_cli("build-data", "raft", "--qa", qa, "--docs", docs, "--out", folder / "a")
        row["build_saved"] = run_cli(
            "build-data", "raft", "--qa", qa, "--docs", docs, "--index", folder / "index", "--out", folder / "b"
        )
        same = (folder / "a" / "records.jsonl").read_bytes() == (folder / "b" / "records.jsonl").read_bytes()
        ratio = row["build_saved"]["peak_mib"] / row["build"]["peak_mib"]
        print(
            f"{n_chunks:,} chunks: index {row['index']['seconds']:.1f} s / {row['index']['peak_mib']:.0f} MiB; "
            f"build indexing itself {row['build']['seconds']:.1f} s / {row['build']['peak_mib']:.0f} MiB; "
            f"build over the saved index {row['build_saved']['seconds']:.1f} s / "
            f"{row['build_saved']['peak_mib']:.0f} MiB (peak RSS {ratio:.2f}x, target <= 0.5x at 1M chunks); "
            f"records {'identical' if same else 'DIFFERENT'}"
        )
        rows.append(row)
        shutil.rmtree(folder)
    for before, after in zip(rows, rows[1:], strict=False):
        step = after["chunks"] / before["chunks"]
        growth = {k: after[k]["seconds"] / before[k]["seconds"] for k in ("index", "build", "build_saved")}
        memory = {k: after[k]["peak_mib"] / before[k]["peak_mib"] for k in ("index", "build", "build_saved")}
        print(
            f"x{step:g} chunks: time "
            + ", ".join(f"{k} x{v:.2f}" for k, v in growth.items())
            + "; peak RSS "
            + ", ".join(f"{k} x{v:.2f}" for k, v in memory.items())
        )
    if len(rows) > 1:
        last, before = rows[-1], rows[-2]
        exponent = {
            k: math.log(last[k]["seconds"] / before[k]["seconds"]) / math.log(last["chunks"] / before["chunks"])
            for k in ("index", "build_saved")
        }
        scale = project / last["chunks"]
        print(
            f"projection to {project:,} chunks (not measured; time ~ chunks^e from the last step, memory "
            "linear): "
            + ", ".join(
                f"{k} ~{last[k]['seconds'] * scale ** exponent[k] / 3600:.1f} h, "
                f"~{last[k]['peak_mib'] * scale / 1024:.0f} GiB"
                for k in ("index", "build_saved")
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=("kg", "corpus"), help="run one section (default: both)")
    parser.add_argument("--corpus-chunks", default="100000,300000,1000000", help="comma-separated corpus sizes")
    parser.add_argument("--project-chunks", type=int, default=21_000_000, help="the corpus size to project to")
    parser.add_argument("--kg-triples", default="2000000,20000000", help="comma-separated KG sizes")
    parser.add_argument("--kg-questions", type=int, default=200)
    parser.add_argument("--project", type=int, default=100_000_000, help="the KG size to project to")
    parser.add_argument("--json", action="store_true", help="also print every measurement as one JSON line")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    try:
        rows: dict[str, Any] = {}
        if args.only in (None, "kg"):
            sizes = [int(size) for size in args.kg_triples.split(",")]
            rows["kg"] = measure_kg(work, sizes, args.kg_questions, args.project)
        if args.only in (None, "corpus"):
            sizes = [int(size) for size in args.corpus_chunks.split(",")]
            rows["corpus"] = measure_corpus(work, sizes, args.project_chunks)
        if args.json:
            print(json.dumps(rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
