"""``hybridft index``: a corpus chunked and indexed once, saved for every command that ranks it."""

from __future__ import annotations

from hybridft.cli.common import EXIT_OK, emit, options_command

USAGE = """\
usage: hybridft index --docs CORPUS [--retriever bm25|minilm|FOLDER|RUN_DIR] [chunking options] --out INDEX_DIR

Chunk a corpus and index it once: bm25 (bm25s), a sentence-transformers model (minilm, or a local
folder), or a trained retriever (the run folder of `finetune --trainer invar-retriever`).
INDEX_DIR holds the chunks, the index and manifest.json; `build-data raft|invar`, `eval retrieval`,
`eval rag` and `ask` open it with --index INDEX_DIR. Rerunning after Ctrl-C continues the encoding.

  --config, --recipe FILE   YAML config (relative paths start at its folder)
  --dry-run                 check and print the resolved options; do no work, write nothing
  --json                    print the manifest as one JSON document on stdout
  --debug                   show tracebacks
"""


def main(tokens: list[str]) -> int:
    from hybridft.retrieval.index import OPTIONS, check

    parsed = options_command(tokens, OPTIONS, check, name="index", usage=USAGE)
    if parsed is None:
        return EXIT_OK
    config, control = parsed
    from hybridft.core.outputs import check_output_dir
    from hybridft.retrieval.index import build

    check_output_dir(config["out"], config["overwrite"])
    manifest = build(config)
    counts = manifest["counts"]
    as_json = bool(control.get("json"))
    emit(
        {"command": "index", "out": str(config["out"]), **manifest},
        as_json,
        f"index: {counts['chunks']} chunks of {counts['documents']} documents ({config['retriever']}) "
        f"-> {config['out']}",
    )
    return EXIT_OK
