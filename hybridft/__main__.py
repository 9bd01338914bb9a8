"""``python -m hybridft`` and the ``hybridft`` console script. The CLI is imported inside
:func:`main` so that a Ctrl-C while it still imports (typer, rich) ends as every interrupt does,
exit 130 and one line, not in a traceback.

A run that saw a Ctrl-C ends with its own exit code at once (130 when it stopped, 0 when it had
finished anyway): a KeyboardInterrupt that passed through a library's C code can leave Python set
to end the process by re-raising SIGINT (exit -2) even though hybridft handled it.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

_interrupted = False


def _interrupt(signum: int, frame: Any) -> None:
    """Python's own Ctrl-C handler, remembering that it ran."""
    global _interrupted
    _interrupted = True
    raise KeyboardInterrupt


def _unraisable(unraisable: Any) -> None:
    """A Ctrl-C that lands in a finaliser (an object's ``__del__``) cannot stop the run: Python
    prints its traceback and goes on. One line instead; the next Ctrl-C stops the run."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        sys.stderr.write("interrupt received while an object was being cleaned up; press Ctrl-C again to stop\n")
        return
    sys.__unraisablehook__(unraisable)


def main() -> None:
    signal.signal(signal.SIGINT, _interrupt)
    sys.unraisablehook = _unraisable
    try:
        from hybridft.cli.main import run

        run()
        code: Any = 0
    except KeyboardInterrupt:  # before the command ran: while the CLI imports or typer reads the line
        sys.stderr.write("interrupted before the command started; nothing was written\n")
        code = 130
    except SystemExit as done:
        code = done.code
    if _interrupted:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code if isinstance(code, int) else 0 if code is None else 1)
    # The command is over. A Ctrl-C during Python's teardown has nothing left to stop, and once
    # the signal module is finalised it would end the process with -2: ignored (an ignored signal
    # stays ignored through the teardown).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise SystemExit(code)


if __name__ == "__main__":
    main()
