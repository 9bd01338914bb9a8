"""Progress bars and log lines on stderr; stdout is kept for results."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console

T = TypeVar("T")

console = Console(stderr=True)


def log(message: str) -> None:
    console.print(message, highlight=False)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """A rich progress bar over ``items``, drawn on stderr (and only when it is a terminal)."""
    from rich.progress import track as rich_track

    yield from rich_track(
        items,
        description=description,
        total=total,
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
