"""GTPOConfig: TRL's GRPOConfig plus GTPO's fields, the rules a value must follow, and which TRL
options compose with GTPO.

The rules (bounds and choices, below) are one table for Python and the command line: GTPOConfig
checks each value as given, before TRL derives other fields from it, so a message names the field
that was set; `gtpo train` checks a recipe's training fields with the same `field_problem`. TRL's
choices are read from TRL's own code. GTPO reaches TRL's loss as a per-token advantage
(gtpo.trainer), so every TRL loss type and option that multiplies a token's advantage by its own
factor composes with it. What does not is refused here with its reason, in one line (the same
reasons are listed in docs/algorithm.md).
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trl import GRPOConfig

from gtpo.reward_checks import NONFINITE_REWARDS
from gtpo.rules import bound_problem, choice_problem

PRESETS = ("paper", "official")
CONFLICT_MODES = ("prefix_suffix", "position")
ENTROPY_GATES = ("paper", "always", "off")

# Values each preset gives to the GTPO fields left unset (None).
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": {
        "conflict_mode": "prefix_suffix",
        "positive_weight": 2.0,
        "negative_weight": 0.0,
        "entropy_gate": "paper",
        "entropy_threshold": math.log(2.0),
        "gamma": 0.1,
    },
    "official": {
        "conflict_mode": "prefix_suffix",
        "positive_weight": 2.0,
        "negative_weight": 0.0,
        "entropy_gate": "always",
        "entropy_threshold": 0.7,
        "gamma": 0.1,
        "loss_temperature": 1.0,
    },
}

# Bounds on the values a user sets: TRL's and transformers' numbers whose bad values would
# otherwise surface only once a model is loaded (or never, as a silently odd run), and GTPO's own.
BOUNDS: dict[str, tuple[str, ...]] = {
    "learning_rate": (">= 0",),
    "weight_decay": (">= 0",),
    "max_grad_norm": (">= 0",),
    "per_device_train_batch_size": (">= 1",),
    "gradient_accumulation_steps": (">= 1",),
    "max_steps": (">= 1",),
    "num_train_epochs": ("> 0",),
    "warmup_steps": (">= 0",),
    "save_steps": ("> 0",),
    "logging_steps": ("> 0",),
    "num_generations": (">= 2",),
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
    "positive_weight": (">= 0",),
    "negative_weight": (">= 0",),
    "gamma": (">= 0",),
    "entropy_threshold": ("> 0",),
    "loss_temperature": ("> 0",),
    "stall_share": ("> 0", "<= 1"),
    "stall_steps": (">= 1",),
}
# A value outside its field's bounds that means something, and what.
SPECIAL_VALUES: dict[str, tuple[Any, str]] = {"max_steps": (-1, "to train for num_train_epochs")}
GTPO_CHOICES: dict[str, tuple[str, ...]] = {
    "preset": PRESETS,
    "conflict_mode": CONFLICT_MODES,
    "entropy_gate": ENTROPY_GATES,
    "nonfinite_rewards": NONFINITE_REWARDS,
}
# GRPOConfig also takes True ("group") and False ("none") for scale_rewards.
_BOOLEAN_SPELLINGS = ("scale_rewards",)


@functools.cache
def trl_choices() -> dict[str, tuple[str, ...]]:
    """The values GRPOTrainer takes for its string options, read from TRL's own code: every
    `if self.x == "a": ... elif self.x in ["b", "c"]: ... else: raise` chain of grpo_trainer.py
    (where TRL refuses any other value, but only once training runs)."""
    spec = importlib.util.find_spec("trl.trainer.grpo_trainer")
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found: dict[str, dict[str, None]] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (chain := _refusing_chain(node)) is not None:
            found.setdefault(chain[0], {}).update(dict.fromkeys(chain[1]))
    return {name: tuple(values) for name, values in found.items()}


def _refusing_chain(node: ast.If) -> tuple[str, list[str]] | None:
    """(option, values) when `node` and its elifs compare one option with constants and the final
    else raises; None otherwise."""
    name, values = None, []
    while True:
        compared = _compared_option(node.test)
        if compared is None or name not in (None, compared[0]):
            return None
        name, values = compared[0], values + compared[1]
        if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.If):
            node = node.orelse[0]
        else:
            break
    return (name, values) if len(node.orelse) == 1 and isinstance(node.orelse[0], ast.Raise) else None


def _compared_option(test: ast.expr) -> tuple[str, list[str]] | None:
    """("x", constants) for a test `self.x == "a"` or `args.x in ["a", "b"]`; None for another."""
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.left, ast.Attribute)):
        return None
    owner, operation, right = test.left.value, test.ops[0], test.comparators[0]
    if not (isinstance(owner, ast.Name) and owner.id in ("self", "args")):
        return None
    if isinstance(operation, ast.Eq):
        items = [right]
    elif isinstance(operation, ast.In) and isinstance(right, (ast.List, ast.Tuple)):
        items = right.elts
    else:
        return None
    if not all(isinstance(item, ast.Constant) and isinstance(item.value, str) for item in items):
        return None
    return test.left.attr, [item.value for item in items]


def field_choices() -> dict[str, tuple[str, ...]]:
    """Every string field with a fixed set of values: TRL's (read from TRL), the logging backends
    transformers knows for `report_to` (read from transformers) and GTPO's."""
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    return {**trl_choices(), "report_to": ("none", "all", *INTEGRATION_TO_CALLBACK), **GTPO_CHOICES}


