"""Option schemas shared by every command: recipe keys that are also long options.

A command declares its options as a list of :class:`Option`. Values come from a YAML recipe and
from ``--key value`` tokens (the command line wins); :func:`resolve` checks every key before any
work starts and raises one :class:`UsageError` listing every problem found.
"""

from __future__ import annotations

import difflib
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridft.core.errors import UsageError
from hybridft.core.readers import MAX_NESTING, TOO_DEEP, nesting

TRUE_WORDS = {"true", "yes", "on", "1"}
FALSE_WORDS = {"false", "no", "off", "0"}

# Flags every command understands; they steer the command and are never recipe keys.
CONTROL_FLAGS = ("recipe", "config", "json", "dry_run", "help", "debug")


@dataclass(frozen=True)
class Option:
    """One recipe key / long option.

    kind is one of ``int``, ``float``, ``bool``, ``str``, ``path`` (an input that must exist
    unless it is ``hf:...``), ``outpath`` (an output location), ``list`` (strings; a YAML list
    or a comma-separated string) and ``mapping`` (a YAML mapping, or ``--name KEY=VALUE`` repeated;
    the command line's keys replace the recipe's one by one; values stay as written).
    """

    name: str
    kind: str
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    below_maximum: bool = False  # True: the maximum itself is not allowed
    required: bool = False
    # Required unless this other option is set (to anything but none): ``qa`` unless ``generator``.
    required_unless: str | None = None
    # The long option when it is not the key's name: ``trainer_args`` <-> ``--trainer-arg`` (repeated).
    cli_name: str | None = None
    # ``none`` is one of its values, turning something off (``--teacher none``); any other option
    # with a default refuses it (``--retriever none`` replaced bm25 by nothing: a TypeError later).
    none_turns_off: bool = False

    @property
    def flag(self) -> str:
        return "--" + (self.cli_name or self.name).replace("_", "-")

    def range_text(self) -> str:
        """``between 0 and 1``, ``at least 1``, ``at least 0 and below 1``, or empty."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            if self.below_maximum:
                return f"at least {low:g} and below {high:g}"
            return f"between {low:g} and {high:g}"
        if low is not None:
            return f"at least {low:g}"
        if high is not None:
            return f"below {high:g}" if self.below_maximum else f"at most {high:g}"
        return ""

    def allowed(self) -> str:
        """Say in words what values are allowed, for error messages and help."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.kind in ("int", "float"):
            noun = "an integer" if self.kind == "int" else "a number"
            return f"{noun} {self.range_text()}".rstrip()
        return {
            "bool": "true or false",
            "path": "an existing file or folder, or hf:NAME[:CONFIG][@SPLIT]",
            "outpath": "a folder path",
            "list": "a comma-separated list or a YAML list",
            "mapping": "KEY=VALUE (repeat the option for more keys) or a YAML mapping",
        }.get(self.kind, "a string")


@dataclass
class CommandLine:
    """Tokens after the command name, split into the positional word, control flags and options."""

    positional: list[str]
    control: dict[str, Any]
    values: dict[str, Any]  # option name -> raw value (str, or True/False for bare flags)
    errors: list[str]  # unknown options, missing values: reported by resolve() with the rest


def peek_recipe(tokens: list[str]) -> str | None:
    """Find ``--recipe``/``--config`` before the schema is known (it may name the KIND)."""
    for i, token in enumerate(tokens):
        for flag in ("--recipe", "--config"):
            if token == flag and i + 1 < len(tokens):
                return tokens[i + 1]
            if token.startswith(flag + "="):
                return token.split("=", 1)[1]
    return None


