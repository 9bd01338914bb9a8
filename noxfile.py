"""`nox -s tests` is what CI runs (.ci/run) and what the README tells newcomers to run."""

import os

import nox

nox.options.sessions = ["tests"]

# The CPU build of torch: a bare `torch` would pull a multi-GB CUDA build into a test venv.
# Set HYBRIDFT_TORCH to test against another build (e.g. on a GPU machine).
TORCH = os.environ.get("HYBRIDFT_TORCH", "torch==2.13.0")


@nox.session(reuse_venv=True)
def tests(session: nox.Session) -> None:
    """The whole suite, slow end-to-end runs included (`nox -s tests -- -m "not slow"` skips them)."""
    session.install(TORCH)
    session.install("-e", ".[test]")
    # Exit code 5 means pytest collected no test (e.g. a -k filter matched nothing): not a failure.
    session.run("pytest", *session.posargs, success_codes=[0, 5])


@nox.session(reuse_venv=True)
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6", "mypy>=1.10", "types-PyYAML")
    session.run("ruff", "check", "hybridft", "tests", "bench", "noxfile.py")
    session.run("ruff", "format", "--check", "hybridft", "tests", "bench", "noxfile.py")
    session.run("mypy")


@nox.session(reuse_venv=True)
def bench(session: nox.Session) -> None:
    """Benchmarks print ratios against baselines run in the same script."""
    session.install(TORCH)
    session.install("-e", ".[bench]")
    for script in session.posargs or ["bench/raft_build.py"]:
        session.run("python", script)
