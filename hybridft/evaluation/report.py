"""What every evaluation writes: report.json, examples.jsonl, a table on stderr, deltas against
another report, and charts.

``report.json`` = ``{"kind", "count", "metrics": {name: value}, "skipped": {reason: n}}`` (plus
``by_distractors`` for a RAFT robustness curve, ``by_k`` for ``eval rag``); values are fractions
in [0, 1].
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybridft.core.errors import UsageError
from hybridft.core.outputs import atomic_output_dir, write_jsonl
from hybridft.core.progress import console
from hybridft.core.readers import read_json_object
from hybridft.evaluation.metrics import mean


@dataclass
class Report:
    kind: str
    examples: list[dict[str, Any]]  # per-example outputs and scores (examples.jsonl)
    metric_names: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. by_distractors, settings
    # The examples the headline metrics average (default: all); eval rag: those at its largest k.
    summary: list[dict[str, Any]] | None = None
    extra_metrics: dict[str, float | None] = field(default_factory=dict)  # e.g. answer_recall@5

    def metrics(self, examples: list[dict[str, Any]] | None = None) -> dict[str, float | None]:
        rows = (self.examples if self.summary is None else self.summary) if examples is None else examples
        return {name: _round(mean([r["scores"].get(name) for r in rows])) for name in self.metric_names}

    def as_json(self) -> dict[str, Any]:
        rows = self.examples if self.summary is None else self.summary
        return {
            "kind": self.kind,
            "count": len(rows),
            "metrics": {**self.metrics(), **self.extra_metrics},
            "skipped": dict(sorted(self.skipped.items())),
            **self.extra,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def read_report(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    data = read_json_object(file, f"--compare {file}: no such file", f"--compare {file}: not a report.json")
    if not isinstance(data.get("metrics"), dict):
        raise UsageError(f"--compare {file}: not a report.json (no metrics)")
    return data


def deltas(report: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """This report's metrics minus the other's, for the metrics both have."""
    mine, theirs = report["metrics"], other["metrics"]
    return {
        name: round(mine[name] - theirs[name], 6)
        for name in mine
        if isinstance(mine.get(name), (int, float)) and isinstance(theirs.get(name), (int, float))
    }


def write_report(out: str | Path, overwrite: bool, report: Report, other: dict[str, Any] | None) -> dict[str, Any]:
    """Write report.json, examples.jsonl and charts atomically; return report.json's content."""
    content = report.as_json()
    if other is not None:
        content["compare"] = {"other": other.get("metrics", {}), "delta": deltas(content, other)}
    with atomic_output_dir(out, overwrite) as temp:
        write_jsonl(temp / "examples.jsonl", report.examples)
        (temp / "report.json").write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
        draw_charts(temp, content, other)
    return content


def print_table(content: dict[str, Any]) -> None:
    """The metrics (and deltas, and the robustness curve) as a rich table on stderr."""
    from rich.table import Table

    delta = content.get("compare", {}).get("delta", {})
    table = Table(title=f"eval {content['kind']}: {content['count']} examples", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if delta:
        table.add_column("other", justify="right")
        table.add_column("delta", justify="right")
    for name, value in content["metrics"].items():
        row = [name, _show(value)]
        if delta:
            row += [_show(content["compare"]["other"].get(name)), _signed(delta.get(name))]
        table.add_row(*row)
    console.print(table)
    curve, axis = _curve(content)
    if curve:
        names = list(next(iter(curve.values())))
        by_k = Table(title=f"by {axis}", title_justify="left")
        by_k.add_column("k", justify="right")
        for name in names:
            by_k.add_column(name, justify="right")
        for k, metrics in curve.items():
            by_k.add_row(k, *(_show(metrics[n]) for n in names))
        console.print(by_k)
    skipped = {k: v for k, v in content["skipped"].items() if v}
    if skipped:
        console.print("skipped: " + ", ".join(f"{k}={v}" for k, v in skipped.items()), highlight=False)


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.4f}"


def _curve(content: dict[str, Any]) -> tuple[Any, str]:
    """The report's metrics against a number (RAFT: test-time distractors; RAG: retrieved chunks)."""
    if content.get("by_distractors"):
        return content["by_distractors"], "test-time distractors"
    if content.get("by_k"):
        return content["by_k"], "retrieved chunks (k)"
    return None, ""


def draw_charts(folder: Path, content: dict[str, Any], other: dict[str, Any] | None) -> list[str]:
    """``robustness.png`` (RAFT: metrics against test-time distractors), ``by_k.png`` (RAG: metrics
    against retrieved chunks) and ``compare.png`` (this run's metrics beside the other report's).
    Returns the file names drawn."""
    curve, axis = _curve(content)
    if not curve and other is None:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = []
    if curve:
        figure, axes = plt.subplots(figsize=(6, 4))
        ks = [int(k) for k in curve]
        for name in ("exact_match", "f1", "contains", "answer_recall"):
            values = [curve[str(k)].get(name) for k in ks]
            if all(v is not None for v in values):
                axes.plot(ks, values, marker="o", label=name)
        other_curve = (_curve(other)[0] if other else None) or {}
        if other_curve:
            shared = [k for k in ks if str(k) in other_curve]
            values = [other_curve[str(k)].get("exact_match") for k in shared]
            if shared and all(v is not None for v in values):
                axes.plot(shared, values, marker="x", linestyle="--", label="exact_match (other)")
        axes.set_xlabel(axis)
        axes.set_ylabel("score")
        axes.set_ylim(0, 1.02)
        axes.set_xticks(ks)
        axes.grid(alpha=0.3)
        axes.legend()
        name = "robustness.png" if content.get("by_distractors") else "by_k.png"
        axes.set_title("RAFT robustness to distractors" if name == "robustness.png" else "RAG accuracy against k")
        figure.tight_layout()
        figure.savefig(folder / name, dpi=100)
        plt.close(figure)
        drawn.append(name)
    if other is not None:
        names = [n for n, v in content["metrics"].items() if v is not None and other["metrics"].get(n) is not None]
        if names:
            figure, axes = plt.subplots(figsize=(max(5, len(names) * 1.1), 4))
            positions = range(len(names))
            axes.bar([p - 0.2 for p in positions], [other["metrics"][n] for n in names], 0.4, label="other (--compare)")
            axes.bar([p + 0.2 for p in positions], [content["metrics"][n] for n in names], 0.4, label="this run")
            axes.set_xticks(list(positions))
            axes.set_xticklabels(names, rotation=30, ha="right")
            lowest = min([0.0, *(other["metrics"][n] for n in names), *(content["metrics"][n] for n in names)])
            axes.set_ylim(lowest - 0.02 if lowest < 0 else 0, 1.02)  # Kendall tau can be negative
            axes.legend()
            axes.set_title(f"eval {content['kind']}")
            figure.tight_layout()
            figure.savefig(folder / "compare.png", dpi=100)
            plt.close(figure)
            drawn.append("compare.png")
    return drawn
