"""`eval raft` generation: questions/s batched against one question at a time, same outputs.

Both sides use hybridft's generator on the `tiny` model (greedy, the same max_new_tokens) over
RAFT prompts built from the bundled sample (question + oracle + distractor documents), in one
process; the batched outputs must equal the one-at-a-time outputs.

  python bench/eval_throughput.py [--questions 64] [--batch-size 16] [--max-new-tokens 32]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

RECIPE = Path(__file__).parent.parent / "data_recipes" / "raft_sample.yaml"


def prompts(count: int) -> list[str]:
    from hybridft.cli import build_data
    from hybridft.cli.common import run_guarded
    from hybridft.evaluation.raft import prompt_for

    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        out = Path(tmp) / "raft"
        assert run_guarded(build_data.main, ["--recipe", str(RECIPE), "--distractors", "2", "--out", str(out)]) == 0
        records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    texts = [prompt_for(r, [d["text"] for d in r["docs"]]) for r in records]
    return [texts[i % len(texts)] for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    args = parser.parse_args()

    from hybridft.core.generation import load_generator

    generator = load_generator("tiny", None)
    texts = prompts(args.questions)
    generator.generate(texts[:2], batch_size=2, max_new_tokens=4)  # warm-up
    timings, outputs = {}, {}
    for name, batch_size in (("one at a time", 1), (f"batched ({args.batch_size})", args.batch_size)):
        started = time.perf_counter()
        outputs[name] = generator.generate(texts, batch_size=batch_size, max_new_tokens=args.max_new_tokens)
        timings[name] = time.perf_counter() - started
    one, batched = timings.values()
    same = list(outputs.values())[0] == list(outputs.values())[1]
    average = sum(map(len, texts)) // len(texts)
    print(f"{args.questions} RAFT questions (~{average} characters of prompt each), {args.max_new_tokens} new tokens")
    for name, seconds in timings.items():
        print(f"  {name:14s} {seconds:6.2f} s  {args.questions / seconds:6.1f} questions/s")
    print(f"batched / one at a time: {one / batched:.1f}x questions/s (target >= 3x); same outputs: {same}")


if __name__ == "__main__":
    main()
