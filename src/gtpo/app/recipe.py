"""Recipes: a YAML file that wires a model, a task, rewards, an optional warm start, GTPO (or the
GRPO baseline) and evaluation. `gtpo train --config RECIPE.yaml [--field value ...]` reads one.

A recipe has a few top-level sections (the Recipe dataclass below) and a `training` section of
GTPOConfig fields (TRL's GRPOConfig fields plus GTPO's), typed, documented and checked by
GTPOConfig itself (gtpo.config's rules); the GTPOConfig is built from them when the run starts.
Command-line overrides name a top-level field (`--model_name_or_path`), a field of a section with
a dot (`--dataset.limit 100`, `--training.learning_rate 1e-5`), or a training field directly
(`--learning_rate 1e-5`). Every name, type and range is checked before any model is loaded; a
mistake is reported in one line that names the flag (for a value given on the command line) or
the file and field, with the nearest valid name for a misspelt one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml

from gtpo.app.evaluation.settings import check_sampling
from gtpo.app.options import (
    ConfigError,
    FieldError,
    FieldsOf,
    build,
    field_type,
    fields_of,
    is_list,
    option,
    parse_flags,
    set_flag,
)
from gtpo.config import GTPOConfig, field_problem
from gtpo.rules import did_you_mean
from gtpo.tasks.rewards import ANSWER_FORMATS

RecipeError = ConfigError
ALGORITHMS = ("gtpo", "grpo")

# Training fields that `gtpo train` would accept and then not use, with what to use instead.
_EVALUATION = "the trainer gets no eval dataset; the recipe's evaluation section evaluates, before and after"
TRAINING_REFUSED: dict[str, str] = {
    "seed": "the recipe's seed (--seed) seeds the whole run",
    "data_seed": "the recipe's seed (--seed) also orders the data",
    "resume_from_checkpoint": "gtpo train --resume continues from the last checkpoint",
    "do_train": "gtpo train always trains",
    **dict.fromkeys(
        (
            "do_eval",
            "do_predict",
            "eval_strategy",
            "eval_steps",
            "eval_delay",
            "eval_on_start",
            "per_device_eval_batch_size",
            "eval_accumulation_steps",
            "num_generations_eval",
            "bf16_full_eval",
            "fp16_full_eval",
            "prediction_loss_only",
            "eval_do_concat_batches",
            "eval_use_gather_object",
            "batch_eval_metrics",
            "load_best_model_at_end",
            "metric_for_best_model",
        ),
        _EVALUATION,
    ),
}
# The recipe's training section: the GTPOConfig fields a recipe sets, checked by GTPOConfig's rules.
TrainingFields = Annotated[
    dict[str, Any],
    FieldsOf(
        GTPOConfig,
        field_problem,
        {name: f"not used by gtpo train: {reason}" for name, reason in TRAINING_REFUSED.items()},
    ),
]


@dataclass
class DatasetSection:
    """Which task to train or evaluate on: a name from gtpo.tasks, optionally from a local file."""

    name: str = option(
        "arithmetic", "Task: arithmetic (generated), gsm8k, math, math500, aime24, aime25, amc23."
    )
    split: str | None = option(None, "Split to read (default: train for training, test for evaluation).")
    path: str | None = option(None, "Local JSONL or parquet file in the task's format, instead of the hub.")
    limit: int | None = option(None, "Use the first N problems (arithmetic: generate N).", (">= 1",))

    def __post_init__(self) -> None:
        if self.name == "arithmetic" and self.path is not None:
            raise FieldError("path", "the arithmetic task is generated and reads no file; drop the path or "
                             "name the task the file holds (gsm8k, math, ...)")  # fmt: skip


@dataclass
class WarmStartSection:
    """Supervised warm start (TRL's SFTTrainer) before RL; steps 0 skips it."""

    steps: int = option(0, "Supervised steps before RL; 0 skips the warm start.", (">= 0",))
    format_fraction: float = option(
        0.5, "Share of warm-start targets in the full <reasoning>/<answer> format.", (">= 0", "<= 1")
    )
    learning_rate: float = option(1e-3, "Warm-start learning rate.", ("> 0",))
    batch_size: int = option(16, "Warm-start batch size.", (">= 1",))


@dataclass
class EvaluationSection:
    """Held-out evaluation before and after training."""

    dataset: DatasetSection | None = option(None, "The held-out set; none: no evaluation.")
    num_samples: int = option(1, "Samples per problem.", (">= 1",))
    temperature: float = option(0.0, "Sampling temperature; 0 is greedy.", (">= 0",))
    max_new_tokens: int = option(128, "Tokens generated per sample at most.", (">= 1",))
    batch_size: int = option(32, "Problems per generation batch.", (">= 1",))
    before_training: bool = option(True, "Also evaluate before RL (after the warm start).")
    answer_format: str = option(
        "tags",
        "Answer convention scored (and asked for in the system prompt): tags (the paper's, the training "
        "format), boxed or any.",
        choices=ANSWER_FORMATS,
    )

    def __post_init__(self) -> None:
        check_sampling(self.num_samples, self.temperature)


@dataclass
class LoraSection:
    """PEFT LoRA adapter; the paper uses r = 128 on all projections."""

    r: int = option(16, "LoRA rank.", (">= 1",))
    alpha: int = option(32, "LoRA alpha.", ("> 0",))
    dropout: float = option(0.0, "LoRA dropout.", (">= 0", "< 1"))
    target_modules: list[str] | str = option("all-linear", "Modules to adapt, or all-linear.")


@dataclass
class Recipe:
    model_name_or_path: str = option(
        "tiny-demo", "Hub id, local path, tiny-test, tiny-demo, tiny-100m or smollm2-135m."
    )
    algorithm: str = option(
        "gtpo",
        "gtpo, or grpo for TRL's GRPOTrainer as the baseline (with GTPO's default loss_type, grpo, "
        "unless the recipe sets one).",
        choices=ALGORITHMS,
    )
    seed: int = option(0, "Seed of the model's initialisation, data, warm start, training and evaluation.")
    dataset: DatasetSection = option(help="Training data.", factory=DatasetSection)
    rewards: list[str] = option(
        help="Reward functions from gtpo.tasks.rewards.",
        factory=lambda: ["format_reward", "correctness_reward"],
    )
    warm_start: WarmStartSection = option(help="Supervised warm start.", factory=WarmStartSection)
    evaluation: EvaluationSection = option(help="Held-out evaluation.", factory=EvaluationSection)
    lora: LoraSection | None = option(None, "LoRA adapter; none: full fine-tuning.")
    training: TrainingFields = option(help="GTPOConfig fields.", factory=dict)

    def __post_init__(self) -> None:
        from gtpo.tasks.rewards import REWARDS

        if not self.rewards:
            raise FieldError("rewards", "name at least one reward function")
        for name in self.rewards:
            if name not in REWARDS:
                hint = did_you_mean(name, REWARDS)
                raise FieldError("rewards", f"unknown reward {name!r}{hint}; known: {', '.join(REWARDS)}")
        _check_backends_installed(self.training.get("report_to"))


def _check_backends_installed(report_to: str | list[str] | None) -> None:
    """A logging backend that is not installed fails here, not once a model is loaded."""
    from importlib.metadata import PackageNotFoundError, metadata

    from transformers.integrations.integration_utils import get_available_reporting_integrations

    names = [report_to] if isinstance(report_to, str) else report_to or []
    missing = [name for name in names if name not in ("none", "all", *get_available_reporting_integrations())]
    if not missing:
        return
    try:
        extras = metadata("gtpo").get_all("Provides-Extra") or []
    except PackageNotFoundError:
        extras = []
    install = f"pip install 'gtpo[{missing[0]}]'" if missing[0] in extras else f"pip install {missing[0]}"
    raise FieldError("training.report_to", f"{missing[0]!r} is not installed ({install})")


def _field_path(name: str) -> str:
    """The recipe field a flag sets: its dotted path, or a training field named without
    `training.`; FieldError or RecipeError for a name that is neither."""
    if field_type(Recipe, name) is not None:
        return name
    if "." not in name and field_type(Recipe, f"training.{name}") is not None:
        return f"training.{name}"
    section, _, rest = name.partition(".")
    if rest and field_type(Recipe, section) is not None:
        fields = [path.rpartition(".")[2] for path, _ in fields_of(Recipe) if path.startswith(f"{section}.")]
        last = rest.rpartition(".")[2]
        raise FieldError(name, f"unknown field {last!r}{did_you_mean(last, fields)}")
    names = [path.removeprefix("training.") for path, _ in fields_of(Recipe)]
    raise RecipeError(f"--{name}: unknown flag{did_you_mean(name, names)}")


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file (or start from the defaults), apply overrides, check every field."""
    source = str(path) if path else "recipe"
    raw: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.is_file():
            raise RecipeError(f"{file}: recipe file not found")
        try:
            raw = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark else ""
            raise RecipeError(f"{file}:{line} is not valid YAML") from None
        if not isinstance(raw, dict):
            raise RecipeError(f"{file}: a recipe is a mapping of fields, got {type(raw).__name__}")
    flags: dict[str, str] = {}  # field path -> the flag that set it, so that an error names the flag
    for name, value in parse_flags(overrides or []):
        try:
            path = _field_path(name)
        except FieldError as error:
            raise RecipeError(f"--{name}: {error.problem}") from None
        set_flag(raw, path, value, extend=path in flags and is_list(field_type(Recipe, path)))
        flags[path] = f"--{name}"
    try:
        recipe = build(Recipe, raw)
        _refuse_unused(recipe, flags)
    except FieldError as error:
        flag = flags.get(error.path)
        raise RecipeError(f"{flag}: {error.problem}" if flag else f"{source}: {error}") from None
    return recipe


def _refuse_unused(recipe: Recipe, flags: dict[str, str]) -> None:
    """A flag for a section that the recipe leaves off would be ignored: raise FieldError."""
    for path in flags:
        if path.startswith("warm_start.") and path != "warm_start.steps" and recipe.warm_start.steps == 0:
            raise FieldError(path, "set, but warm_start.steps is 0 (no warm start)")
        if path.startswith("evaluation.") and recipe.evaluation.dataset is None:
            raise FieldError(path, "set, but the recipe names no evaluation.dataset (no evaluation)")


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain data for the run directory's resolved config."""
    return dataclasses.asdict(recipe)
