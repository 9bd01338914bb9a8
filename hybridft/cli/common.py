"""What every command shares: exit codes, error printing, option help and result output."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hybridft.core.errors import UsageError
from hybridft.core.options import Option, load_recipe, parse_tokens, peek_recipe, resolve
from hybridft.core.progress import console

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


@dataclass
class KindCommand:
    """A ``COMMAND KIND ...`` invocation checked against KIND's options."""

    kind: str
    spec: Any  # the table entry: .summary, .options, .check
    config: dict[str, Any]
    control: dict[str, Any]  # --json, --dry-run, ...


def parse_kind_command(tokens: list[str], table: Mapping[str, Any], *, name: str, usage: str) -> KindCommand | None:
    """KIND (or a recipe's ``kind:``), recipe and options resolved and checked before any work;
    None when help was asked for (and printed). ``usage`` may hold ``{kinds}``."""
    kind = tokens[0] if tokens and not tokens[0].startswith("-") else None
    rest = tokens[1:] if kind else list(tokens)
    wants_help = "--help" in rest or "-h" in rest or not tokens
    recipe_path = peek_recipe(rest)
    recipe: dict[str, Any] = {}
    recipe_dir = None
    if recipe_path and not (wants_help and kind):
        recipe, recipe_dir = load_recipe(recipe_path)
    kind = _kind(kind, recipe, recipe_path)
    kinds = ", ".join(table)
    if kind is None:
        if wants_help:
            print(usage.format(kinds=kinds))
            return None
        raise UsageError(f"{name} needs a KIND ({kinds}) or a recipe with `kind:`")
    if kind not in table:
        raise UsageError(f"{name} KIND={kind}: expected one of {kinds}")
    spec = table[kind]
    if wants_help:
        print(usage.format(kinds=kinds))
        print_options(f"{name} {kind}: {spec.summary}", spec.options)
        return None
    command = parse_tokens(rest, spec.options)
    if command.positional:
        raise UsageError(f"unexpected argument(s): {' '.join(command.positional)}")
    config = resolve(
        spec.options,
        recipe,
        command.values,
        recipe_name=recipe_path or "recipe",
        recipe_dir=recipe_dir,
        errors=command.errors,
    )
    errors = spec.check(config)
    if errors:
        raise UsageError(*errors)
    return KindCommand(kind, spec, config, command.control)


def _kind(kind: str | None, recipe: dict[str, Any], recipe_path: str | None) -> str | None:
    from_recipe = recipe.get("kind")
    if from_recipe is not None and not isinstance(from_recipe, str):
        raise UsageError(f"{recipe_path}: kind: expected a string")
    if kind and from_recipe and kind != from_recipe:
        raise UsageError(f"KIND {kind} on the command line contradicts kind: {from_recipe} in {recipe_path}")
    return kind or from_recipe
