"""``build-data KIND ... --shards N --ray [ADDRESS]``: the N shards of a build as Ray tasks, then
their merge into ``--out``.

Each task writes shard ``I/N`` with :func:`~hybridft.builders.folder.write_build` into
``OUT.shards/I-of-N`` (on a cluster that folder must be on a filesystem every node sees, as
``--out`` and the inputs). Ray schedules the tasks (one CPU each, ``--ray-gpus`` GPUs for builds
whose heavy part runs on one: teacher scoring, dense encoding, a local generator), retries a task
whose worker or node died (``--ray-retries``; each attempt is counted, and a shard that needed a
retry is logged and listed in the manifest's ``ray_retried``), and reports an error raised in a
task; every failed shard is named, and nothing is merged until all N are complete. A shard folder completed by an
earlier run of the same command is not built again, so rerunning a failed command resumes it. The
shard folders are removed once merged.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hybridft.builders.folder import write_build, write_merge
from hybridft.builders.merge import RUN_OPTIONS, build_options
from hybridft.core.errors import UsageError
from hybridft.core.outputs import check_output_dir
from hybridft.core.progress import log, progress_bar
from hybridft.core.readers import read_json_object


class ShardsFailed(RuntimeError):
    """Some shards failed after Ray's retries (exit 1); the message names each one and why."""


def run_on_ray(
    kind: str, config: dict[str, Any], build_shard: Callable[[str, dict[str, Any]], dict[str, Any]] = write_build
) -> dict[str, Any]:
    """Build the ``config["shards"]`` shards on Ray with ``build_shard`` and merge them into
    ``config["out"]``; returns what :func:`write_merge` returns."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'hybridft[ray]'") from None
    check_output_dir(config["out"], config["overwrite"])  # before the shards are built, not after
    count = config["shards"]
    folders = [Path(f"{config['out']}.shards") / f"{index}-of-{count}" for index in range(count)]
    configs = [_shard_config(config, index, folder) for index, folder in enumerate(folders)]
    todo = [index for index in range(count) if not _complete(folders[index], configs[index])]
    if len(todo) < count:
        log(f"{count - len(todo)} of {count} shards complete from an earlier run: not built again")
    if todo:
        started = not ray.is_initialized()  # a Ray this function starts, it stops
        address = None if config["ray"] == "local" else config["ray"]
        ray.init(address=address, ignore_reinit_error=True, include_dashboard=False, log_to_driver=False)
        try:
            _run_tasks(ray, build_shard, kind, config, configs, folders, todo)
        finally:
            if started:
                ray.shutdown()
    retried = {f"{index}/{count}": attempts - 1 for index in todo if (attempts := _attempts(folders[index])) > 1}
    for shard, times in retried.items():
        log(f"shard {shard} was retried by Ray {times} time(s) before it completed")
    result = write_merge(folders, config["out"], config["overwrite"], {"ray_retried": retried})
    shutil.rmtree(folders[0].parent)
    return result


def _attempt(
    build_shard: Callable[[str, dict[str, Any]], dict[str, Any]], kind: str, config: dict[str, Any]
) -> dict[str, Any]:
    """One Ray attempt at a shard: noted (a line in ``FOLDER.attempts``, beside the shard folder)
    before it builds, so that the attempts of a task Ray retried after its worker died are
    counted and reported."""
    with Path(f"{config['out']}.attempts").open("a", encoding="utf-8") as attempts:
        attempts.write("attempt\n")
    return build_shard(kind, config)


def _attempts(folder: Path) -> int:
    try:
        return len(Path(f"{folder}.attempts").read_text(encoding="utf-8").splitlines())
    except OSError:
        return 0


def _run_tasks(
    ray: Any,
    build_shard: Callable[[str, dict[str, Any]], dict[str, Any]],
    kind: str,
    config: dict[str, Any],
    configs: list[dict[str, Any]],
    folders: list[Path],
    todo: list[int],
) -> None:
    """Submit the shards of ``todo``, wait for them all, and name every one that failed."""
    count = config["shards"]
    task = ray.remote(_attempt).options(
        num_cpus=1, num_gpus=config["ray_gpus"], max_retries=config["ray_retries"], retry_exceptions=False
    )
    folders[0].parent.mkdir(parents=True, exist_ok=True)
    for index in todo:  # attempts of this run only
        Path(f"{folders[index]}.attempts").unlink(missing_ok=True)
    pending = {task.remote(build_shard, kind, configs[index]): index for index in todo}
    failures = []
    with progress_bar(f"building {len(todo)} shards on Ray", total=len(todo)) as advance:
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            try:
                ray.get(done[0])
            except ray.exceptions.RayTaskError as error:  # raised in the task: not retried
                cause = error.cause if isinstance(error.cause, Exception) else error
                failures.append(f"shard {index}/{count} ({folders[index]}): {cause}")
            except ray.exceptions.RayError as error:  # the worker or node died, after the retries
                attempts = _attempts(folders[index])
                failures.append(
                    f"shard {index}/{count} ({folders[index]}): {type(error).__name__} after {attempts} attempt(s) "
                    f"(--ray-retries {config['ray_retries']})"
                )
            advance()
    if failures:
        raise ShardsFailed(
            f"{len(failures)} of {count} shards failed (the others are kept; run the same command again "
            "to build only the failed ones):\n  " + "\n  ".join(failures)
        )


def _shard_config(config: dict[str, Any], index: int, folder: Path) -> dict[str, Any]:
    shard = {key: value for key, value in config.items() if key not in RUN_OPTIONS}
    return {**shard, "shard": f"{index}/{config['shards']}", "out": str(folder), "overwrite": True}


def _complete(folder: Path, config: dict[str, Any]) -> bool:
    """Whether ``folder`` holds this shard, finished (its manifest is written last, atomically)."""
    try:
        manifest = read_json_object(folder / "manifest.json", "", "")
    except UsageError:  # not there, or damaged: build it again
        return False
    options = manifest.get("options")
    # Compared as JSON, the form the manifest stores the options in; a shard built by hand with
    # --shard I/N counts as well as one built here.
    wanted = json.loads(json.dumps(config, default=str))
    return (
        isinstance(options, dict)
        and options.get("shard") == wanted["shard"]
        and build_options(options) == build_options(wanted)
    )
