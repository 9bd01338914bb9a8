"""Errors the CLI maps to exit codes: bad usage or input is exit 2, everything else exit 1."""

from __future__ import annotations


class UsageError(Exception):
    """Bad usage or bad input (config, file, schema). The CLI exits with code 2.

    Carries one or more messages so that every problem found is reported at once.
    """

    def __init__(self, *messages: str):
        self.messages = list(messages) or ["bad usage"]
        super().__init__("\n".join(self.messages))


class InputError(UsageError):
    """A problem in an input file, always naming the file and, where there is one, the line."""
