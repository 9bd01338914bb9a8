"""Wires the commands into one typer app. Command modules are imported only when they run, so
``hybridft --help`` stays fast and never imports torch or transformers."""

from __future__ import annotations

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


@app.command("build-data", context_settings=PASSTHROUGH, add_help_option=False)
def build_data(ctx: typer.Context) -> None:
    """Build fine-tuning data: KIND is raft, rog, invar or mix (see `hybridft build-data KIND --help`)."""
    from hybridft.cli import build_data as command

    raise typer.Exit(run_guarded(command.main, ctx.args))


@app.command("demo", context_settings=PASSTHROUGH, add_help_option=False)
def demo(ctx: typer.Context) -> None:
    """Run the pipeline on bundled sample data, on the CPU (see `hybridft demo --help`)."""
    from hybridft.cli import demo as command

    raise typer.Exit(run_guarded(command.main, ctx.args))


@app.command("finetune", context_settings=PASSTHROUGH, add_help_option=False)
def finetune(ctx: typer.Context) -> None:
    """Fine-tune a LLaMA-family model with LoRA / QLoRA / full (see `hybridft finetune --help`)."""
    from hybridft.cli import finetune as command

    raise typer.Exit(run_guarded(command.main, ctx.args))


@app.command("eval", context_settings=PASSTHROUGH, add_help_option=False)
def evaluate(ctx: typer.Context) -> None:
    """Evaluate RAFT or RoG answers, or retrieval (see `hybridft eval KIND --help`)."""
    from hybridft.cli import eval as command

    raise typer.Exit(run_guarded(command.main, ctx.args))


def run() -> None:
    """Console-script entry point."""
    app()
