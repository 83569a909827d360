"""Recipes: a YAML file that wires a model, a task, rewards, an optional warm start, GTPO (or the
GRPO baseline) and evaluation. `gtpo train --config RECIPE.yaml [--field value ...]` reads one.

A recipe has a few top-level sections (the Recipe dataclass below) and a `training` mapping of
GTPOConfig fields (TRL's GRPOConfig fields plus GTPO's). Command-line overrides name a top-level
field (`--model_name_or_path`), a field of a section with a dot (`--dataset.limit 100`), or a
training field directly (`--learning_rate 1e-5`). Every name, type and range is checked before
any model is loaded; a mistake is reported in one line that names the flag (for a value given on
the command line) or the file and field, with the nearest valid name for a misspelt one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import operator
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class RecipeError(ValueError):
    """A recipe or an override is wrong; the message names the file, field or flag."""


class _FieldError(RecipeError):
    """A bad value at a dotted field path ("training.max_steps"); load_recipe names the flag or the
    file it came from."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def _bounded(default: Any, *bounds: str) -> Any:
    """A dataclass field whose value must satisfy each bound, e.g. ">= 1" (None always passes)."""
    return field(default=default, metadata={"bounds": bounds})


@dataclass
class DatasetSection:
    """Which task to train or evaluate on: a name from gtpo.tasks, optionally from a local file."""

    name: str = "arithmetic"
    split: str | None = None
    path: str | None = None
    limit: int | None = _bounded(None, ">= 1")


@dataclass
class WarmStartSection:
    """Supervised warm start (TRL's SFTTrainer) before RL; steps 0 skips it."""

    steps: int = _bounded(0, ">= 0")
    format_fraction: float = _bounded(0.5, ">= 0", "<= 1")
    learning_rate: float = _bounded(1e-3, "> 0")
    batch_size: int = _bounded(16, ">= 1")


@dataclass
class EvaluationSection:
    """Held-out evaluation before and after training."""

    dataset: DatasetSection | None = None
    num_samples: int = _bounded(1, ">= 1")
    temperature: float = _bounded(0.0, ">= 0")
    max_new_tokens: int = _bounded(128, ">= 1")
    batch_size: int = _bounded(32, ">= 1")
    before_training: bool = True


@dataclass
class LoraSection:
    """PEFT LoRA adapter; the paper uses r = 128 on all projections."""

    r: int = _bounded(16, ">= 1")
    alpha: int = _bounded(32, "> 0")
    dropout: float = _bounded(0.0, ">= 0", "< 1")
    target_modules: list[str] | str = "all-linear"


@dataclass
class Recipe:
    model_name_or_path: str = "tiny-demo"
    algorithm: str = "gtpo"  # "gtpo", or "grpo" for TRL's GRPOTrainer as the baseline
    seed: int = 0
    dataset: DatasetSection = field(default_factory=DatasetSection)
    rewards: list[str] = field(default_factory=lambda: ["format_reward", "correctness_reward"])
    warm_start: WarmStartSection = field(default_factory=WarmStartSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)
    lora: LoraSection | None = None
    training: dict[str, Any] = field(default_factory=dict)


ALGORITHMS = ("gtpo", "grpo")

# TRL and transformers training fields whose bad values would otherwise surface only once a model
# is loaded (or never, as a silently odd run). GTPO's own fields are checked by GTPOConfig.
TRAINING_BOUNDS: dict[str, tuple[str, ...]] = {
    "learning_rate": (">= 0",),
    "weight_decay": (">= 0",),
    "max_grad_norm": (">= 0",),
    "per_device_train_batch_size": (">= 1",),
    "gradient_accumulation_steps": (">= 1",),
    "num_generations": (">= 2",),
    "num_generations_eval": (">= 1",),
    "generation_batch_size": (">= 1",),
    "steps_per_generation": (">= 1",),
    "num_iterations": (">= 1",),
    "max_completion_length": (">= 1",),
    "temperature": ("> 0",),
    "top_p": ("> 0", "<= 1"),
    "top_k": (">= 0",),
    "repetition_penalty": ("> 0",),
    "beta": (">= 0",),
    "epsilon": (">= 0",),
    "epsilon_high": (">= 0",),
    "num_train_epochs": ("> 0",),
    "warmup_steps": (">= 0",),
    "save_steps": ("> 0",),
    "logging_steps": ("> 0",),
}
TRAINING_CHOICES: dict[str, tuple[str, ...]] = {
    "scale_rewards": ("group", "batch", "none"),
    "multi_objective_aggregation": ("sum_then_normalize", "normalize_then_sum"),
}
_COMPARISONS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def _training_fields() -> dict[str, Any]:
    """GTPOConfig's field names and their type annotations."""
    from gtpo.trainer import GTPOConfig

    hints = typing.get_type_hints(GTPOConfig)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(GTPOConfig) if f.init}