def parse_tokens(tokens: list[str], options: list[Option]) -> CommandLine:
    """Split argv tokens into positionals, control flags and option values (raw strings).

    Bool options work as ``--flag``, ``--no-flag`` or ``--flag false``. Unknown options are
    collected (with a close match when there is one) for :func:`resolve` to report with every
    other problem.
    """
    by_name = {(o.cli_name or o.name): o for o in options}
    positional: list[str] = []
    control: dict[str, Any] = {}
    values: dict[str, Any] = {}
    errors: list[str] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        if token == "-h":
            control["help"] = True
            continue
        if not token.startswith("--") or token == "--":
            positional.append(token)
            continue
        key, eq, inline = token[2:].partition("=")
        name = key.replace("-", "_")
        takes_next = not eq and i < len(tokens) and not tokens[i].startswith("--")
        if name in CONTROL_FLAGS:
            if name in ("recipe", "config"):
                if not (eq or takes_next):
                    errors.append(f"{token} needs a file path")
                else:
                    control["recipe"] = inline if eq else tokens[i]
                    i += 0 if eq else 1
            else:
                control[name] = True
            continue
        if name.startswith("no_") and by_name.get(name[3:]) and by_name[name[3:]].kind == "bool":
            values[name[3:]] = False
            continue
        option = by_name.get(name)
        if option is None:
            errors.append(unknown_key_message(key, by_name))
            i += 1 if takes_next else 0
            continue
        name = option.name
        if option.kind == "mapping":  # repeatable: every KEY=VALUE is kept
            if eq or takes_next:
                values.setdefault(name, []).append(inline if eq else tokens[i])
                i += 0 if eq else 1
            else:
                errors.append(f"{option.flag} needs a value ({option.allowed()})")
        elif eq:
            values[name] = inline
        elif option.kind == "bool":
            if takes_next and tokens[i].lower() in TRUE_WORDS | FALSE_WORDS:
                values[name] = tokens[i]
                i += 1
            else:
                values[name] = True
        elif takes_next:
            values[name] = tokens[i]
            i += 1
        else:
            errors.append(f"{option.flag} needs a value ({option.allowed()})")
    return CommandLine(positional, control, values, errors)


def unknown_key_message(key: str, by_name: dict[str, Option], *, as_flag: bool = True) -> str:
    """``unknown option --foo (did you mean --bar?)``, or the recipe-key wording."""
    name = key.replace("-", "_")
    candidates = difflib.get_close_matches(name, list(by_name), n=1)
    if as_flag:
        hint = f" (did you mean {by_name[candidates[0]].flag}?)" if candidates else ""
        return f"unknown option --{key}{hint}"
    hint = f" (did you mean {candidates[0]}?)" if candidates else ""
    return f"unknown key {key!r}{hint}"


def load_recipe(path: str) -> tuple[dict[str, Any], Path]:
    """Read a YAML recipe; return its mapping and its folder (relative input paths start there)."""
    import yaml

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"{path}: recipe file not found")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not valid UTF-8") from None
    except RecursionError:  # PyYAML recurses once per level: ~500 levels of [ or { are too many
        raise UsageError(f"{path}: {TOO_DEEP}") from None
    except ValueError as exc:  # a value PyYAML's constructors refuse: an int of 4,300+ digits, 2001-13-45
        raise UsageError(f"{path}: invalid YAML: {str(exc).partition(';')[0]}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise UsageError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a recipe must be a mapping of keys to values")
    if nesting(data) > MAX_NESTING:  # aliases too: `a: &a [*a]` holds itself
        raise UsageError(f"{path}: {TOO_DEEP}")
    return data, file.parent


def resolve(
    options: list[Option],
    recipe: dict[str, Any],
    cli: dict[str, Any],
    *,
    recipe_name: str = "recipe",
    recipe_dir: Path | None = None,
    ignore_keys: tuple[str, ...] = ("kind",),
    errors: list[str] | None = None,
) -> dict[str, Any]:
    """Merge defaults < recipe < command line, check every value, raise all errors at once.

    Relative input paths in a recipe are taken from the recipe's folder, so a recipe runs from
    any working directory; paths on the command line are taken from the working directory.
    """
    by_name = {o.name: o for o in options}
    errors = list(errors or [])
    config: dict[str, Any] = {o.name: o.default for o in options}
    for key, value in recipe.items():
        if key in ignore_keys:
            continue
        option = by_name.get(key)
        if option is None:
            errors.append(f"{recipe_name}: {unknown_key_message(str(key), by_name, as_flag=False)}")
            continue
        converted = _convert(option, value, f"{recipe_name}: {key}")
        if isinstance(converted, _Invalid):
            errors.append(converted.message)
            continue
        if option.kind == "path" and recipe_dir is not None and converted is not None:
            converted = _from_recipe_dir(converted, recipe_dir)
        config[key] = converted
    for key, value in cli.items():
        option = by_name[key]
        converted = _convert(option, value, option.flag)
        if isinstance(converted, _Invalid):
            errors.append(converted.message)
        elif option.kind == "mapping":
            config[key] = {**(config[key] or {}), **converted}
        else:
            config[key] = converted
    for option in options:
        value = config[option.name]
        where = option.flag
        if value is None:
            if option.required or (option.required_unless and config.get(option.required_unless) in (None, "none")):
                errors.append(f"{where} is required ({option.help})")
            continue
        message = _check(option, value)
        if message:
            errors.append(f"{option.name}={_show(value)}: {message}")
    if errors:
        raise UsageError(*errors)
    return config


