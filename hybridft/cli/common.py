"""What every command shares: exit codes, error printing, option help and result output."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from hybridft.errors import UsageError
from hybridft.options import Option
from hybridft.progress import console

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def run_guarded(command: Callable[[list[str]], int], tokens: list[str]) -> int:
    """Run a command, turning exceptions into exit codes and readable messages on stderr.

    Tracebacks are shown only with ``--debug`` or HYBRIDFT_DEBUG=1.
    """
    from rich.markup import escape

    debug = "--debug" in tokens or os.environ.get("HYBRIDFT_DEBUG") == "1"
    try:
        return command(tokens)
    except UsageError as exc:
        for message in exc.messages:
            console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        if debug:
            traceback.print_exc()
        return EXIT_USAGE
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]: no output was written")
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - every other failure is exit 1 with a message
        console.print(f"[bold red]error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False, soft_wrap=True)
        if debug:
            traceback.print_exc()
        else:
            console.print("(run with --debug for the traceback)", style="dim")
        return EXIT_FAILURE


def print_options(title: str, options: list[Option]) -> None:
    """Every option with its default and what it allows, on stdout (help is the result)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_lines=False)
    table.add_column("option")
    table.add_column("default")
    table.add_column("allowed")
    table.add_column("meaning")
    for option in options:
        default = "(required)" if option.required else _show_default(option.default)
        table.add_row(*(escape(cell) for cell in (option.flag, default, option.allowed(), option.help)))
    Console(width=160).print(table)


def _show_default(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(value)
    return str(value)


def emit(result: dict[str, Any], as_json: bool, human: str) -> None:
    """Results go to stdout: one JSON document with --json, else a short human summary."""
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(human.rstrip("\n") + "\n")