def _suggest(name: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _check_bounds(value: Any, bounds: tuple[str, ...], where: str) -> None:
    """Raise when a number is not finite or breaks one of its bounds (">= 1", "< 1", ...)."""
    if value is None or not bounds:
        return
    holds = math.isfinite(value) and all(
        _COMPARISONS[op](value, float(limit)) for op, limit in (bound.split() for bound in bounds)
    )
    if not holds:
        raise _FieldError(where, f"must be {' and '.join(bounds)}, got {value!r}")


def _yaml_value(text: str, where: str) -> Any:
    """A list or mapping given on the command line, read as YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        raise _FieldError(where, f"not valid YAML: {text!r}") from None


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check value against a type annotation, converting strings from the command line and
    YAML's unquoted scientific notation ("1e-4"). Raises RecipeError naming the field path."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except RecipeError as error:
                errors.append(error)
        raise errors[0] if errors else _FieldError(where, f"unsupported value {value!r}")
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        if isinstance(value, str):
            value = _yaml_value(value, where) if value.startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise _FieldError(where, f"expected a list, got {value!r}")
        return [_coerce(v, item, where) for v in value]
    if origin is dict or annotation is dict:
        if isinstance(value, str):
            value = _yaml_value(value, where)
        if not isinstance(value, dict):
            raise _FieldError(where, f"expected a mapping, got {value!r}")
        return value
    if annotation is Any or annotation is typing.Any:
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise _FieldError(where, f"expected a mapping of {annotation.__name__} fields, got {value!r}")
        return _build(annotation, value, where)
    if annotation is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise _FieldError(where, f"expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise _FieldError(where, f"expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise _FieldError(where, f"expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise _FieldError(where, f"expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise _FieldError(where, f"expected a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise _FieldError(where, f"expected a string, got {value!r}")
    # Enums and other TRL types: let the config class validate them.
    return value


def _build(cls: type, values: dict[str, Any], where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        path = _join(where, name)
        if name not in fields:
            raise _FieldError(path, f"unknown field {name!r}{_suggest(name, fields)}")
        kwargs[name] = _coerce(value, hints[name], path)
        _check_bounds(kwargs[name], fields[name].metadata.get("bounds", ()), path)
    return cls(**kwargs)


def _check_training(training: dict[str, Any]) -> dict[str, Any]:
    known = _training_fields()
    checked = {}
    for name, value in training.items():
        path = f"training.{name}"
        if name not in known:
            raise _FieldError(path, f"unknown training field{_suggest(name, known)}")
        checked[name] = _coerce(value, known[name], path)
        _check_bounds(checked[name], TRAINING_BOUNDS.get(name, ()), path)
        choices = TRAINING_CHOICES.get(name)
        if choices and checked[name] not in choices:
            raise _FieldError(path, f"must be one of {choices}, got {checked[name]!r}")
    return checked


FLAG_NAME = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*", re.ASCII)


def parse_overrides(argv: list[str]) -> list[tuple[str, str]]:
    """`--name value` / `--name=value` pairs, in order."""
    pairs = []
    index = 0
    while index < len(argv):
        flag = argv[index]
        if not flag.startswith("--") or flag == "--":
            raise RecipeError(f"unexpected argument {flag!r}: overrides look like --field value")
        name = flag[2:]
        if "=" in name:
            name, value = name.split("=", 1)
            index += 1
        else:
            if index + 1 >= len(argv):
                raise RecipeError(f"flag {flag} needs a value")
            value = argv[index + 1]
            index += 2
        if not FLAG_NAME.fullmatch(name):
            raise RecipeError(f"unexpected argument {flag!r}: a flag names a field, as --dataset.limit")
        pairs.append((name, value))
    return pairs


def _apply_override(raw: dict[str, Any], name: str, value: str) -> None:
    top = {f.name for f in dataclasses.fields(Recipe)}
    head, *rest = name.split(".")
    if head in top and head != "training":
        target = raw
        for part in [head, *rest][:-1]:
            if not isinstance(target.get(part), dict):
                target[part] = {}
            target = target[part]
        target[[head, *rest][-1]] = value
        return
    if head == "training" and len(rest) == 1:
        name = rest[0]
    elif head == "training":
        raise RecipeError(
            f"--{name}: name one training field, as --training.learning_rate or --learning_rate"
        )
    if name in _training_fields():
        raw.setdefault("training", {})[name] = value
        return
    raise RecipeError(f"--{name}: unknown flag{_suggest(name, [*top, *_training_fields()])}")


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
    flags = {}  # field path -> the flag that set it, so that an error names the flag
    for name, value in parse_overrides(overrides or []):
        _apply_override(raw, name, value)
        top = name.split(".")[0] in _recipe_fields()
        flags[name if top else f"training.{name}"] = f"--{name}"
    try:
        return _check_recipe(raw)
    except _FieldError as error:
        flag = flags.get(error.path)
        raise RecipeError(f"{flag}: {error.problem}" if flag else f"{source}: {error}") from None


def _recipe_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(Recipe)}


def _check_recipe(raw: dict[str, Any]) -> Recipe:
    """Build a Recipe from plain data, checking names, types, ranges and the cross-field rules."""
    training = raw.pop("training", None) or {}
    if not isinstance(training, dict):
        raise _FieldError("training", "expected a mapping of training fields")
    recipe = _build(Recipe, raw, "")
    recipe.training = _check_training(training)
    if recipe.algorithm not in ALGORITHMS:
        raise _FieldError("algorithm", f"must be one of {ALGORITHMS}, got {recipe.algorithm!r}")
    if not recipe.rewards:
        raise _FieldError("rewards", "name at least one reward function")
    evaluation = recipe.evaluation
    if evaluation.num_samples > 1 and evaluation.temperature == 0:
        raise _FieldError(
            "evaluation.num_samples",
            f"{evaluation.num_samples} samples per problem need evaluation.temperature > 0",
        )
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain data for the run directory's resolved config."""
    return dataclasses.asdict(recipe)
