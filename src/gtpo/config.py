"""GTPOConfig: TRL's GRPOConfig plus GTPO's fields, and which TRL options compose with GTPO.

GTPO reaches TRL's loss as a per-token advantage (gtpo.trainer), so every TRL loss type and
option that multiplies a token's advantage by its own factor composes with it. What does not is
refused here with its reason, in one line (the same reasons are listed in docs/algorithm.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trl import GRPOConfig

from gtpo.reward_checks import NONFINITE_REWARDS

PRESETS = ("paper", "official")
CONFLICT_MODES = ("prefix_suffix", "position")
ENTROPY_GATES = ("paper", "always", "off")
# TRL 1.16's loss types; `luspo` is refused (below), the others compose with GTPO's advantages.
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "vespo", "luspo")

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
            "TRL's loss the GTPO advantages go through: 'grpo' (default, the paper's per-completion mean), "
            "'bnpo', 'dr_grpo', 'dapo', 'cispo', 'sapo' or 'vespo' ('luspo' is refused)."
        ),
    )
    nonfinite_rewards: str = field(
        default="error",
        **_help(
            "A NaN or infinite reward: 'error' (stop, naming the reward function and the completion) "
            "or 'missing' (treated like a reward function's None)."
        ),
    )

    def __post_init__(self):
        self._validate_gtpo_fields()
        super().__post_init__()

    def _validate_gtpo_fields(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"GTPOConfig.preset must be one of {PRESETS}, got {self.preset!r}")
        for name, value in PRESET_DEFAULTS[self.preset].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if self.loss_temperature is None:
            self.loss_temperature = self.temperature
        self._check_choices()
        self._check_numbers()
        self._check_composition()
        if self.preset == "official":
            self._check_official()

    def _check_choices(self) -> None:
        choices = {
            "conflict_mode": CONFLICT_MODES,
            "entropy_gate": ENTROPY_GATES,
            "nonfinite_rewards": NONFINITE_REWARDS,
            "loss_type": LOSS_TYPES,
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"GTPOConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    def _check_numbers(self) -> None:
        for name in ("positive_weight", "negative_weight", "gamma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"GTPOConfig.{name} must be a finite number >= 0, got {value!r}")
        for name in ("entropy_threshold", "loss_temperature"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"GTPOConfig.{name} must be a finite number > 0, got {value!r}")

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
