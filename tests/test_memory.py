"""No (B, T, V) tensor in a GTPO step: every tensor that an op returns while GTPOTrainer trains
(generation, scoring, the loss's forward and backward) is looked at through a dispatch mode."""

import torch
import trl.trainer.utils
from conftest import tiny_config
from datasets import Dataset
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from gtpo import GTPOTrainer
from gtpo.app.models import build_tiny_model, build_tokenizer

torch.set_num_threads(1)

GROUP, LENGTH = 4, 64


class VocabularyTensorProbe(TorchDispatchMode):
    """Records the op output with a vocabulary-sized dimension that spans the most positions
    (numel / vocab), and how many ops ran under it."""

    def __init__(self, vocab: int):
        super().__init__()
        self.vocab = vocab
        self.positions = 0
        self.shape: tuple[int, ...] | None = None
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        output = func(*args, **(kwargs or {}))
        self.ops += 1
        for value in tree_flatten(output)[0]:
            if isinstance(value, torch.Tensor) and self.vocab in value.shape:
                positions = value.numel() // self.vocab
                if positions > self.positions:
                    self.positions, self.shape = positions, tuple(value.shape)
        return output


def test_a_gtpo_step_never_holds_logits_for_every_completion_token(tmp_path, monkeypatch):
    # TRL's fused head projects tiles of 32,768 vocabulary columns: wider than this tiny model's whole
    # vocabulary, so a tile would be the full logits. Narrow tiles make the check mean what it says.
    monkeypatch.setattr(trl.trainer.utils, "_CHUNKED_LOGPROB_CHUNK_SIZE", 128)
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, size="test")
    vocab = model.config.vocab_size
    assert vocab > 128 and model.config.hidden_size < GROUP * LENGTH
    trainer = GTPOTrainer(
        model=model,
        reward_funcs=lambda completions, **kwargs: [float(len(c) % 5) for c in completions],
        args=tiny_config(
            tmp_path,
            per_device_train_batch_size=GROUP,
            num_generations=GROUP,
            max_completion_length=LENGTH,
            generation_kwargs={"min_new_tokens": LENGTH},
            max_steps=1,
        ),
        train_dataset=Dataset.from_list([{"prompt": "What is 3 + 4?"}] * GROUP),
        processing_class=tokenizer,
    )
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    with VocabularyTensorProbe(vocab) as probe:
        trainer.train()
    assert trainer.state.log_history[0]["completions/min_length"] == LENGTH
    assert any(not torch.equal(before[n], p) for n, p in trainer.model.named_parameters())
    assert probe.ops > 1000
    assert probe.positions < GROUP * LENGTH, f"a tensor of shape {probe.shape} spans the batch's logits"

    # The probe does see full logits: the model's own forward over the same batch shape makes them.
    ids = torch.randint(0, vocab, (GROUP, LENGTH + 8))
    with VocabularyTensorProbe(vocab) as control:
        model(input_ids=ids).logits.sum().backward()
    assert control.positions >= GROUP * LENGTH, control.shape
