"""Errors the CLI maps to exit codes: bad usage or input is exit 2, everything else exit 1."""

from __future__ import annotations


class UsageError(Exception):
    """Bad usage or bad input (config, file, schema). The CLI exits with code 2.

    Carries one or more messages so that every problem found is reported at once.
    """

    def __init__(self, *messages: str):
        self.messages = list(messages) or ["bad usage"]
        super().__init__("\n".join(self.messages))


def cannot_load(what: str, name: str, exc: BaseException, kind: str = "model") -> str:
    """One line for a model, tokenizer or dataset that did not load. A hub name that is not a local
    folder, offline (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE, or no network), says what is missing and
    how to provide it locally instead of the library's page of text."""
    import os
    from pathlib import Path

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    offline_env = any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in OFFLINE_VARIABLES)
    network = any(word in str(exc).lower() for word in ("offline", "connection", "resolve", "network", "internet"))
    hub_name = not name.startswith(("/", ".", "~")) and name.count("/") <= 1
    if not hub_name and not Path(name).exists():
        return f"{what}: {name}: no such folder"
    if hub_name and not Path(name).exists() and (offline_env or network):
        command = "hf download" + (" --repo-type dataset" if kind == "dataset" else "")
        return (
            f"{what}: {name} is not in the local Hugging Face cache and the hub cannot be reached "
            f"({'offline mode is set' if offline_env else 'no network'}): run `{command} {name}` where there is "
            f"network, or give a local {kind} folder"
        )
    return f"{what}: cannot load it ({text})"


OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


class InputError(UsageError):
    """A problem in an input file, always naming the file and, where there is one, the line."""
