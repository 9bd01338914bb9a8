"""The options of ``hybridft finetune`` (TRL SFT, and the Invar-RAG retriever and generator
trainers, with LoRA / QLoRA / full fine-tuning) and the checks that involve more than one key.

A run folder (``--out``) holds checkpoints, the final adapter (or model), ``run.json``,
``log.jsonl`` and ``loss.png`` (see :mod:`hybridft.training.run_folder`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybridft.core.errors import UsageError
from hybridft.core.options import Option
from hybridft.core.readers import build_manifest
from hybridft.training.run_folder import read_run

TRAINERS = ("sft", "invar-retriever", "invar-generator")
INVARIANCES = ("sym-kl", "vrex")
METHODS = ("auto", "lora", "qlora", "full")
FLASH_ATTENTION = ("flash_attention_2", "flash_attention_3")

OPTIONS = [
    Option("model", "str", None, "hub id, local folder, or `tiny` (a small LLaMA built locally)", required=True),
    Option(
        "data",
        "path",
        None,
        "a folder written by `hybridft build-data`, or a TRL dataset: a .jsonl/.parquet file or hf:NAME "
        "with messages or prompt/completion rows (trainer sft)",
        required=True,
    ),
    Option("out", "outpath", None, "run folder: adapter, checkpoints, run.json, log.jsonl, loss.png", required=True),
    Option("overwrite", "bool", False, "start over in a non-empty --out"),
    Option("trainer", "str", "sft", "training objective", choices=TRAINERS),
    Option("method", "str", "auto", "auto = qlora on CUDA, else lora", choices=METHODS),
    Option("lora_r", "int", 16, "LoRA rank", minimum=1),
    Option("lora_alpha", "int", 32, "LoRA scaling numerator", minimum=1),
    Option("lora_dropout", "float", 0.05, "dropout on the LoRA input", minimum=0, maximum=1, below_maximum=True),
    Option("target_modules", "list", ["all-linear"], "modules that get LoRA (all-linear = every linear but lm_head)"),
    Option("max_length", "int", 2048, "longest tokenised example; longer ones are truncated and counted", minimum=8),
    Option("packing", "bool", False, "pack short examples into one row (needs a flash-attention implementation)"),
    Option("attn_implementation", "str", None, "attention kernel, e.g. sdpa, eager, flash_attention_2"),
    Option("epochs", "float", 3.0, "passes over the train split", minimum=0, below_maximum=False),
    Option("max_steps", "int", None, "optimiser steps; overrides epochs when set", minimum=1),
    Option("eval_steps", "int", None, "evaluate every N steps (default: at the end of each epoch)", minimum=1),
    Option("save_steps", "int", 100, "checkpoint every N steps (and at the end)", minimum=1),
    Option("save_total_limit", "int", 2, "checkpoints kept (older ones are deleted)", minimum=1),
    Option("logging_steps", "int", 10, "log the loss every N steps", minimum=1),
    Option("learning_rate", "float", 2e-4, "peak learning rate", minimum=0, below_maximum=False),
    Option(
        "lr_scheduler",
        "str",
        "cosine",
        "learning-rate schedule after warm-up",
        choices=("cosine", "linear", "constant_with_warmup"),
    ),
    Option("warmup_ratio", "float", 0.03, "share of steps spent warming up", minimum=0, maximum=1),
    Option("batch_size", "int", 4, "examples per device per step", minimum=1),
    Option("grad_accum", "int", 1, "steps whose gradients add up before an update", minimum=1),
    Option("gradient_checkpointing", "bool", True, "recompute activations in backward (less memory, ~30% slower)"),
    Option("group_by_length", "bool", True, "batch examples of similar length (less padding)"),
    Option("seed", "int", 0, "seed for initialisation, dropout and data order", minimum=0),
    Option(
        "dataset_num_proc",
        "int",
        None,
        "processes that read, check and tokenise the rows (datasets' map num_proc; default: this one)",
        minimum=1,
    ),
    Option("resume", "bool", True, "continue from the newest checkpoint in --out when its options match"),
    Option("save_merged", "bool", False, "also save the base model with the adapter merged in (OUT/merged)"),
    Option("report_to", "list", ["none"], "experiment trackers", choices=("none", "tensorboard", "wandb", "mlflow")),
    Option(
        "trainer_args",
        "mapping",
        None,
        "any other field of TRL's SFTConfig (sft, invar-generator) or TrainingArguments (invar-retriever), "
        "e.g. --trainer-arg weight_decay=0.1 (repeatable); checked against the dataclass before any work",
        cli_name="trainer_arg",
    ),
    Option("chat_template", "path", None, "a Jinja chat template file that replaces the model's"),
    # invar-retriever
    Option("temperature", "float", 0.05, "softmax temperature of the retriever's similarity scores", minimum=0),
    Option("align_weight", "float", 1.0, "weight of KL(teacher || student) (invar-retriever)", minimum=0),
    Option("teacher_temperature", "float", 0.05, "softmax temperature of the teacher's scores (alignment)", minimum=0),
    Option(
        "invariance_weight", "float", 1.0, "weight of the query-variant invariance term (invar-retriever)", minimum=0
    ),
    Option(
        "context_window",
        "float",
        0.0,
        "context-size variant: each document also cut to this share of its tokens as one more version in "
        "the invariance term (invar-retriever; 0: query variants only)",
        minimum=0,
        maximum=1,
        below_maximum=True,
    ),
    Option(
        "invariance",
        "str",
        "sym-kl",
        "sym-kl: symmetric KL of each version's score distribution to their mean; vrex: variance of their losses",
        choices=INVARIANCES,
    ),
    # invar-generator
    Option("retriever", "path", None, "run folder of `finetune --trainer invar-retriever` (invar-generator)"),
]

# Keys that may change between an interrupted run and its resumption.


def _tracker_errors(trackers: list[str]) -> list[str]:
    """A tracker whose package is missing would fail only after the model has loaded."""
    import importlib.util

    return [
        f"report_to={name}: the {name} package is not installed (pip install {name}), or leave report_to none"
        for name in trackers
        if name != "none" and importlib.util.find_spec(name) is None
    ]


def _chat_template_errors(path: str) -> list[str]:
    import jinja2

    try:
        jinja2.Environment().parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return [f"chat_template={path}: cannot read it ({exc})"]
    except jinja2.TemplateSyntaxError as exc:
        return [f"chat_template={path}:{exc.lineno}: not a Jinja template ({exc.message})"]
    return []


# Fields of the trainer's arguments that are finetune options (one knob each, shared by every trainer).
OWN_FIELDS = {"output_dir": "--out", "dataset_num_proc": "--dataset-num-proc"}


def trainer_arguments_class(trainer: str) -> Any:
    """The dataclass ``trainer_args`` are fields of (imports TRL or transformers)."""
    if trainer == "invar-retriever":
        from transformers import TrainingArguments

        return TrainingArguments
    from trl import SFTConfig

    return SFTConfig


def parse_trainer_args(trainer: str, raw: dict[str, Any] | None) -> dict[str, Any]:
    """``trainer_args`` typed as the trainer's argument dataclass types them (the dataclass's own
    command-line parser converts each value); unknown fields are errors naming the closest ones."""
    if not raw:
        return {}
    import dataclasses
    import difflib

    from transformers import HfArgumentParser

    cls = trainer_arguments_class(trainer)
    names = sorted(f.name for f in dataclasses.fields(cls) if f.init)
    errors = []
    for key in raw:
        if key in OWN_FIELDS:
            errors.append(f"trainer_args: {key} is {OWN_FIELDS[key]}")
        elif key not in names:
            close = difflib.get_close_matches(key, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            errors.append(f"trainer_args: {key} is not a field of {cls.__name__}{hint}")
    known = {key: value for key, value in raw.items() if key in names and key not in OWN_FIELDS}
    parser = HfArgumentParser(cls)

    def refuse(message: str) -> Any:
        raise UsageError(*errors, f"trainer_args: {message}")

    parser.error = refuse  # type: ignore[method-assign]
    argv = [item for key, value in known.items() for item in (f"--{key}", _argument_text(value))]
    parsed, _ = parser.parse_known_args(args=argv)
    if errors:
        raise UsageError(*errors)
    return {key: getattr(parsed, key) for key in known}


def _argument_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def check(config: dict[str, Any]) -> list[str]:
    """Cross-key checks that need no model or GPU (those come in :func:`plan`)."""
    errors = data_errors(config) + _trainer_errors(config)
    try:
        parse_trainer_args(config["trainer"], config.get("trainer_args"))
    except UsageError as exc:
        errors.extend(str(exc).splitlines())
    if config.get("chat_template"):
        errors.extend(_chat_template_errors(config["chat_template"]))
    errors.extend(_tracker_errors(config.get("report_to") or []))
    if config["packing"] and config["attn_implementation"] not in FLASH_ATTENTION:
        errors.append(
            f"packing=true needs attn_implementation {' or '.join(FLASH_ATTENTION)} (CUDA): with "
            f"{config['attn_implementation'] or 'the default sdpa'} packed examples would attend to each other; "
            "leave packing off (group_by_length already cuts most padding)"
        )
    if "lm_head" in config["target_modules"]:
        errors.append(
            "target_modules: lm_head cannot take LoRA here: TRL's SFTTrainer computes the loss with a fused "
            "LM head that reads lm_head.weight directly and would bypass the adapter"
        )
    if config["max_steps"] is None and config["epochs"] <= 0:
        errors.append("epochs must be above 0 unless max_steps is set")
    return errors


def _trainer_errors(config: dict[str, Any]) -> list[str]:
    """The trainer against its data folder, the retriever run and the options it cannot use
    (keys missing from ``config`` take no part)."""
    trainer, errors = config["trainer"], []
    for key in ("temperature", "teacher_temperature"):
        if config.get(key) is not None and config[key] <= 0:
            errors.append(f"{key}={config[key]}: must be above 0")
    fmt = data_format(config.get("data"))
    if trainer == "invar-retriever":
        if fmt is not None and fmt != "retrieval":
            errors.append(
                f"data={config['data']}: rows are in format {fmt!r}; trainer=invar-retriever reads retrieval rows "
                "(`build-data invar --stage retrieval`); train chat rows with trainer=sft or invar-generator"
            )
        if config.get("save_merged"):
            errors.append("save_merged: the retriever is used as an adapter (eval retrieval, build-data invar)")
    elif fmt == "retrieval":
        errors.append(
            f"data={config['data']}: retrieval rows (`build-data invar --stage retrieval`) train "
            f"trainer=invar-retriever, not {trainer}; build generation rows with --stage generation"
        )
    if trainer == "invar-generator":
        if not config.get("retriever"):
            errors.append("trainer=invar-generator needs --retriever RUN_DIR (a finished invar-retriever run)")
        else:
            errors.extend(retriever_run_errors(config["retriever"], config.get("model")))
            errors.extend(ranked_by_errors(config.get("data"), config["retriever"]))
        if config.get("method") == "full":
            errors.append("method=full: invar-generator trains a second adapter beside the retriever's; use lora")
    elif config.get("retriever"):
        errors.append(f"retriever: only trainer=invar-generator uses a retriever run (trainer={trainer})")
    if trainer != "sft" and config.get("packing"):
        errors.append(f"packing: trainer={trainer} does not pack rows; leave packing off")
    return errors


def data_errors(config: dict[str, Any]) -> list[str]:
    """What can be known of ``--data`` before training: a build-data folder has a manifest; a
    dataset file's first row has TRL's columns; an ``hf:`` name is only parsed (said on stderr)."""
    from hybridft.core.errors import InputError
    from hybridft.core.progress import log
    from hybridft.core.readers import iter_rows
    from hybridft.training.sft_data import dataset_format

    data, trainer = config.get("data"), config["trainer"]
    if not data:
        return []
    folder = Path(data)
    if not data.startswith("hf:") and folder.is_dir():
        if (folder / "manifest.json").is_file():
            return []
        return [f"data={data}: neither a build-data folder (no manifest.json) nor a .jsonl/.parquet dataset file"]
    if trainer != "sft":
        return [f"data={data}: trainer={trainer} reads a `hybridft build-data invar` folder, not a dataset file"]
    if data.startswith("hf:"):
        name = data[3:].partition("@")[0].partition(":")[0]
        if not name:
            return [f"data={data}: expected hf:NAME[:CONFIG][@SPLIT]"]
        log(f"data={data}: a hub dataset; its rows are checked when training loads it (not by --dry-run)")
        return []
    try:
        first = next(iter_rows(folder), None)
        if first is None:
            return [f"{data}: no rows (an empty input is an error, not an empty output)"]
        dataset_format(first[1], first[0])
    except InputError as exc:
        return str(exc).splitlines()
    return []


def data_format(data: str | None) -> str | None:
    """The row format a build-data folder's manifest names (None when there is no readable one)."""
    manifest = build_manifest(data) if data else {}
    fmt = (manifest.get("options") or {}).get("format", "messages") if manifest else None
    return fmt if isinstance(fmt, str) else None


