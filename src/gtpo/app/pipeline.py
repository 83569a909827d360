"""`gtpo train`: what a recipe wires, step by step, into one run directory.

run_dir/
  config.yaml            the resolved recipe
  metrics.jsonl          one line per logged training step
  samples.jsonl          per logged step, the group GTPO last trained on (tokens, rewards, conflicts)
  checkpoint-N/          resumable TRL checkpoints (safetensors; GTPO's H_ini in gtpo_state.json)
  final/                 the trained model (with lora: the adapter) and tokenizer (safetensors)
  eval/before, eval/after  evaluation samples, results.json and results.md
  summary.json           held-out accuracy and formatting before (unless skipped) and after RL
  plots/*.png, report.html

Under a launch with several processes (`accelerate launch ... -m gtpo train`), every process runs
the whole pipeline: the warm start and RL data parallel (the warm start's batch split evenly over
the processes, so its global batch is the recipe's), each evaluation sharded (each process
generates every N-th problem, gathered on the main process). Only the main process writes into the
run directory and prints; the others wait for it at a barrier where they read what it wrote.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import sys
from pathlib import Path
from typing import Any

import datasets
import transformers
import yaml
from datasets import Dataset
from transformers import TrainerCallback
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation

from gtpo.app.console import use_console_log
from gtpo.app.recipe import DatasetSection, Recipe, RecipeError, recipe_to_dict
from gtpo.app.report import write_report
from gtpo.checkpoints import usable_checkpoint
from gtpo.distributed import barrier, is_main, world_size
from gtpo.jsonl import read_jsonl, write_jsonl


def load_dataset_section(section: DatasetSection, default_split: str, seed: int) -> Dataset:
    """The dataset a recipe section names: the synthetic arithmetic task or a benchmark."""
    if section.name == "arithmetic":
        from gtpo.tasks.arithmetic import make_arithmetic_dataset

        return make_arithmetic_dataset(section.limit or 1000, split=section.split or default_split, seed=seed)
    from gtpo.tasks.datasets import load_task

    return load_task(section.name, split=section.split, path=section.path, limit=section.limit)


def training_config(recipe: Recipe):
    """GTPOConfig (or GRPOConfig for the baseline) from the recipe's training fields; validates them."""
    from trl import GRPOConfig

    from gtpo.config import GTPOConfig

    fields = {"seed": recipe.seed, "report_to": "none", "save_strategy": "steps", "save_steps": 100}
    fields.update(recipe.training)
    if "output_dir" not in fields:
        raise RecipeError("training.output_dir: required (the run directory)")
    weights = fields.get("reward_weights")
    if weights is not None and len(weights) != len(recipe.rewards):
        raise RecipeError(
            f"training.reward_weights: {len(weights)} weights for {len(recipe.rewards)} reward functions"
        )
    if recipe.algorithm == "grpo":
        gtpo_only = set(fields) - {f.name for f in dataclasses.fields(GRPOConfig)}
        if gtpo_only:
            raise RecipeError(f"training.{sorted(gtpo_only)[0]}: a GTPO field, but algorithm is 'grpo'")
        # TRL's GRPOConfig defaults to loss_type "dapo"; the baseline takes GTPO's default, so that
        # the two runs differ in GTPO alone unless the recipe sets a loss type for both.
        fields.setdefault("loss_type", GTPOConfig.loss_type)
        return GRPOConfig(**fields)
    return GTPOConfig(**fields)


