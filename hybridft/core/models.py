"""Loading LLaMA-family models: the ``tiny`` model, the tokenizer set-up (pad token, chat
template), marker tokens, the LoRA config, LoRA / QLoRA / full fine-tuning on CUDA or CPU, and a
model with its adapter for inference (evaluation, the ``hf:`` generator, the LLM retriever).

Heavy libraries (torch, transformers, peft, bitsandbytes) are imported inside the functions, so
importing this module costs nothing until a model is really needed.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybridft.core.errors import UsageError, cannot_load

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# A chat template for models that have none: plain role headers, with {% generation %} markers
# around assistant turns so that assistant-only losses can find them.
DEFAULT_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "<|assistant|>\n{% generation %}{{ message['content'] }}{{ eos_token }}{% endgeneration %}"
    "{% else %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
TINY_SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<|user|>", "<|assistant|>", "<|system|>"]
TINY_VOCAB_SIZE = 1024
TINY_VERSION = "1"  # bump when the tiny model's recipe changes, so caches rebuild

# Marker strings the builders write (RoG plans). They become single added tokens when the data
# uses them and the tokenizer would otherwise split them.
MARKERS = ("<PATH>", "</PATH>", "<SEP>")


@dataclass(frozen=True)
class Device:
    """Where training runs and in which precision."""

    kind: str  # "cuda" or "cpu"
    bf16: bool
    fp16: bool

    @property
    def description(self) -> str:
        if self.kind == "cuda":
            import torch

            return f"cuda ({torch.cuda.get_device_name(0)})"
        return f"cpu ({os.cpu_count()} cores)"


def detect_device() -> Device:
    """CUDA when present (bf16 where supported, else fp16), otherwise CPU in fp32."""
    import torch

    if torch.cuda.is_available():
        bf16 = torch.cuda.is_bf16_supported()
        return Device("cuda", bf16=bf16, fp16=not bf16)
    return Device("cpu", bf16=False, fp16=False)


# ---------------------------------------------------------------------------------------------
# The tiny model


def _tiny_corpus() -> list[str]:
    """Text the tiny tokenizer learns its merges from: the bundled sample data, in a fixed order."""
    package = Path(__file__).parents[1]  # hybridft/
    root = package / "data_recipes" / "samples"
    if not root.is_dir():  # running from a source checkout
        root = package.parent / "data_recipes" / "samples"
    if not root.is_dir():  # an empty corpus would silently make another tokenizer
        raise FileNotFoundError(f"the bundled samples are missing (looked in {root})")
    texts = [p.read_text(encoding="utf-8") for p in sorted(root.rglob("*")) if p.is_file()]
    return texts + [" ".join(MARKERS), "<ANSWER>: ##begin_quote## ##end_quote## <DOCUMENT> </DOCUMENT>"]


def build_tiny_tokenizer() -> PreTrainedTokenizerBase:
    """A byte-level BPE (any text encodes) learned from the bundled samples, with the default
    chat template. Deterministic: same corpus, same merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB_SIZE,
        special_tokens=TINY_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_tiny_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return tokenizer


def build_tiny(folder: Path, *, hidden_size: int = 64, layers: int = 2) -> Path:
    """Save a small LLaMA (random weights from seed 0) and its tokenizer in ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def cache_dir() -> Path:
    """Where hybridft keeps what it builds once and reuses: the tiny model, retriever indexes,
    generated items. ``$HYBRIDFT_CACHE``, else ``$XDG_CACHE_HOME/hybridft`` (``~/.cache/hybridft``)."""
    base = os.environ.get("HYBRIDFT_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "hybridft"
    )
    return Path(base)


def resolve_model(name: str) -> str:
    """``tiny`` -> a cached folder holding the tiny model (built once); anything else unchanged
    (a local folder or a hub id, which transformers resolves)."""
    if name != "tiny":
        return name
    key = hashlib.sha256("".join(_tiny_corpus()).encode() + TINY_VERSION.encode()).hexdigest()[:12]
    folder = cache_dir() / f"tiny-{key}"
    if not (folder / "config.json").is_file():
        partial = folder.with_name(folder.name + f".tmp{os.getpid()}")
        build_tiny(partial)
        try:
            partial.rename(folder)
        except OSError:  # another process finished first; its copy is identical
            import shutil

            shutil.rmtree(partial, ignore_errors=True)
    return str(folder)


# ---------------------------------------------------------------------------------------------
# Tokenizer and marker tokens


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    """The model's tokenizer with a pad token and a chat template (the default one if it has none)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise UsageError(cannot_load(f"model={path} (its tokenizer)", path, exc)) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not tokenizer.chat_template:
        tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    return tokenizer