def field_problem(name: str, value: Any) -> str | None:
    """What is wrong with `value` for GTPOConfig field `name` by the rules above, in one line, or
    None (also for a field without rules). `gtpo train` checks a recipe's fields with it."""
    if name in BOUNDS:
        return bound_problem(value, BOUNDS[name], SPECIAL_VALUES.get(name))
    choices = field_choices().get(name)
    if choices is None or (name in _BOOLEAN_SPELLINGS and isinstance(value, bool)):
        return None
    return choice_problem(value, choices)


class GTPOConfigError(ValueError):
    """A GTPOConfig field's value breaks its rule: `field` names it, `problem` says how."""

    def __init__(self, field_name: str, problem: str) -> None:
        super().__init__(f"GTPOConfig.{field_name}: {problem}")
        self.field = field_name
        self.problem = problem


_SEQUENCE_LEVEL = (
    "sequence-level importance sampling turns the token weights lambda into one factor per completion "
    "(their mean), so conflict tokens would no longer be protected"
)


def _help(text: str) -> dict[str, dict[str, str]]:
    return {"metadata": {"help": text}}


@dataclass
class GTPOConfig(GRPOConfig):
    """GRPOConfig plus GTPO's fields. Fields left at None take the preset's value.

    Presets: "paper" (default) follows the paper's formula with group mean/std advantages and
    composes with TRL's loss types; "official" reproduces the authors' code (docs/algorithm.md):
    advantages R - mean(R), gate always on at 0.7, lambda = prefix x suffix weights, loss divided
    by the conflict count and summed over completions, ratio 1, entropy and log-probs at
    temperature 1.
    """

    preset: str = field(default="paper", **_help("'paper' (default) or 'official'."))
    conflict_mode: str | None = field(
        default=None, **_help("'prefix_suffix' (official code, default) or 'position' (every raw conflict).")
    )
    positive_weight: float | None = field(
        default=None, **_help("lambda on conflict tokens of positive completions (default 2.0).")
    )
    negative_weight: float | None = field(
        default=None, **_help("lambda on conflict tokens of negative completions (default 0.0: skipped).")
    )
    entropy_gate: str | None = field(
        default=None, **_help("'paper' (H_ini and ln 2), 'always' (fixed threshold) or 'off'.")
    )
    entropy_threshold: float | None = field(
        default=None, **_help("Gate threshold on mean completion entropy (paper: ln 2; official: 0.7).")
    )
    gamma: float | None = field(default=None, **_help("Entropy shaping: A_i - gamma * <H>_i (default 0.1)."))
    loss_temperature: float | None = field(
        default=None,
        **_help(
            "Temperature of the log-probs and entropies in the loss (default: the sampling temperature)."
        ),
    )
    loss_type: str = field(
        default="grpo",
        **_help(
            "TRL's loss the GTPO advantages go through: 'grpo' (default, the paper's per-completion mean) "
            "or another of TRL's loss types but 'luspo'."
        ),
    )
    nonfinite_rewards: str = field(
        default="error",
        **_help(
            "A NaN or infinite reward: 'error' (stop, naming the reward function and the completion) "
            "or 'missing' (treated like a reward function's None)."
        ),
    )

    stall_warning: bool = field(
        default=True,
        **_help(
            "Warn, in one line, when for stall_steps optimisation steps in a row the entropy gate drops "
            "at least stall_share of the completions (gtpo/gated_out_share), or the entropy shaping alone "
            "moves at least stall_share of those it keeps (gtpo/shaping_only_share: groups of equal "
            "rewards). False: no warning."
        ),
    )
    stall_share: float = field(
        default=1.0,
        **_help("Share of completions that makes a step count for stall_warning (default 1.0: all)."),
    )
    stall_steps: int = field(
        default=5, **_help("Consecutive optimisation steps before stall_warning warns (default 5).")
    )

    def __post_init__(self):
        self._check_rules()
        self._validate_gtpo_fields()
        super().__post_init__()

    def _check_rules(self) -> None:
        """Each value as given, before a preset or TRL derives other fields from it."""
        for name in (*BOUNDS, *field_choices()):
            problem = field_problem(name, getattr(self, name))
            if problem is not None:
                raise GTPOConfigError(name, problem)

    def _validate_gtpo_fields(self) -> None:
        for name, value in PRESET_DEFAULTS[self.preset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.loss_temperature is None:
            self.loss_temperature = self.temperature
        self._check_composition()
        if self.preset == "official":
            self._check_official()

    def _check_composition(self) -> None:
        """TRL options whose loss does not keep a per-token advantage per token."""
        if self.loss_type == "luspo":
            raise ValueError(
                "GTPOConfig.loss_type='luspo' is not supported: it needs importance_sampling_level="
                f"'sequence', and {_SEQUENCE_LEVEL}"
            )
        if self.importance_sampling_level != "token":
            raise ValueError(
                f"GTPOConfig.importance_sampling_level={self.importance_sampling_level!r} is not supported: "
                f"{_SEQUENCE_LEVEL}"
            )

    def _check_official(self) -> None:
        if self.scale_rewards not in ("group", "none", True):
            raise ValueError(
                "GTPOConfig: preset 'official' uses advantages R - mean(R), which contradicts "
                f"scale_rewards={self.scale_rewards!r}"
            )
        self.scale_rewards = "none"
        refused: dict[str, tuple[Any, Any, str]] = {
            "loss_type": (self.loss_type, "grpo", "sums per-completion token means over completions"),
            "multi_objective_aggregation": (
                self.multi_objective_aggregation,
                "sum_then_normalize",
                "uses advantages R - mean(R) of the summed rewards",
            ),
            "beta": (self.beta, 0.0, "has no KL term"),
            "delta": (self.delta, None, "keeps the ratio at 1, so no clipping acts"),
            "top_entropy_quantile": (self.top_entropy_quantile, 1.0, "trains on every token"),
            "off_policy_mask_threshold": (self.off_policy_mask_threshold, None, "masks no completion"),
            "entropy_coef": (self.entropy_coef, 0.0, "has no entropy bonus"),
            "use_adaptive_entropy": (self.use_adaptive_entropy, False, "has no entropy bonus"),
        }
        if self.use_vllm:
            refused["vllm_importance_sampling_correction"] = (
                self.vllm_importance_sampling_correction,
                False,
                "has no importance-sampling correction",
            )
        for name, (value, expected, reason) in refused.items():
            if value != expected:
                raise ValueError(
                    f"GTPOConfig.{name}={value!r} is not supported with preset 'official': the authors' "
                    f"loss {reason}; use preset 'paper' to combine GTPO with it"
                )