class RunLog(TrainerCallback):
    """Appends each log entry to metrics.jsonl and, from a GTPOTrainer, the group it last trained on
    (`GTPOTrainer.last_group`: its token ids, rewards, advantages and conflict tokens, with each
    token's text) to samples.jsonl; the report renders both.

    When training begins (fresh or resumed), the files keep only the steps up to the trainer's
    step, so steps logged after the checkpoint a run resumes from are not written twice."""

    def __init__(self, run_dir: Path, trainer: GRPOTrainer, tokenizer) -> None:
        self.metrics = run_dir / "metrics.jsonl"
        self.samples = run_dir / "samples.jsonl"
        self.trainer = trainer
        self.tokenizer = tokenizer

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        for path in (self.metrics, self.samples):
            write_jsonl(path, [r for r in read_jsonl(path) if r.get("step", 0) <= state.global_step])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        _append(self.metrics, {"step": state.global_step, **logs})
        group = getattr(self.trainer, "last_group", None)
        if group is not None:
            tokens = [[self.tokenizer.decode([i]) for i in ids] for ids in group["completion_ids"]]
            _append(self.samples, {"step": state.global_step, **group, "tokens": tokens})


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as file:
        file.write(json.dumps(record) + "\n")


def _evaluate(model, tokenizer, recipe: Recipe, dataset: Dataset, out: Path) -> dict[str, Any]:
    """The recipe's held-out evaluation, through the entry point `gtpo eval` uses; its flat values."""
    from gtpo.app.evaluation import evaluate
    from gtpo.app.evaluation.results import flat_metrics

    section = recipe.evaluation
    sampled = section.temperature > 0  # greedy decoding takes no k and no seed
    ks = sorted({1, section.num_samples}) if sampled else None
    results = evaluate(
        model,
        tokenizer,
        benchmarks={section.dataset.name: dataset},
        output_dir=out,
        num_samples=section.num_samples,
        temperature=section.temperature,
        max_new_tokens=section.max_new_tokens,
        batch_size=section.batch_size,
        answer_format=section.answer_format,
        k=ks,
        maj_k=ks,
        seeds=[recipe.seed] if sampled else [0],
    )
    return flat_metrics(results)[section.dataset.name]


def _gathered(model):
    """Under ZeRO-3 a model is loaded sharded over the processes: within this, each process has it
    whole (to generate for its own share of the problems, or to save it)."""
    if not any(hasattr(parameter, "ds_id") for parameter in model.parameters()):
        return contextlib.nullcontext()
    from deepspeed.zero import GatheredParameters

    return GatheredParameters(list(model.parameters()))