def missing_markers(tokenizer: PreTrainedTokenizerBase, used: set[str]) -> list[str]:
    """Markers the data uses that the tokenizer does not hold as one token."""
    vocab = tokenizer.get_vocab()
    return [m for m in MARKERS if m in used and m not in vocab]


def add_marker_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, markers: list[str]) -> list[int]:
    """Add ``markers`` as tokens and give each new embedding row (input and output) the mean of
    the rows of the pieces the marker was split into before, so ``<PATH>`` starts near ``<``,
    ``PATH`` and ``>`` instead of at noise. Returns the new token ids."""
    import torch

    if not markers:
        return []
    pieces = [tokenizer(m, add_special_tokens=False)["input_ids"] for m in markers]
    tokenizer.add_tokens(markers)
    new_ids = [int(tokenizer.convert_tokens_to_ids(m)) for m in markers]  # type: ignore[arg-type]
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        for weights in {id(w): w for w in _embedding_weights(model)}.values():
            for token_id, piece_ids in zip(new_ids, pieces, strict=True):
                weights[token_id] = weights[piece_ids].mean(dim=0)
    return new_ids


def readd_marker_tokens(model: PreTrainedModel, base_path: str, trained_tokenizer: PreTrainedTokenizerBase) -> None:
    """Give a freshly loaded base model the marker rows a run added, initialised exactly as in
    training (the adapter restores the trained input rows; output rows keep this start)."""
    base_tokenizer = load_tokenizer(base_path)
    new_ids = list(range(len(base_tokenizer), len(trained_tokenizer)))
    added = [str(token) for token in trained_tokenizer.convert_ids_to_tokens(new_ids)]
    if not added:
        return
    ids = add_marker_tokens(model, base_tokenizer, added)
    if ids != trained_tokenizer.convert_tokens_to_ids(added):
        raise ValueError(f"added tokens {added} do not line up with the trained tokenizer")


def _embedding_weights(model: PreTrainedModel) -> list[Any]:
    weights = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None:
        weights.append(output.weight)
    return weights


# ---------------------------------------------------------------------------------------------
# Loading for training


def four_bit_works() -> str | None:
    """None when bitsandbytes can run 4-bit layers forward and backward here, else why not."""
    try:
        import bitsandbytes as bnb
        import torch

        layer = bnb.nn.Linear4bit(8, 8, bias=False, compute_dtype=torch.float32, quant_type="nf4")
        layer = layer.to("cuda" if torch.cuda.is_available() else "cpu")
        x = torch.ones(2, 8, requires_grad=True, device=layer.weight.device)
        layer(x).sum().backward()
        return None if x.grad is not None else "no gradient through a 4-bit layer"
    except Exception as exc:  # noqa: BLE001 - any failure means 4-bit is unusable here
        return f"{type(exc).__name__}: {exc}"


def local_device(device: Device) -> Any:
    """This process's device: under ``accelerate launch`` each process has its own GPU (its local
    rank); a 4-bit model placed on GPU 0 by every process is refused by accelerate."""
    if device.kind != "cuda":
        return "cpu"
    from accelerate import PartialState

    return PartialState().local_process_index


def load_for_training(path: str, method: str, device: Device, *, gradient_checkpointing: bool) -> PreTrainedModel:
    """The base model for ``method`` (``lora``, ``qlora``, ``full``) on ``device``."""
    import torch
    from transformers import BitsAndBytesConfig

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    dtype = torch.bfloat16 if device.bf16 else torch.float16 if device.fp16 else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if method == "qlora":
        quantization: dict[str, Any] = {}
        if device.kind == "cuda":
            # FSDP shards the 4-bit weights only when they are stored in a float dtype; with one GPU
            # or DDP the storage dtype changes nothing else.
            quantization["bnb_4bit_quant_storage"] = dtype
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            **quantization,
        )
        kwargs["device_map"] = {"": local_device(device)}
    model = causal_lm(path, f"model={path}", **kwargs)
    if method == "qlora":
        disable_cpu_4bit_repacking(model)
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    return model


