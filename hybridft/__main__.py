"""``python -m hybridft`` and the ``hybridft`` console script. The CLI is imported inside
:func:`main` so that a Ctrl-C while it still imports (typer, rich) ends as every interrupt does,
exit 130 and one line, not in a traceback."""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from hybridft.cli.main import run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted before the command started; nothing was written\n")
        raise SystemExit(130) from None
    run()


if __name__ == "__main__":
    main()