def run_training(recipe: Recipe, resume: bool = False) -> Path:
    """Run a recipe end to end; returns the run directory."""
    from peft import LoraConfig

    from gtpo.app.models import TINY_MODELS, check_model_name, load_model_and_tokenizer
    from gtpo.trainer import GTPOTrainer

    # Bars for tokenising datasets and writing or loading weights: not the user's to act on.
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    # Everything that can be wrong in the recipe fails here, before a model is loaded.
    config = training_config(recipe)
    from gtpo.tasks.rewards import REWARDS

    rewards = [REWARDS[name] for name in recipe.rewards]  # names checked with the recipe
    check_model_name(recipe.model_name_or_path)
    train_dataset = load_dataset_section(recipe.dataset, "train", recipe.seed)
    if recipe.warm_start.steps > 0 and not resume and "solution" not in train_dataset.column_names:
        raise RecipeError(
            "warm_start.steps: the dataset has no worked solutions (arithmetic, gsm8k and math have)"
        )
    if recipe.warm_start.steps > 0 and recipe.warm_start.batch_size % world_size():
        raise RecipeError(
            f"warm_start.batch_size: {recipe.warm_start.batch_size} does not split evenly over "
            f"{world_size()} processes (each trains on an equal share of every batch)"
        )
    eval_dataset = None
    if recipe.evaluation.dataset is not None:
        eval_dataset = load_dataset_section(recipe.evaluation.dataset, "test", recipe.seed + 1)
    run_dir = Path(config.output_dir)
    checkpoint = None
    if resume:
        report = functools.partial(print, file=sys.stderr) if is_main() else lambda line: None
        checkpoint = usable_checkpoint(str(run_dir), report) if run_dir.is_dir() else None
        if checkpoint is None:
            raise RecipeError(
                f"--resume: no complete checkpoint in {run_dir}; run without --resume to start over"
            )
        report(
            f"resuming from {checkpoint}: the warm start and the evaluation before training are not redone"
        )
    if is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))

    model, tokenizer = load_model_and_tokenizer(recipe.model_name_or_path, seed=recipe.seed)
    start = run_dir / "rl_start"
    deepspeed = os.environ.get("ACCELERATE_USE_DEEPSPEED", "false") == "true"  # set by the launch
    saved_by_warm_start = deepspeed and recipe.warm_start.steps > 0 and not resume
    if recipe.warm_start.steps > 0 and not resume:
        from gtpo.app.warmstart import warm_start

        section = recipe.warm_start
        model = warm_start(
            model,
            tokenizer,
            train_dataset,
            steps=section.steps,
            format_fraction=section.format_fraction,
            output_dir=str(run_dir / "warm_start"),
            learning_rate=section.learning_rate,
            batch_size=section.batch_size // world_size(),  # data parallel: the same global batch
            seed=recipe.seed,
            save_to=str(start) if saved_by_warm_start else None,
        )
        if saved_by_warm_start:  # the engine held the model, sharded under ZeRO-3: rl_start/ has it whole
            model, tokenizer = load_model_and_tokenizer(str(start), seed=recipe.seed)

    summary: dict[str, Any] = {"algorithm": recipe.algorithm, "model": recipe.model_name_or_path}
    if eval_dataset is not None and recipe.evaluation.before_training and not resume:
        with _gathered(model):
            summary["before"] = _evaluate(model, tokenizer, recipe, eval_dataset, run_dir / "eval" / "before")

    lora = recipe.lora
    peft_config = None
    if lora is not None:
        peft_config = LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=lora.target_modules,
            task_type="CAUSAL_LM",
        )
    # The policy RL starts from is kept in rl_start/: other runs can start from it
    # (--model_name_or_path RUN/rl_start --warm_start.steps 0), and TRL loads the KL reference from
    # a path, so a run with beta > 0 hands the trainer that path (on resume, the saved one). RL
    # starts from the saved copy itself, so such a run repeats this one's RL exactly: the model in
    # memory after the warm start computes ever so slightly differently, enough to change samples.
    # A LoRA adapter names its base model: a tiny built-in one is initialised from the seed, so it
    # is kept in rl_start/ too and the adapter names that directory (gtpo eval RUN/final loads it).
    needs_reference_path = config.beta != 0.0 and peft_config is None
    seeded_base = peft_config is not None and recipe.model_name_or_path in TINY_MODELS
    keeps_start = recipe.warm_start.steps > 0 or needs_reference_path or seeded_base
    if not resume and keeps_start and not saved_by_warm_start:
        with _gathered(model):
            if is_main():
                model.save_pretrained(start)
                tokenizer.save_pretrained(start)
    barrier()
    if needs_reference_path and start.exists():
        model = str(start)
    elif keeps_start and start.exists():
        model, tokenizer = load_model_and_tokenizer(str(start), seed=recipe.seed)
    trainer_class = GTPOTrainer if recipe.algorithm == "gtpo" else GRPOTrainer
    trainer = trainer_class(
        model=model,
        reward_funcs=rewards,
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.add_callback(RunLog(run_dir, trainer, tokenizer))
    use_console_log(trainer, "rl")
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(run_dir / "final"))

    if eval_dataset is not None:
        # Without the mixed-precision patch, as for the saved model (see gtpo.app.warmstart); under
        # ZeRO-3 with the parameters gathered, since each process generates for its own problems.
        if trainer.is_deepspeed_enabled:
            policy_of = unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator)
        else:
            policy_of = contextlib.nullcontext(
                trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
            )
        with policy_of as policy:
            summary["after"] = _evaluate(policy, tokenizer, recipe, eval_dataset, run_dir / "eval" / "after")
        before_file = run_dir / "eval" / "before" / "results.json"
        if "before" not in summary and before_file.exists():
            from gtpo.app.evaluation.results import flat_metrics

            stored = flat_metrics(json.loads(before_file.read_text()))
            summary["before"] = stored[recipe.evaluation.dataset.name]
    if is_main():
        (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        write_report([run_dir])
    barrier()
    return run_dir
