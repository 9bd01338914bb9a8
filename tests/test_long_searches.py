"""The long fuzz and fault searches, behind the `fuzz` marker (not in the default run):
`nox -s tests -- -m fuzz` runs the reader fuzzing with 2,000 random inputs per fuzz test (200 for
the one that trains a step per input: 28,200 inputs in 15 tests) and kills every command at 10
points."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.fuzz, pytest.mark.slow]  # slow too: `-m "not slow"` replaces the default `-m "not fuzz"`
TESTS = Path(__file__).parent


def test_fuzz_readers_long() -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "test_fuzz_readers.py")]
    done = subprocess.run([*command, "--hypothesis-profile", "long"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:]


def test_faults_long() -> None:
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(TESTS / "test_faults.py")]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "FAULT_POINTS": "10"})
    assert done.returncode == 0, done.stdout[-3000:]
