"""``hybridft demo``: the whole pipeline on the sample data bundled with the package, on the CPU.

RAFT, RoG and Invar-RAG (generation stage) data from the sample recipes, mixed by weight; the
``tiny`` model fine-tuned on the mix; the bundled corpus indexed (bm25); the base and the tuned
model evaluated through ``eval rag`` (retrieved chunks -> answer) on the RAFT questions of the eval
split, which the tuned model never saw, and compared. No network; a few minutes on two cores.
"""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack, redirect_stdout
from importlib import resources
from io import StringIO
from pathlib import Path
from typing import Any

from hybridft.cli import build_data
from hybridft.cli.common import EXIT_OK, emit
from hybridft.core.errors import UsageError
from hybridft.core.progress import log

USAGE = """\
usage: hybridft demo [--out DIR] [--max-steps N] [--json]

Runs the pipeline on the sample data bundled with hybridft, on the CPU, with no network:
  1-4  build RAFT, RoG and Invar-RAG (generation stage) data, and mix them (2:1:1) -> DIR/data
  5    fine-tune the tiny LLaMA on the mix (all weights: it is tiny)              -> DIR/run
  6    index the bundled RAFT corpus with bm25                                    -> DIR/index
  7-8  base vs tuned model on the held-out RAFT questions (eval split), answering
       from the top-k retrieved chunks (eval rag), compared                      -> DIR/eval
DIR defaults to hybridft-demo and is replaced if an earlier demo left it there.
  --max-steps N   training steps (default 300: enough to learn the sample's answers)
"""

STEPS = 300
# Settings that let a 2-layer model learn the sample in a couple of CPU minutes.
TRAINING = {
    "model": "tiny",
    "learning_rate": 3e-3,
    "batch_size": 8,
    "method": "full",  # a 2-layer random model learns the sample far faster in full than with LoRA
    "warmup_ratio": 0.05,
    "gradient_checkpointing": False,
    "logging_steps": 25,
    "save_steps": 100,
    "max_length": 1024,
}
# Held-out questions only (the eval split), answered from chunks retrieved over the whole corpus.
EVAL = {"split": "eval", "k": ["1", "3"], "max_new_tokens": 96, "batch_size": 16}


