"""``hybridft export``: a finished run as weights a server loads as they are.

- sft / invar-generator / mix / RoG runs (LoRA, QLoRA, full): the base model in the chosen dtype
  (QLoRA: full precision, not 4-bit) with the adapter merged in, marker tokens a run added
  re-created exactly as in training first, so the merged logits equal the adapter model's; saved
  as a transformers folder (safetensors, config, generation_config, tokenizer with its added tokens
  and chat template) that ``transformers.pipeline("text-generation")`` and vLLM open.
- invar-retriever runs: a sentence-transformers folder (the merged decoder, last-token pooling,
  normalisation, ``query: `` / ``passage: `` as the prompts ``query`` and ``passage``; the
  tokenizer ends every text with EOS, as hybridft embeds it), whose
  ``SentenceTransformer(DIR).encode(texts, prompt_name=...)`` gives hybridft's embeddings.

Both get a model card (README.md). The folder is written atomically; the run is only read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybridft.core.errors import UsageError
from hybridft.core.options import Option
from hybridft.core.outputs import atomic_output_dir
from hybridft.core.progress import log
from hybridft.core.readers import read_json_object
from hybridft.training.model_card import write_model_card

DTYPES = ("bf16", "fp16", "fp32")

OPTIONS = [
    Option("run", "path", None, "the --out folder of a finished `hybridft finetune` run", required=True),
    Option("out", "outpath", None, "the exported model folder (must not exist)", required=True),
    Option("dtype", "str", "bf16", "weights of the exported model", choices=DTYPES),
]


def check(config: dict[str, Any]) -> list[str]:
    errors = []
    if Path(config["out"]).exists():
        errors.append(f"--out {config['out']}: exists; export writes a new folder (choose another --out)")
    return errors


def finished_run(folder: Path) -> dict[str, Any]:
    run = read_json_object(
        folder / "run.json",
        f"run={folder}: no run.json; give the --out folder of a `hybridft finetune` run",
        f"{folder / 'run.json'}: not valid JSON",
    )
    if run.get("status") != "complete":
        raise UsageError(f"run={folder}: the run is not finished (status {run.get('status')!r}); resume it first")
    if not isinstance(run.get("config"), dict) or not run["config"].get("model"):
        raise UsageError(f"{folder / 'run.json'}: names no base model (config.model)")
    return run


def export(config: dict[str, Any]) -> dict[str, Any]:
    """Write the exported folder; return what was exported."""
    import torch

    folder = Path(config["run"])
    run = finished_run(folder)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[config["dtype"]]
    retriever = run["config"].get("trainer") == "invar-retriever"
    log(f"exporting {folder} ({run['config'].get('trainer', 'sft')}, {run.get('method')}) as {config['dtype']}")
    model, tokenizer = merged_model(folder, run, dtype)
    with atomic_output_dir(config["out"], False) as temp:
        if retriever:
            _save_sentence_transformer(temp, model, tokenizer, folder)
        else:
            _save_causal_lm(temp, model, tokenizer)
        write_model_card(temp, folder, run, exported_as=Path(config["out"]).name)
    kind = "sentence-transformers" if retriever else "transformers"
    return {
        "command": "export",
        "run": str(folder),
        "out": str(config["out"]),
        "format": kind,
        "dtype": config["dtype"],
    }


def merged_model(folder: Path, run: dict[str, Any], dtype: Any) -> tuple[Any, Any]:
    """The run's model with its adapter merged (a full fine-tune: the folder's own weights), on the
    CPU, in ``dtype``."""
    from hybridft.core.models import load_for_inference

    if run.get("method") == "full" or not (folder / "adapter_config.json").is_file():
        return load_for_inference(str(folder), dtype=dtype, on_device=False, what=f"run={folder}")
    base = str(run["config"]["model"])
    model, tokenizer = load_for_inference(
        base, adapter=folder, tokenizer_from=folder, dtype=dtype, on_device=False, what=f"base model {base}"
    )
    return model.merge_and_unload(), tokenizer


def save_merged(out: Path, run: dict[str, Any]) -> Path:
    """``finetune --save-merged``: the merged model in ``out/merged`` (float32), as export writes it."""
    import torch

    model, tokenizer = merged_model(out, run, torch.float32)
    target = out / "merged"
    _save_causal_lm(target, model, tokenizer)
    log(f"saved the merged model to {target}")
    return target


def _save_causal_lm(folder: Path, model: Any, tokenizer: Any) -> None:
    generation = model.generation_config
    generation.pad_token_id = tokenizer.pad_token_id
    if generation.eos_token_id is None:
        generation.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)


def _save_sentence_transformer(folder: Path, model: Any, tokenizer: Any, run_dir: Path) -> None:
    from sentence_transformers import SentenceTransformer

    try:  # where newer sentence-transformers keep the modules (importing the old place warns)
        from sentence_transformers.sentence_transformer import modules as st
    except ImportError:
        from sentence_transformers import models as st  # type: ignore[attr-defined,no-redef]

    from hybridft.retrieval.llm_index import read_settings

    settings = read_settings(run_dir)
    backbone = folder / "backbone"
    model.get_decoder().save_pretrained(backbone, safe_serialization=True)
    _end_texts_with_eos(tokenizer)
    tokenizer.chat_template = None  # sentence-transformers would wrap each text in it as a chat message
    tokenizer.save_pretrained(backbone)
    transformer = st.Transformer(str(backbone), max_seq_length=int(settings["max_length"]))
    # sentence-transformers 5 renamed get_word_embedding_dimension (the old name warns).
    dimension = getattr(transformer, "get_embedding_dimension", None) or transformer.get_word_embedding_dimension
    pooling = st.Pooling(dimension(), pooling_mode="lasttoken")
    prompts = {"query": settings["query_prefix"], "passage": settings["passage_prefix"]}
    encoder = SentenceTransformer(modules=[transformer, pooling, st.Normalize()], prompts=prompts, device="cpu")
    for child in backbone.iterdir():
        child.unlink()
    backbone.rmdir()
    encoder.save(str(folder))


def _end_texts_with_eos(tokenizer: Any) -> None:
    """Make the tokenizer append EOS after every text (keeping a BOS it adds), as hybridft's
    retriever embeds: the pooled token is that EOS."""
    from tokenizers import processors

    bos, eos = tokenizer.bos_token, tokenizer.eos_token
    adds_bos = tokenizer("a")["input_ids"][:1] == [tokenizer.bos_token_id] and bos is not None
    single = f"{bos} $A {eos}" if adds_bos else f"$A {eos}"
    pair = f"{bos} $A {eos} $B {eos}" if adds_bos else f"$A {eos} $B {eos}"
    special = [(eos, tokenizer.eos_token_id)] + ([(bos, tokenizer.bos_token_id)] if adds_bos else [])
    tokenizer.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=special
    )
