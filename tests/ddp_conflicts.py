"""Run by tests/test_trainer.py, once plainly and once under `accelerate launch --num_processes 2`.

Each process builds the same tiny model and a GTPOTrainer whose rollout_func returns fixed
completions for its rows (so both runs see the same completions), scores one generation batch,
computes the loss on it, and writes its rows' GTPO token advantages, TRL's advantages and the loss to
OUT_DIR/rank{N}.pt. Groups are split across the two processes on purpose.
"""

import os
import sys

import torch
from datasets import Dataset
from trl import GRPOTrainer

from gtpo.app.models import build_tiny_model, build_tokenizer
from gtpo.config import GTPOConfig
from gtpo.trainer import GTPOTrainer, end_process_group

GROUP_SIZE = 4
GROUPS = 3  # 12 rows: with two processes of 6 rows each, group 1 is split between them


def reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 3) for c in completions]


def fixed_completions(tokenizer, prompt_index: int, sample: int) -> list[int]:
    """Completions sharing a prefix and a suffix, differing in the middle."""
    vocab = sorted(set(tokenizer.get_vocab().values()) - set(tokenizer.all_special_ids))
    base = [vocab[(prompt_index * 7 + k) % len(vocab)] for k in range(3)]
    middle = [vocab[(prompt_index + sample * 5 + k) % len(vocab)] for k in range(sample + 1)]
    return [*base, *middle, tokenizer.eos_token_id]


def main(out_dir: str) -> None:
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, size="test", seed=0)
    prompts = [{"prompt": [{"role": "user", "content": f"question {i}"}]} for i in range(GROUPS)]
    config = GTPOConfig(
        output_dir=f"{out_dir}/trainer",
        per_device_train_batch_size=GROUP_SIZE * GROUPS // int(os.environ.get("WORLD_SIZE", "1")),
        num_generations=GROUP_SIZE,
        max_completion_length=16,
        report_to="none",
        use_cpu=True,
        seed=0,
    )
    trainer = GTPOTrainer(
        model=model,
        reward_funcs=reward,
        args=config,
        train_dataset=Dataset.from_list(prompts),
        processing_class=tokenizer,
    )
    world, rank = trainer.accelerator.num_processes, trainer.accelerator.process_index
    rows_per_process = GROUP_SIZE * GROUPS // world
    # Global rows: prompt p's G copies are consecutive; each process holds one contiguous slice,
    # so with two processes a group is split between them.
    local_rows = [
        divmod(r, GROUP_SIZE) for r in range(rank * rows_per_process, (rank + 1) * rows_per_process)
    ]
    trainer.rollout_func = lambda prompts, trainer: {
        "prompt_ids": [tokenizer(f"question {p}")["input_ids"] for p, _ in local_rows],
        "completion_ids": [fixed_completions(tokenizer, p, s) for p, s in local_rows],
        "logprobs": None,
    }
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this script bypasses
    inputs = [{"prompt": prompts[p]["prompt"]} for p, _ in local_rows]
    trl_advantages = {}
    original = GRPOTrainer._generate_and_score_completions

    def spy(self, inputs):
        output = original(self, inputs)
        trl_advantages["local"] = output["advantages"].clone()
        return output

    GRPOTrainer._generate_and_score_completions = spy
    batch = trainer._generate_and_score_completions(inputs)
    loss = trainer.compute_loss(trainer.model, batch)
    torch.save(
        {
            "token_advantages": batch["advantages"],
            "completion_ids": batch["completion_ids"],
            "mask": batch["completion_mask"],
            "advantages": trl_advantages["local"],
            "loss": loss.detach(),
            "world": world,
        },
        f"{out_dir}/rank{rank}.pt",
    )


if __name__ == "__main__":
    main(sys.argv[1])  # the trainer is freed on return
    end_process_group()