class _Invalid:
    def __init__(self, message: str):
        self.message = message


SHOWN = 120  # characters of a value an error shows at most


def _show(value: Any) -> str:
    """A value as an error shows it: a list as ``a,b``, cut to :data:`SHOWN` characters. Bounded
    work too: a recipe value can be a 5,000-character string, a 5,000-digit number, or a YAML
    alias that expands to billions of items (``b: &b [*a, *a, ...]``), never written out whole."""
    if isinstance(value, bool):
        return str(value).lower()
    scalars = (str, int, float)
    if isinstance(value, list) and len(value) <= SHOWN and all(isinstance(v, scalars) for v in value):
        text = ",".join(_scalar(v) for v in value)
    elif isinstance(value, scalars) or value is None:
        text = _scalar(value)
    else:
        text = _SHORT.repr(value)
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."


def _short_repr() -> reprlib.Repr:
    short = reprlib.Repr()  # keyword arguments only from Python 3.12
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring, short.maxother = 3, 4, 4, SHOWN, SHOWN
    return short


_SHORT = _short_repr()


def _scalar(value: Any) -> str:
    try:
        return str(value)[: SHOWN + 1]
    except ValueError:  # an int of more digits than Python converts (4,300)
        return "a number too long to show"


def _convert(option: Option, value: Any, where: str) -> Any:
    """Coerce a YAML value or a command-line string to the option's type."""
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null") and not option.choices):
        if option.default is not None and (value is None or not option.none_turns_off):
            # An option with a default is never unset by YAML's null (`retriever:` left empty), nor
            # by none unless none is one of its values (`--teacher none`): it replaced the default,
            # a TypeError later (`distractors: null`).
            shown, default = "null" if value is None else value, _show(option.default)
            return _Invalid(f"{where}={shown}: expected {option.allowed()} (leave it out for the default, {default})")
        return None
    bad = _Invalid(f"{where}={_show(value)}: expected {option.allowed()}")
    kind = option.kind
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in TRUE_WORDS | FALSE_WORDS:
            return value.lower() in TRUE_WORDS
        return bad
    if kind == "int":
        if isinstance(value, bool):
            return bad
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                return bad
        return bad
    if kind == "float":
        if isinstance(value, bool):
            return bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                return bad
        return bad
    if kind == "mapping":
        return _mapping(value, where, bad)
    if kind == "list":
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value):
            return [str(v) for v in value]
        return bad
    if value is True or value is False or isinstance(value, (dict, list)):
        return bad
    return str(value)


def _mapping(value: Any, where: str, bad: _Invalid) -> Any:
    """A YAML mapping (values kept as YAML typed them, lists and mappings refused), or command-line
    ``KEY=VALUE`` strings (values kept as strings)."""
    if isinstance(value, dict):
        if all(isinstance(k, str) and not isinstance(v, (dict, list)) for k, v in value.items()):
            return dict(value)
        return bad
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        return bad
    pairs = {}
    for item in value:
        if not isinstance(item, (str, int, float)):
            return bad
        key, eq, text = str(item).partition("=")
        if not eq or not key.strip():
            return _Invalid(f"{where}={_show(item)}: expected KEY=VALUE")
        pairs[key.strip()] = text
    return pairs


def _check(option: Option, value: Any) -> str | None:
    if option.choices:
        items = value if isinstance(value, list) else [value]
        wrong = [v for v in items if v not in option.choices]
        if wrong:
            return f"expected {option.allowed()}"
    if option.kind in ("int", "float"):
        if option.minimum is not None and value < option.minimum:
            return f"must be {option.range_text()}"
        if option.maximum is not None and (
            value > option.maximum or (option.below_maximum and value >= option.maximum)
        ):
            return f"must be {option.range_text()}"
    if option.kind in ("path", "outpath") and not str(value).startswith("hf:"):
        try:
            exists = Path(value).exists()
        except (OSError, ValueError) as exc:  # a name too long for the file system, a NUL byte
            return f"not a usable path ({getattr(exc, 'strerror', None) or exc})"
        if option.kind == "path" and not exists:
            return "no such file or folder"
    if option.kind in ("str", "path", "outpath") and str(value) == "":
        return "must not be empty"
    return None


def _from_recipe_dir(value: str, recipe_dir: Path) -> str:
    if value.startswith("hf:") or Path(value).is_absolute():
        return value
    return str(recipe_dir / value)
