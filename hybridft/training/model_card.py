"""The model card (README.md) of a run folder and of an exported model: YAML front matter the Hub
reads (``base_model``, library, tags), then how the model was trained, on what data, with which
prompt format, and the eval reports found next to the run.

TRL leaves a card that says "fine-tuned version of [None]"; hybridft writes its own at the end of
every training run and into every export.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from hybridft import __version__
from hybridft.core.readers import build_manifest, json_or_empty

HYPERPARAMETERS = (
    "trainer",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "learning_rate",
    "lr_scheduler",
    "epochs",
    "max_steps",
    "batch_size",
    "grad_accum",
    "max_length",
    "seed",
)
PROMPTS = {
    "raft": "RAFT: every document as `<DOCUMENT>text</DOCUMENT>` on its own line, then the question; the answer "
    "quotes the oracle (`##begin_quote##...##end_quote##`) and ends with `<ANSWER>: answer`.",
    "rog": "RoG: planning (question -> `<PATH>r1<SEP>r2</PATH>`) and reasoning (`Reasoning Paths:` one path per "
    "line, then `Question:`; the answers one per line).",
    "invar": "Invar-RAG generation: `Answer the question from the retrieved documents. Reply with the answer only.`, "
    "the documents as `<DOCUMENT>text</DOCUMENT>` lines, then `Question: ...`; the answer alone.",
    "retrieval": "Invar-RAG retriever: texts embedded as `query: ` + query or `passage: ` + passage, last-token "
    "pooling, L2-normalised.",
}


def data_summary(run: dict[str, Any]) -> dict[str, Any]:
    """The data manifest's kind, counts and (for a mix) its sources, when the data folder is there."""
    manifest = build_manifest(str((run.get("config") or {}).get("data", "")))
    if not manifest:
        return {}
    counts = manifest.get("counts") or {}
    kinds: list[Any] = [manifest.get("kind")]
    if manifest.get("kind") == "mix":
        inputs = (counts.get("inputs") or {}).values()
        kinds = sorted({str(source.get("kind")) for source in inputs if isinstance(source, dict)} | {"mix"})
    summary = {"kind": manifest.get("kind"), "kinds": kinds, "train": counts.get("train"), "eval": counts.get("eval")}
    stage = (manifest.get("options") or {}).get("stage")
    if manifest.get("kind") == "invar":
        summary["prompt"] = "retrieval" if stage == "retrieval" else "invar"
    return summary


def eval_reports(run_dir: Path) -> list[dict[str, Any]]:
    """report.json files near the run (its folder's parent, two levels down) that scored it."""
    found = []
    for path in sorted(run_dir.parent.glob("*/report.json")) + sorted(run_dir.parent.glob("*/*/report.json")):
        report = json_or_empty(path)
        if str(run_dir) in str(report.get("model", "")):
            found.append({"path": str(path), **{k: report.get(k) for k in ("kind", "count", "metrics")}})
    return found


def model_card(run_dir: Path, run: dict[str, Any], *, exported_as: str | None = None) -> str:
    config = run.get("config") or {}
    trainer = config.get("trainer", "sft")
    data = data_summary(run)
    kinds = [k for k in data.get("kinds", []) if k]
    sentence = trainer == "invar-retriever"
    front = {
        "base_model": config.get("model"),
        "library_name": "sentence-transformers" if sentence and exported_as else "transformers",
        "pipeline_tag": "sentence-similarity" if sentence else "text-generation",
        "tags": ["hybridft", trainer, str(run.get("method"))] + kinds,
    }
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", ""]
    title = exported_as or run_dir.name
    lines += [f"# {title}", ""]
    version = (run.get("versions") or {}).get("hybridft", __version__)
    lines.append(
        f"Fine-tuned from `{config.get('model')}` with hybridft {version}: trainer `{trainer}`, "
        f"method `{run.get('method')}`, {run.get('steps')} steps on {run.get('device', '?')}."
    )
    if exported_as:
        lines.append(
            f"Exported from the run folder `{run_dir}`"
            + (" (adapter merged into the base model)." if run.get("method") != "full" else ".")
        )
    lines += ["", "## Training", "", "| setting | value |", "|---|---|"]
    lora = run.get("method") != "full"  # a full fine-tune has no adapter: its LoRA settings did nothing
    shown = [key for key in HYPERPARAMETERS if lora or not key.startswith(("lora_", "target_modules"))]
    lines += [f"| {key} | {config[key]} |" for key in shown if config.get(key) is not None]
    lines += [f"| trainer_args.{key} | {value} |" for key, value in sorted((config.get("trainer_args") or {}).items())]
    for name, value in (run.get("final") or {}).items():
        lines.append(f"| final {name} | {value:.4f} |" if isinstance(value, float) else f"| final {name} | {value} |")
    lines += ["", "## Data", ""]
    if data:
        lines.append(
            f"`{config.get('data')}`: a `build-data {data['kind']}` folder ({', '.join(kinds)}), "
            f"{data.get('train')} train and {data.get('eval')} eval rows."
        )
    else:
        lines.append(f"`{config.get('data')}` (its manifest was not found when this card was written).")
    lines += ["", "## Prompt format", ""]
    prompts = [data["prompt"]] if "prompt" in data else [k for k in kinds if k in PROMPTS]
    if sentence:
        prompts = ["retrieval"]
    lines += [f"- {PROMPTS[p]}" for p in prompts] or ["- the rows of the data folder, as they are."]
    reports = eval_reports(run_dir)
    lines += ["", "## Evaluation", ""]
    if reports:
        for report in reports:
            metrics = ", ".join(f"{k} {v:.3f}" for k, v in (report["metrics"] or {}).items() if isinstance(v, float))
            lines.append(f"- `eval {report['kind']}` on {report['count']} examples ({report['path']}): {metrics}")
        lines.append("")
        lines.append("Scores on a build's `train` split measure memorisation, not the model; see each report's split.")
    else:
        lines.append("No eval report next to the run yet (`hybridft eval rag --adapter RUN ...`).")
    return "\n".join(lines) + "\n"


def write_model_card(folder: Path, run_dir: Path, run: dict[str, Any], *, exported_as: str | None = None) -> None:
    (folder / "README.md").write_text(model_card(run_dir, run, exported_as=exported_as), encoding="utf-8")
