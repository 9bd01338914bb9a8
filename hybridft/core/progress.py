"""Progress bars and log lines on stderr; stdout is kept for results."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.console import Console

T = TypeVar("T")

console = Console(stderr=True)


def log(message: str) -> None:
    console.print(message, highlight=False)


def quiet_libraries() -> None:
    """Silence what libraries print on stderr that is not about the user's run: bitsandbytes'
    kernel-hub notice ("Failed to load CPU gemm_4bit_forward ...", harmless; STACK-NOTES), the
    kernels hub's trust warning, and transformers' deprecation of a name peft and TRL still call.
    Set before those libraries are imported, so their import-time messages are caught too."""
    import logging
    import warnings

    for name in ("bitsandbytes", "kernels"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)


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


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar on stderr (only on a terminal) for work that reports each item done
    through a callback: yields the function that advances it by one."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with progress:
        bar = progress.add_task(description, total=total)
        yield lambda: progress.advance(bar)
