"""A short supervised warm start (TRL's SFTTrainer) that teaches the paper's format only partly.

A share `format_fraction` of the targets is in the full format
    <reasoning>{solution}</reasoning>\\n<answer>{answer}</answer>
and the rest in one of two partial formats (reasoning block only, or answer block only), so the
warm-started model formats some completions and not others: room for RL to improve both the
formatting rate and the accuracy, which the paper's rewards count only on formatted completions.
"""

from __future__ import annotations

import random

import torch
from accelerate.state import AcceleratorState
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from trl import SFTConfig, SFTTrainer

from gtpo.app.console import use_console_log


def warm_start_target(solution: str, answer: str, style: str) -> str:
    """The assistant's target in style 'full', 'reasoning_only' or 'answer_only'."""
    if style == "full":
        return f"<reasoning>{solution}</reasoning>\n<answer>{answer}</answer>"
    if style == "reasoning_only":
        return f"<reasoning>{solution}</reasoning>\nThe answer is {answer}."
    if style == "answer_only":
        return f"{solution}. <answer>{answer}</answer>"
    raise ValueError(f"unknown target style {style!r}")


def warm_start_dataset(dataset: Dataset, format_fraction: float, seed: int = 0) -> Dataset:
    """Prompt-completion rows for SFT from rows with `prompt`, `solution` and `answer`."""
    if not 0.0 <= format_fraction <= 1.0:
        raise ValueError(f"warm_start.format_fraction must be within [0, 1], got {format_fraction}")
    rng = random.Random(seed)
    rows = []
    for row in dataset:
        style = "full" if rng.random() < format_fraction else rng.choice(["reasoning_only", "answer_only"])
        target = warm_start_target(row["solution"], row["answer"], style)
        rows.append({"prompt": row["prompt"], "completion": [{"role": "assistant", "content": target}]})
    return Dataset.from_list(rows)


def warm_start(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: Dataset,
    *,
    steps: int,
    format_fraction: float,
    output_dir: str,
    learning_rate: float = 1e-3,
    batch_size: int = 16,
    seed: int = 0,
    save_to: str | None = None,
) -> PreTrainedModel:
    """Run `steps` SFT steps on the partly formatted targets; returns the trained model. With
    `save_to` (under DeepSpeed), it is also saved there (whole, from every ZeRO stage) with the
    tokenizer, and accelerate's state is reset so that the next trainer can set up its own engine."""
    config = SFTConfig(
        output_dir=output_dir,
        max_steps=steps,
        per_device_train_batch_size=batch_size,
        learning_rate=learning_rate,
        lr_scheduler_type="constant_with_warmup",
        warmup_steps=min(20, steps // 10),
        logging_steps=max(1, steps // 10),
        save_strategy="no",
        report_to="none",
        seed=seed,
        completion_only_loss=True,
        gradient_checkpointing=False,  # TRL turns it on by default; it only slows small models down
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=warm_start_dataset(dataset, format_fraction, seed),
        processing_class=tokenizer,
    )
    use_console_log(trainer, "warm start")
    trainer.train()
    if save_to is not None:
        trainer.save_model(save_to)
        trainer.accelerator.wait_for_everyone()
        AcceleratorState._reset_state()  # keeps the process group (PartialState)
    # accelerate patched the model's forward for mixed precision (TRL's configs default to bf16, on
    # CPU too); without the patch the model computes as it will once saved and loaded again.
    return trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
