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
from hybridft.core.progress import console, quiet_libraries

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def run_guarded(command: Callable[[list[str]], int], tokens: list[str]) -> int:
    """Run a command, turning exceptions into exit codes and readable messages on stderr.

    Tracebacks are shown only with ``--debug`` or HYBRIDFT_DEBUG=1.
    """
    from rich.markup import escape

    debug = "--debug" in tokens or os.environ.get("HYBRIDFT_DEBUG") == "1"
    quiet_libraries()
    try:
        return command(tokens)
    except UsageError as exc:
        for message in exc.messages:
            console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        if debug:
            traceback.print_exc()
        return EXIT_USAGE
    except KeyboardInterrupt:
        console.print(
            "[bold red]interrupted[/]: no half-written output is left (an output is renamed into place only "
            "when complete); run the same command again to continue"
        )
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
    config, control = parse_command(
        rest, spec.options, spec.check, recipe=recipe, recipe_path=recipe_path, recipe_dir=recipe_dir
    )
    return KindCommand(kind, spec, config, control)


def parse_command(
    tokens: list[str],
    options: list[Option],
    check: Callable[[dict[str, Any]], list[str]],
    *,
    recipe: dict[str, Any] | None = None,
    recipe_path: str | None = None,
    recipe_dir: Any = None,
    positional: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Options from the recipe (read here unless given) and the command line, resolved and checked
    before any work: (config, control flags such as --json). ``positional`` names the option that a
    single bare argument fills (``ask``'s QUESTION); otherwise a bare argument is an error."""
    if recipe is None:
        recipe_path = peek_recipe(tokens)
        recipe, recipe_dir = load_recipe(recipe_path) if recipe_path else ({}, None)
    command = parse_tokens(tokens, options)
    values = dict(command.values)
    bare = list(command.positional)
    if positional is not None and len(bare) == 1 and positional not in values:
        values[positional] = bare.pop()
    if bare:
        raise UsageError(f"unexpected argument(s): {' '.join(bare)}")
    config = resolve(
        options,
        recipe,
        values,
        recipe_name=recipe_path or "recipe",
        recipe_dir=recipe_dir,
        errors=command.errors,
    )
    errors = check(config)
    if errors:
        raise UsageError(*errors)
    return config, command.control


def options_command(
    tokens: list[str],
    options: list[Option],
    check: Callable[[dict[str, Any]], list[str]],
    *,
    name: str,
    usage: str,
    positional: str | None = None,
    read_inputs: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """A command without KIND: ``--help`` prints the usage and the options, ``--dry-run`` the
    resolved options after ``read_inputs`` (the inputs read and checked as the run would) (both
    return None: nothing to run); otherwise (config, control flags)."""
    if "--help" in tokens or "-h" in tokens:
        print(usage)
        print_options(f"{name} options", options)
        return None
    config, control = parse_command(tokens, options, check, positional=positional)
    if control.get("dry_run"):
        if read_inputs is not None:
            read_inputs(config)
        print_resolved(name, None, config, bool(control.get("json")))
        return None
    return config, control


def print_resolved(command: str, kind: str | None, config: dict[str, Any], as_json: bool) -> None:
    """What ``--dry-run`` prints: the resolved options, as YAML (a recipe that would run the
    same), or as one JSON document with ``--json``."""
    if as_json:
        print(json.dumps({"command": command, **({"kind": kind} if kind else {}), "options": config}, indent=2))
        return
    import yaml

    print(yaml.safe_dump({**({"kind": kind} if kind else {}), **config}, sort_keys=False, allow_unicode=True), end="")


def _kind(kind: str | None, recipe: dict[str, Any], recipe_path: str | None) -> str | None:
    from_recipe = recipe.get("kind")
    if from_recipe is not None and not isinstance(from_recipe, str):
        raise UsageError(f"{recipe_path}: kind: expected a string")
    if kind and from_recipe and kind != from_recipe:
        raise UsageError(f"KIND {kind} on the command line contradicts kind: {from_recipe} in {recipe_path}")
    return kind or from_recipe
