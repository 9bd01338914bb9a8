"""A fine-tuned model for evaluation: base + adapter (or a full fine-tune), and batched greedy
generation through the chat template."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridft.errors import UsageError
from hybridft.progress import track


@dataclass
class Generator:
    model: Any
    tokenizer: Any
    name: str  # what report.json records as the model

    def prompts(self, user_messages: Sequence[str]) -> list[str]:
        return [
            self.tokenizer.apply_chat_template(
                [{"role": "user", "content": text}], add_generation_prompt=True, tokenize=False
            )
            for text in user_messages
        ]

    def generate(
        self,
        user_messages: Sequence[str],
        *,
        batch_size: int,
        max_new_tokens: int,
        num_beams: int = 1,
        num_return_sequences: int = 1,
        constraints: Sequence[Callable[[list[int]], list[int]]] | None = None,
        description: str = "generating",
    ) -> list[list[str]]:
        """Greedy (or beam) outputs for each message, ``num_return_sequences`` per message.

        Prompts are sorted by length so that a batch pads little, left-padded (the model
        continues from the right end), and returned in the input order. ``constraints[i]``, when
        given, maps the tokens generated so far for message i to the tokens allowed next.
        """
        import torch

        texts = self.prompts(user_messages)
        encoded = [self.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        outputs: list[list[str]] = [[] for _ in texts]
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        pad = self.tokenizer.pad_token_id
        for batch in track(batches, description, total=len(batches)):
            width = max(len(encoded[i]) for i in batch)
            ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in batch])
            mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch])
            allowed = None
            if constraints is not None:

                def allowed(batch_id: int, sequence: Any, batch: list[int] = batch, width: int = width) -> list[int]:
                    return constraints[batch[batch_id]](sequence[width:].tolist())

            with torch.no_grad():
                generated = self.model.generate(
                    input_ids=ids.to(self.model.device),
                    attention_mask=mask.to(self.model.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    num_beams=num_beams,
                    num_return_sequences=num_return_sequences,
                    prefix_allowed_tokens_fn=allowed,
                    pad_token_id=pad,
                    eos_token_id=self.tokenizer.eos_token_id,
                )
            new_tokens = generated[:, width:]
            decoded = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
            for j, i in enumerate(batch):
                outputs[i] = [d.strip() for d in decoded[j * num_return_sequences : (j + 1) * num_return_sequences]]
        return outputs


def load_generator(model: str | None, adapter: str | None) -> Generator:
    """``--model`` with ``--adapter`` (a finetune run folder); the base model defaults to the one
    the run was trained from (its run.json)."""
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hybridft.models import detect_device, load_tokenizer, readd_marker_tokens, resolve_model

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    transformers.utils.logging.disable_progress_bar()
    device = detect_device()
    dtype = "bfloat16" if device.bf16 else "float16" if device.fp16 else "float32"
    run_folder = Path(adapter) if adapter else None
    if run_folder is not None and model is None:
        model = _trained_from(run_folder)
    assert model is not None
    base_path = resolve_model(model)
    if run_folder is not None and not (run_folder / "adapter_config.json").is_file():
        if not (run_folder / "config.json").is_file():
            raise UsageError(f"adapter={run_folder}: holds neither a PEFT adapter nor a model")
        base_path = str(run_folder)  # a full fine-tune: the folder is the model
        run_folder = None
    try:
        tokenizer = AutoTokenizer.from_pretrained(adapter) if adapter else load_tokenizer(base_path)
        network: Any = AutoModelForCausalLM.from_pretrained(base_path, dtype=dtype)
    except OSError as exc:
        raise UsageError(f"model={model}: cannot load it ({exc})") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        from hybridft.models import DEFAULT_CHAT_TEMPLATE

        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    if run_folder is not None:
        readd_marker_tokens(network, base_path, tokenizer)
        from peft import PeftModel

        network = PeftModel.from_pretrained(network, run_folder)
    network = network.to("cuda" if device.kind == "cuda" else "cpu").eval()
    name = f"{model} + {adapter}" if adapter else model
    return Generator(network, tokenizer, name)


def _trained_from(run_folder: Path) -> str:
    path = run_folder / "run.json"
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["config"]["model"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"adapter={run_folder}: no run.json naming its base model; give --model") from None
