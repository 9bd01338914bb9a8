"""``hybridft export``: a finished run as a model folder a server loads (see training.export)."""

from __future__ import annotations

from hybridft.cli.common import EXIT_OK, emit, options_command

USAGE = """\
usage: hybridft export RUN_DIR --out DIR [--dtype bf16|fp16|fp32]

Turn a finished `hybridft finetune` run into a folder a server loads as it is: the base model with
the adapter merged in (transformers: safetensors, config, generation_config, tokenizer with its added
tokens and chat template; loads in `transformers.pipeline` and vLLM), or for an invar-retriever run
a sentence-transformers folder. Both with a model card (README.md). The run is only read.

  --json     print the result as one JSON document
  --debug    show tracebacks
"""


def main(tokens: list[str]) -> int:
    from hybridft.training.export import OPTIONS, check

    parsed = options_command(tokens, OPTIONS, check, name="export", usage=USAGE, positional="run")
    if parsed is None:
        return EXIT_OK
    config, control = parsed
    from hybridft.training.export import export

    result = export(config)
    emit(result, bool(control.get("json")), f"export: {result['run']} -> {result['out']} ({result['format']})")
    return EXIT_OK
