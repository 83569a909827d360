"""Recipes: a YAML file that wires a model, a task, rewards, an optional warm start, GTPO (or the
GRPO baseline) and evaluation. `gtpo train --config RECIPE.yaml [--field value ...]` reads one.

A recipe has a few top-level sections (the Recipe dataclass below) and a `training` mapping of
GTPOConfig fields (TRL's GRPOConfig fields plus GTPO's). Command-line overrides name a top-level
field (`--model_name_or_path`), a field of a section with a dot (`--dataset.limit 100`), or a
training field directly (`--learning_rate 1e-5`). Every name and type is checked before any
model is loaded; a mistake is reported in one line, with the nearest valid name.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class RecipeError(ValueError):
    """A recipe or an override is wrong; the message names the file, field or flag."""


@dataclass
class DatasetSection:
    """Which task to train or evaluate on: a name from gtpo.tasks, optionally from a local file."""

    name: str = "arithmetic"
    split: str | None = None
    path: str | None = None
    limit: int | None = None


@dataclass
class WarmStartSection:
    """Supervised warm start (TRL's SFTTrainer) before RL; steps 0 skips it."""

    steps: int = 0
    format_fraction: float = 0.5
    learning_rate: float = 1e-3
    batch_size: int = 16


@dataclass
class EvaluationSection:
    """Held-out evaluation before and after training."""

    dataset: DatasetSection | None = None
    num_samples: int = 1
    temperature: float = 0.0
    max_new_tokens: int = 128
    batch_size: int = 32
    before_training: bool = True


@dataclass
class LoraSection:
    """PEFT LoRA adapter; the paper uses r = 128 on all projections."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
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


def _training_fields() -> dict[str, Any]:
    """GTPOConfig's field names and their type annotations."""
    from gtpo.trainer import GTPOConfig

    hints = typing.get_type_hints(GTPOConfig)
    return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(GTPOConfig) if f.init}


def _suggest(name: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check value against a type annotation, converting strings from the command line and
    YAML's unquoted scientific notation ("1e-4"). Raises RecipeError naming `where`."""
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
        raise errors[0] if errors else RecipeError(f"{where}: unsupported value {value!r}")
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise RecipeError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, item, where) for v in value]
    if origin is dict or annotation is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping, got {value!r}")
        return value
    if annotation is Any or annotation is typing.Any:
        return value
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: expected a mapping of {annotation.__name__} fields, got {value!r}")
        return _build(annotation, value, where)
    if annotation is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, bool):
            return value
        raise RecipeError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise RecipeError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise RecipeError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise RecipeError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise RecipeError(f"{where}: expected a number, got {value!r}") from None
    if annotation is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise RecipeError(f"{where}: expected a string, got {value!r}")
    # Enums and other TRL types: let the config class validate them.
    return value


def _build(cls: type, values: dict[str, Any], where: str):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in values.items():
        if name not in fields:
            raise RecipeError(f"{where}: unknown field {name!r}{_suggest(name, fields)}")
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}")
    return cls(**kwargs)


def _check_training(training: dict[str, Any], where: str) -> dict[str, Any]:
    known = _training_fields()
    checked = {}
    for name, value in training.items():
        if name not in known:
            raise RecipeError(f"{where}.{name}: unknown training field{_suggest(name, known)}")
        checked[name] = _coerce(value, known[name], f"{where}.{name}")
    return checked


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
    if name in _training_fields():
        raw.setdefault("training", {})[name] = value
        return
    raise RecipeError(f"--{name}: unknown flag{_suggest(name, [*top, *_training_fields()])}")


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe file (or start from the defaults), apply overrides, check every field."""
    where = str(path) if path else "recipe"
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
    for name, value in parse_overrides(overrides or []):
        _apply_override(raw, name, value)
    training = raw.pop("training", None) or {}
    if not isinstance(training, dict):
        raise RecipeError(f"{where}.training: expected a mapping of training fields")
    recipe = _build(Recipe, raw, where)
    recipe.training = _check_training(training, f"{where}.training")
    if recipe.algorithm not in ALGORITHMS:
        raise RecipeError(f"{where}.algorithm: must be one of {ALGORITHMS}, got {recipe.algorithm!r}")
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict[str, Any]:
    """Plain data for the run directory's resolved config."""
    return dataclasses.asdict(recipe)