def ranked_by_errors(data: str | None, retriever: str) -> list[str]:
    """Invar-RAG trains the generator on documents its own retriever ranked: generation rows
    ranked by another retriever (bm25, dense, another run) are refused."""
    options = (build_manifest(data).get("options") or {}) if data else {}  # unreadable: the data's own checks say so
    ranked_by = options.get("retriever")
    if options.get("stage") != "generation" or not isinstance(ranked_by, str):
        return []
    if Path(ranked_by).resolve() != Path(retriever).resolve():
        return [
            f"data={data}: its documents were ranked by {ranked_by}, not by retriever={retriever}; rebuild them "
            f"with `hybridft build-data invar --stage generation --retriever {retriever}`"
        ]
    return []


def retriever_run_errors(folder: str, model: str | None) -> list[str]:
    """Why ``folder`` cannot serve as the frozen retriever adapter of ``model`` (empty if it can)."""
    run = Path(folder)
    if not (run / "retriever.json").is_file() or not (run / "adapter_config.json").is_file():
        return [
            f"retriever={folder}: holds no retriever adapter (retriever.json + adapter_config.json); give the "
            "--out folder of a finished `finetune --trainer invar-retriever` run with method lora or qlora"
        ]
    previous = read_run(run) or {}
    trained_from = (previous.get("config") or {}).get("model")
    if previous.get("status") != "complete":
        return [f"retriever={folder}: its run is not finished (status {previous.get('status')!r}); resume it first"]
    if model is not None and trained_from is not None and trained_from != model:
        return [f"retriever={folder}: trained on model={trained_from}, not {model}; give --model {trained_from}"]
    return []


def method_for(config: dict[str, Any], device_kind: str) -> str:
    """Resolve ``auto`` and refuse 4-bit where bitsandbytes cannot run it."""
    from hybridft.core.models import four_bit_works

    method = config["method"]
    if method == "auto":
        method = "qlora" if device_kind == "cuda" else "lora"
    if method == "qlora" and device_kind != "cuda":
        problem = four_bit_works()
        if problem:
            raise UsageError(
                f"method=qlora: 4-bit layers do not work on this {device_kind} ({problem}); use method=lora"
            )
    return method