def parse(tokens: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {"out": "hybridft-demo", "max_steps": STEPS, "json": False}
    i = 0
    while i < len(tokens):
        token, value = tokens[i], tokens[i + 1] if i + 1 < len(tokens) else None
        if token in ("--help", "-h"):
            options["help"] = True
        elif token in ("--json", "--debug"):
            options["json"] = options["json"] or token == "--json"
        elif token in ("--out", "--max-steps") and value is not None:
            options[token[2:].replace("-", "_")] = value
            i += 1
        else:
            raise UsageError(f"demo: unknown option {token} (allowed: --out DIR, --max-steps N, --json)")
        i += 1
    try:
        options["max_steps"] = int(options["max_steps"])
    except ValueError:
        options["max_steps"] = 0
    if options["max_steps"] < 1:
        raise UsageError(f"--max-steps={tokens[tokens.index('--max-steps') + 1]}: expected an integer at least 1")
    return options


def main(tokens: list[str]) -> int:
    options = parse(tokens)
    if options.get("help"):
        print(USAGE)
        return EXIT_OK
    out = Path(options["out"])
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / "demo.json").is_file()):
            raise UsageError(f"--out {out}: exists and is not an earlier demo's folder; choose another --out")
        shutil.rmtree(out)
    data = out / "data"
    with ExitStack() as stack:
        recipes = resources.files("hybridft.data_recipes")
        recipe = {
            name: str(stack.enter_context(resources.as_file(recipes / f"{name}_sample.yaml")))
            for name in ("raft", "rog", "invar")
        }
        _stage(1, "RAFT data: oracle + distractor documents, quoted answers", "raft", recipe["raft"], data / "raft")
        _stage(2, "RoG data: relation-path plans and reasoning", "rog", recipe["rog"], data / "rog")
        _stage(
            3,
            "Invar-RAG data: answers from bm25-retrieved documents",
            "invar",
            recipe["invar"],
            data / "invar",
            "--stage",
            "generation",
        )
        inputs = f"{data / 'raft'}:2,{data / 'rog'}:1,{data / 'invar'}:1"
        _stage(4, "the hybrid mix, RAFT:RoG:Invar-RAG = 2:1:1", "mix", None, data / "mix", "--inputs", inputs)
    run = _finetune(data / "mix", out / "run", options["max_steps"])
    index = _index(data / "raft", out / "index")
    base = _evaluate(7, "the base tiny model", data / "raft", index, out / "eval" / "base", adapter=None, compare=None)
    tuned = _evaluate(
        8, "the tuned model", data / "raft", index, out / "eval" / "tuned", adapter=out / "run", compare=base
    )
    summary = {
        "command": "demo",
        "out": str(out),
        "train_loss": run["final"].get("train_loss"),
        "questions": f"{tuned['count']} held-out RAFT questions (eval split), top-{tuned['k']} bm25 chunks",
        "base": base["metrics"],
        "tuned": tuned["metrics"],
        "delta": tuned["compare"]["delta"],
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    lines = [f"demo: base -> tuned on {summary['questions']} (report: {out / 'eval' / 'tuned'})"]
    for name in ("exact_match", "f1", "contains", "answer_format", f"answer_recall@{tuned['k']}"):
        lines.append(f"  {name:18s} {base['metrics'][name]:.3f} -> {tuned['metrics'][name]:.3f}")
    emit(summary, options["json"], "\n".join(lines))
    return EXIT_OK


def _stage(number: int, title: str, kind: str, recipe: str | None, out: Path, *extra: str) -> None:
    log(f"[{number}/8] {title}")
    tokens = [kind, *(["--recipe", recipe] if recipe else []), "--out", str(out), *extra]
    with redirect_stdout(StringIO()):  # the demo prints one summary at the end
        build_data.main(tokens)


def _finetune(data: Path, out: Path, steps: int) -> dict[str, Any]:
    from hybridft.core.options import resolve
    from hybridft.training.config import OPTIONS
    from hybridft.training.sft import train

    log(f"[5/8] fine-tuning the tiny LLaMA on the mix ({steps} steps, CPU)")
    config = resolve(OPTIONS, {**TRAINING, "data": str(data), "out": str(out), "max_steps": steps}, {})
    run = train(config)
    if run["status"] != "complete":
        raise KeyboardInterrupt
    return run


def _index(raft_data: Path, out: Path) -> Path:
    """The corpus the RAFT data was built from, indexed with its chunking."""
    from hybridft.core.options import resolve
    from hybridft.core.readers import build_manifest
    from hybridft.retrieval.index import OPTIONS, build

    log("[6/8] indexing the bundled RAFT corpus (bm25)")
    built = build_manifest(raft_data)["options"]
    chunking = {key: built[key] for key in ("docs", "chunk_size", "chunk_overlap", "tokenizer")}
    build(resolve(OPTIONS, {**chunking, "retriever": "bm25", "out": str(out)}, {}))
    return out


def _evaluate(
    number: int, title: str, data: Path, index: Path, out: Path, adapter: Path | None, compare: dict[str, Any] | None
) -> dict[str, Any]:
    from hybridft.core.options import resolve
    from hybridft.evaluation import EVALUATIONS
    from hybridft.evaluation.report import print_table, write_report

    log(f"[{number}/8] evaluating {title} on the held-out RAFT questions, from retrieved chunks")
    spec = EVALUATIONS["rag"]
    source = {"adapter": str(adapter)} if adapter else {"model": "tiny"}
    config = resolve(spec.options, {**EVAL, **source, "qa": str(data), "index": str(index), "out": str(out)}, {})
    content = write_report(out, False, spec.evaluate(config), compare)
    print_table(content)
    return content
