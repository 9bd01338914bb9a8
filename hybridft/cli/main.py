"""Wires the commands into one typer app. Command modules are imported only when they run, so
``hybridft --help`` stays fast and never imports torch or transformers."""

from __future__ import annotations

import importlib
import signal

import typer

from hybridft import __version__
from hybridft.cli.common import run_guarded

app = typer.Typer(
    name="hybridft",
    help="RAG-aware fine-tuning: build RAFT / RoG / Invar-RAG data, fine-tune LLaMA-family models, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Options are parsed by hybridft itself (every recipe key is a long option), so typer passes
# all tokens through, --help included.
PASSTHROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


def _version(value: bool) -> None:
    if value:
        print(f"hybridft {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """hybridft command line."""


# Command name -> (the module in hybridft.cli whose ``main(tokens)`` runs it, its line in --help).
COMMANDS = {
    "build-data": (
        "build_data",
        "Build fine-tuning data: KIND is raft, rog, invar or mix (see `hybridft build-data KIND --help`).",
    ),
    "demo": ("demo", "Run the pipeline on bundled sample data, on the CPU (see `hybridft demo --help`)."),
    "finetune": (
        "finetune",
        "Fine-tune a LLaMA-family model with LoRA / QLoRA / full (see `hybridft finetune --help`).",
    ),
    "eval": ("eval", "Evaluate RAFT, RoG, retrieval or the whole RAG system (see `hybridft eval KIND --help`)."),
    "index": ("index", "Chunk and index a corpus once, for every command that ranks it (see `hybridft index --help`)."),
    "ask": ("ask", "Answer questions from an index with a (tuned) model (see `hybridft ask --help`)."),
    "export": ("export", "Turn a finished run into a model folder a server loads (see `hybridft export --help`)."),
    "inspect": ("inspect", "Show the data-quality checks of a build, with flagged rows (`hybridft inspect --help`)."),
}


def _add_command(name: str, module: str, summary: str) -> None:
    def command(ctx: typer.Context) -> None:
        main = importlib.import_module(f"hybridft.cli.{module}").main
        code = run_guarded(main, ctx.args)
        _finish_on_interrupt()
        raise typer.Exit(code)

    app.command(name, help=summary, context_settings=PASSTHROUGH, add_help_option=False)(command)


for _name, (_module, _summary) in COMMANDS.items():
    _add_command(_name, _module, _summary)


def _finish_on_interrupt() -> None:
    """The command has ended (its outputs written or refused whole): a Ctrl-C from here on —
    typer's exit, the interpreter's teardown — has nothing left to interrupt and is ignored, so
    the process ends with the command's code (not click's "Aborted!", exit 1, nor Python's -2)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run() -> None:
    """Console-script entry point."""
    app()
