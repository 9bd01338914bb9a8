"""Generation with a transformers causal LM: the one batched loop that the evaluations and the
``hf:`` generator backend share, and the model an evaluation answers with (base + adapter).

Prompts are rendered through the chat template (or, for a model trained on plain-text
prompt/completion rows, tokenised as the plain text TRL trained it on), sorted by token length so
that a batch pads little, left-padded (generation continues every row from its last token), and handed back in the
input order. Greedy (or beam search) unless a temperature above 0 asks for sampling.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hybridft.core.errors import UsageError
from hybridft.core.progress import track
from hybridft.core.readers import run_record

Messages = list[dict[str, str]]
# Maps the tokens generated so far for one prompt to the tokens allowed next.
Constraint = Callable[[list[int]], list[int]]


@dataclass(frozen=True)
class Generated:
    """What one prompt produced: ``num_return_sequences`` token lists, each cut before the first
    end-of-sequence token (where generation stopped; only padding follows it), and the prompt's
    length in tokens."""

    index: int
    sequences: list[list[int]]
    prompt_tokens: int


def chat_prompt(tokenizer: Any, messages: Messages) -> str:
    """``messages`` through the chat template, ready for the assistant's turn. A template that
    refuses a system turn gets it folded into the user's."""
    try:
        return str(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    except Exception:  # noqa: BLE001 - some templates refuse a system turn: fold it into the user's
        if len(messages) < 2 or messages[0]["role"] != "system":
            raise
        folded = [{"role": "user", "content": f"{messages[0]['content']}\n\n{messages[1]['content']}"}, *messages[2:]]
        return str(tokenizer.apply_chat_template(folded, tokenize=False, add_generation_prompt=True))


def prompt_ids(tokenizer: Any, messages: Messages, chat: bool = True) -> list[int]:
    """The token ids a conversation is asked with: through the chat template, or (``chat`` False: a
    model trained on plain-text prompts) its messages' text as TRL tokenises a plain prompt, with the
    tokenizer's special tokens."""
    if chat:
        return list(tokenizer(chat_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"])
    return list(tokenizer("\n\n".join(m["content"] for m in messages))["input_ids"])


def trained_on_chat(run: dict[str, Any]) -> bool:
    """Whether a finetune run (its run.json) learned its prompts through the chat template: not when
    its rows were plain-text prompt/completion pairs (runs before ``conversational`` was recorded:
    a ``prompt-completion`` build-data folder, whose prompts are plain text)."""
    data = run.get("data") or {}
    return bool(data.get("conversational", data.get("format") != "prompt-completion"))


def generate_batches(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Messages],
    *,
    chat: bool = True,
    batch_size: int,
    max_new_tokens: int,
    num_beams: int = 1,
    num_return_sequences: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    constraints: Sequence[Constraint] | None = None,
    description: str | None = None,
) -> Iterator[list[Generated]]:
    """One list per batch, so a caller can keep what is done before the next batch starts.
    ``description`` shows a progress bar on stderr. ``constraints[i]``, when given, restricts the
    tokens generated for conversation i; ``chat``: see :func:`prompt_ids`."""
    import torch

    encoded = [prompt_ids(tokenizer, messages, chat) for messages in conversations]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    sampling = temperature > 0
    if sampling:
        torch.manual_seed(seed)
    pad = tokenizer.pad_token_id
    stop_ids = _eos_ids(model, tokenizer)
    for batch in track(batches, description, total=len(batches)) if description else batches:
        width = max(len(encoded[i]) for i in batch)
        ids = torch.tensor([[pad] * (width - len(encoded[i])) + encoded[i] for i in batch])
        mask = torch.tensor([[0] * (width - len(encoded[i])) + [1] * len(encoded[i]) for i in batch])
        allowed = None
        if constraints is not None:

            def allowed(batch_id: int, sequence: Any, batch: list[int] = batch, width: int = width) -> list[int]:
                return constraints[batch[batch_id]](sequence[width:].tolist())

        with torch.no_grad():
            output = model.generate(
                input_ids=ids.to(model.device),
                attention_mask=mask.to(model.device),
                max_new_tokens=max_new_tokens,
                do_sample=sampling,
                temperature=temperature if sampling else None,
                top_p=None,
                top_k=None,
                num_beams=num_beams,
                num_return_sequences=num_return_sequences,
                prefix_allowed_tokens_fn=allowed,
                pad_token_id=pad,
            )
        new_tokens = output[:, width:].tolist()
        done = []
        for row, index in enumerate(batch):
            sequences = new_tokens[row * num_return_sequences : (row + 1) * num_return_sequences]
            cut = [next((ids[:n] for n, t in enumerate(ids) if t in stop_ids), ids) for ids in sequences]
            done.append(Generated(index, cut, len(encoded[index])))
        yield done


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    """The tokens that end a generated sequence: the model's generation config may name several
    (chat models often end a turn with their own token), the tokenizer one."""
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured if isinstance(configured, list) else [configured])
    return (ids | {tokenizer.eos_token_id}) - {None}


@dataclass
class ChatModel:
    """A loaded model that answers user messages: what ``eval raft`` and ``eval rog`` run."""

    model: Any
    tokenizer: Any
    name: str  # what report.json records as the model
    adapter: str | None = None  # the PEFT adapter to make active first (a backbone shared with a retriever)
    chat: bool = True  # prompts through the chat template (False: trained on plain-text prompts)

    def generate(
        self, user_messages: Sequence[str], description: str = "generating", **options: Any
    ) -> list[list[str]]:
        """The outputs for each message (``num_return_sequences`` of them, default one); ``options``
        are those of :func:`generate_batches` (``batch_size``, ``max_new_tokens``, ``num_beams``,
        ``constraints``, ...)."""
        if self.adapter is not None:
            self.model.set_adapter(self.adapter)
        outputs: list[list[str]] = [[] for _ in user_messages]
        conversations = [[{"role": "user", "content": text}] for text in user_messages]
        batches = generate_batches(
            self.model, self.tokenizer, conversations, chat=self.chat, description=description, **options
        )
        for batch in batches:
            for item in batch:
                outputs[item.index] = [
                    self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in item.sequences
                ]
        return outputs


def load_generator(model: str | None, adapter: str | None) -> ChatModel:
    """``--model`` with ``--adapter`` (a finetune run folder); the base model defaults to the one
    the run was trained from (its run.json). A run folder that holds a whole model (a full
    fine-tune) is the model."""
    from hybridft.core.models import load_for_inference

    run_folder = Path(adapter) if adapter else None
    if run_folder is not None and model is None:
        model = _trained_from(run_folder)
    if model is None:
        raise UsageError("give --model, or --adapter with a finetune run folder")
    if run_folder is not None and not (run_folder / "adapter_config.json").is_file():
        if not (run_folder / "config.json").is_file():
            raise UsageError(f"adapter={run_folder}: holds neither a PEFT adapter nor a model")
        network, tokenizer = load_for_inference(str(run_folder), what=f"adapter={run_folder}")
    else:
        network, tokenizer = load_for_inference(model, adapter=run_folder, what=f"model={model}")
    name = f"{model} + {adapter}" if adapter else model
    chat = trained_on_chat(run_record(run_folder)) if run_folder is not None else True
    return ChatModel(network, tokenizer, name, chat=chat)


def _trained_from(run_folder: Path) -> str:
    model = (run_record(run_folder).get("config") or {}).get("model")
    if not isinstance(model, str):
        raise UsageError(f"adapter={run_folder}: no run.json naming its base model; give --model")
    return model