def causal_lm(path: str, what: str, **kwargs: Any) -> PreTrainedModel:
    """``AutoModelForCausalLM.from_pretrained(path, **kwargs)``; exit 2 naming ``what`` (the option
    and value) when it does not load: no weights, an unknown hub id, or a damaged weights file
    (named)."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except OSError as exc:
        raise UsageError(cannot_load(what, path, exc)) from None
    except Exception as exc:
        if type(exc).__name__ != "SafetensorError":  # safetensors' own error (the package is not imported here)
            raise
        raise UsageError(f"{what}: {damaged_weights(path) or path}: damaged weights file ({exc})") from None


def damaged_weights(path: str) -> Path | None:
    """The first ``*.safetensors`` file of a local model folder that is not whole."""
    folder = Path(path)
    for file in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        if not safetensors_whole(file):
            return file
    return None


def safetensors_whole(file: Path) -> bool:
    """Whether a safetensors file's header reads and its tensors' bytes exactly fill the rest (the
    format: the header's length in 8 little-endian bytes, the JSON header, the tensors' bytes)."""
    import json

    try:
        total = file.stat().st_size
        with file.open("rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            if size > total - 8:
                return False
            header = json.loads(handle.read(size))
        ends = [int(entry["data_offsets"][1]) for name, entry in header.items() if name != "__metadata__"]
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return False
    return 8 + size + max(ends, default=0) == total


def disable_cpu_4bit_repacking(model: PreTrainedModel) -> int:
    """Stop bitsandbytes from repacking 4-bit weights on AVX512-BF16 CPUs after a no-grad
    forward: the repacked layout has no backward, and gradients through the frozen base would
    silently vanish after the first evaluation. Returns the number of layers changed."""
    import bitsandbytes as bnb

    changed = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False
            changed += 1
    return changed


def lora_config(config: dict[str, Any], trainable_tokens: dict[str, list[int]] | None = None) -> Any:
    """The causal-LM LoRA config of a finetune ``config`` (its ``lora_r``, ``lora_alpha``,
    ``lora_dropout`` and ``target_modules``); ``trainable_tokens`` maps embedding modules
    (``embed_tokens``) to the token ids (added markers) whose rows train with the adapter."""
    from peft import LoraConfig

    target_modules = config["target_modules"]
    targets: str | list[str] = "all-linear" if target_modules == ["all-linear"] else target_modules
    return LoraConfig(
        r=config["lora_r"],
        lora_alpha=config["lora_alpha"],
        lora_dropout=config["lora_dropout"],
        target_modules=targets,
        task_type="CAUSAL_LM",
        trainable_token_indices=trainable_tokens or None,
    )


# ---------------------------------------------------------------------------------------------
# Loading for inference


def inference_dtype() -> Any:
    """bfloat16 on a GPU that has it, float16 on another GPU, float32 on the CPU."""
    import torch

    device = detect_device()
    return torch.bfloat16 if device.bf16 else torch.float16 if device.fp16 else torch.float32


def load_for_inference(
    weights: str,
    *,
    adapter: Path | None = None,
    adapter_name: str = "default",
    tokenizer_from: str | Path | None = None,
    what: str,
    dtype: Any = None,
    on_device: bool = True,
) -> tuple[Any, PreTrainedTokenizerBase]:
    """``weights`` (a folder, hub id or ``tiny``) in eval mode on the GPU if there is one, with the
    PEFT ``adapter`` folder attached as ``adapter_name`` (any marker tokens its run added re-created
    first), and the
    tokenizer of ``tokenizer_from`` (default: the adapter's folder, else the weights'). ``what``
    names the option and value in errors (``model=NAME``: ``model=NAME: cannot load it (...)``).
    ``dtype``: default :func:`inference_dtype`; ``on_device=False`` keeps the model on the CPU
    (export writes it out)."""
    import transformers

    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    transformers.utils.logging.disable_progress_bar()
    base_path = resolve_model(weights)
    try:
        tokenizer = load_tokenizer(str(tokenizer_from or adapter or base_path))
    except OSError as exc:
        raise UsageError(cannot_load(what, base_path, exc)) from None
    model: Any = causal_lm(base_path, what, dtype=dtype or inference_dtype())
    if adapter is not None:
        from peft import PeftModel

        readd_marker_tokens(model, base_path, tokenizer)
        model = PeftModel.from_pretrained(model, adapter, adapter_name=adapter_name)
    if on_device:
        model = model.to("cuda" if detect_device().kind == "cuda" else "cpu")
    return model.eval(), tokenizer
