"""GTPOTrainer: TRL's GRPOTrainer with GTPO's conflict weights, entropy gate and shaping.

Two narrow overrides carry the algorithm (gtpo.algorithm):
  * `_generate_and_score_completions`: after TRL has generated, scored and computed advantages,
    the conflict token weights are computed over whole groups (gathered from every process, since
    a group can span processes) and each process keeps its own rows.
  * `_compute_loss`: per-token log-probs and entropies of the current policy (one forward pass),
    then the entropy gate, shaped advantages and the GTPO loss.
`_calculate_rewards` checks each reward function for the call: an exception or a NaN reward names
the function and the completion (gtpo.reward_checks).
Checkpoints are written to a staging directory and renamed whole, carry H_ini and TRL's
generation state, and the data order is the same in a resumed run (gtpo.checkpoints).
Everything else (generation with transformers or vLLM, PEFT, accelerate/DeepSpeed/FSDP, logging,
checkpoint contents) is TRL's. TRL internals used here are pinned by the `trl` range in pyproject.toml and
exercised by tests/test_trainer.py.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import add_fused_lm_head, is_async_callable

from gtpo import algorithm, checkpoints
from gtpo.reward_checks import NONFINITE_REWARDS, checked_reward_function

PRESETS = ("paper", "official")
CONFLICT_MODES = ("prefix_suffix", "position")
ENTROPY_GATES = ("paper", "always", "off")
STATE_FILE = "gtpo_state.json"
BUFFER_FILE = "generation_buffer_{}.pt"  # one per process, only when saved mid-generation-batch

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

# Forward-pass inputs that TRL passes through for multimodal models.
_FORWARD_KEYS = (
    "pixel_values",
    "image_grid_thw",
    "num_images",
    "pixel_attention_mask",
    "spatial_shapes",
    "num_tiles",
    "image_sizes",
    "token_type_ids",
    "mm_token_type_ids",
    "image_position_ids",
)


def _help(text: str) -> dict[str, dict[str, str]]:
    return {"metadata": {"help": text}}


@dataclass
class GTPOConfig(GRPOConfig):
    """GRPOConfig plus GTPO's fields. Fields left at None take the preset's value.

    Presets: "paper" (default) follows the paper's formula with group mean/std advantages;
    "official" reproduces the authors' code (see docs/algorithm.md): advantages R - mean(R),
    gate always on at 0.7, lambda = prefix x suffix weights, loss divided by the conflict count
    and summed over completions, ratio 1, entropy and log-probs at temperature 1.
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
    loss_type: str = field(default="grpo", **_help("Only 'grpo' (the paper's per-completion mean)."))
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
        if self.conflict_mode not in CONFLICT_MODES:
            raise ValueError(
                f"GTPOConfig.conflict_mode must be one of {CONFLICT_MODES}, got {self.conflict_mode!r}"
            )
        if self.entropy_gate not in ENTROPY_GATES:
            raise ValueError(
                f"GTPOConfig.entropy_gate must be one of {ENTROPY_GATES}, got {self.entropy_gate!r}"
            )
        for name in ("positive_weight", "negative_weight", "gamma"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"GTPOConfig.{name} must be a finite number >= 0, got {value!r}")
        for name in ("entropy_threshold", "loss_temperature"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"GTPOConfig.{name} must be a finite number > 0, got {value!r}")
        if self.nonfinite_rewards not in NONFINITE_REWARDS:
            raise ValueError(
                f"GTPOConfig.nonfinite_rewards must be one of {NONFINITE_REWARDS}, "
                f"got {self.nonfinite_rewards!r}"
            )
        if self.loss_type != "grpo":
            raise ValueError(
                f"GTPOConfig.loss_type must be 'grpo' (the paper's normalisation), got {self.loss_type!r}"
            )
        if self.preset == "official":
            if self.scale_rewards not in ("group", "none", True):
                raise ValueError(
                    "GTPOConfig: preset 'official' uses advantages R - mean(R), which contradicts "
                    f"scale_rewards={self.scale_rewards!r}"
                )
            self.scale_rewards = "none"
        unsupported = {
            "importance_sampling_level": (self.importance_sampling_level, "token"),
            "top_entropy_quantile": (self.top_entropy_quantile, 1.0),
            "off_policy_mask_threshold": (self.off_policy_mask_threshold, None),
            "entropy_coef": (self.entropy_coef, 0.0),
            "use_adaptive_entropy": (self.use_adaptive_entropy, False),
        }
        for name, (value, supported) in unsupported.items():
            if value != supported:
                raise ValueError(
                    f"GTPOConfig.{name}={value!r} is not supported by GTPO; leave it at {supported!r}"
                )


class GTPOTrainer(GRPOTrainer):
    """Drop-in replacement for GRPOTrainer that trains with GTPO. Takes the same arguments."""

    _tag_names: ClassVar[list[str]] = ["trl", "gtpo"]
    _name = "GTPO"
    _staging_dir: str | None = None  # set while a checkpoint is being written
    # The first group of the latest training batch, on the main process (see _remember_group).
    last_group: dict[str, Any] | None = None
    _group_rewards: torch.Tensor | None = None

    def __init__(self, model, reward_funcs=None, args: GTPOConfig | None = None, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = GTPOConfig(f"{str(name).rstrip('/').split('/')[-1]}-GTPO")
        if not isinstance(args, GTPOConfig):
            raise TypeError(f"GTPOTrainer needs a GTPOConfig, got {type(args).__name__}")
        super().__init__(model, reward_funcs, args, **kwargs)
        self.initial_entropy: float | None = None
        if self.args.loss_temperature != self.temperature:
            # The fused head divides logits by its own temperature; patch it again with the loss's.
            base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
            add_fused_lm_head(
                base,
                temperature=self.args.loss_temperature,
                cast_lm_head_to_fp32=self.args.cast_lm_head_to_fp32,
                outputs=("log_probs", "entropy"),
            )

    # ---------------------------------------------------------------------------------------------
    # Reward functions: a failure names the function and the completion (gtpo.reward_checks)
    # ---------------------------------------------------------------------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's reward computation with each synchronous reward function checked for the call."""
        user_functions = self.reward_funcs
        self.reward_funcs = [
            func
            if isinstance(func, torch.nn.Module) or is_async_callable(func)
            else checked_reward_function(func, name, self.args.nonfinite_rewards)
            for func, name in zip(user_functions, self.reward_func_names, strict=True)
        ]
        try:
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        finally:
            self.reward_funcs = user_functions
        self._group_rewards = rewards  # every process's rows, in global order
        return rewards

    # ---------------------------------------------------------------------------------------------
    # Conflict weights, computed where whole groups are present
    # ---------------------------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        ids, mask, advantages = self._gather_groups(
            output["completion_ids"], output["completion_mask"], output["advantages"]
        )
        args = self.args
        conflict = algorithm.conflict_mask(ids, mask, advantages, group_size, mode=args.conflict_mode)
        if args.preset == "official":
            weights, divisor = algorithm.official_token_weights(
                ids, mask, advantages, group_size, args.positive_weight, args.negative_weight
            )
        else:
            weights = algorithm.token_weights(
                conflict, advantages, args.positive_weight, args.negative_weight
            )
            divisor = None
        for name, value in algorithm.conflict_shares(conflict, advantages, mask).items():
            self._metrics[mode][f"gtpo/{name}"].append(value)
        if mode == "train" and self.accelerator.is_main_process:
            self._remember_group(inputs[0]["prompt"], ids, mask, advantages, conflict, weights, group_size)

        rows = self._local_rows(output["advantages"].shape[0])
        length = output["completion_ids"].shape[1]
        output["gtpo_weights"] = weights[rows, :length]
        if divisor is not None:
            output["gtpo_divisor"] = divisor[rows]
        return output

    def _remember_group(self, prompt, ids, mask, advantages, conflict, weights, group_size: int) -> None:
        """Keep the batch's first group (global rows 0..G-1) in `last_group`, as plain lists:
        completion_ids (real tokens only), rewards {reward function: list}, advantages, conflict
        (0/1 per token), weights (lambda per token) and the prompt's text."""
        lengths = mask[:group_size].sum(dim=1).tolist()
        rows = range(group_size)
        rewards = self._group_rewards[:group_size]
        self.last_group = {
            "prompt": prompt[-1]["content"] if isinstance(prompt, list) else prompt,
            "completion_ids": [ids[i, : lengths[i]].tolist() for i in rows],
            "rewards": {name: rewards[:, j].tolist() for j, name in enumerate(self.reward_func_names)},
            "advantages": advantages[:group_size].tolist(),
            "conflict": [conflict[i, : lengths[i]].int().tolist() for i in rows],
            "weights": [weights[i, : lengths[i]].tolist() for i in rows],
        }

    def _gather_groups(self, ids: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor):
        """Completion ids, mask and advantages of every process, in global row order."""
        if self.accelerator.num_processes == 1:
            return ids, mask, advantages
        ids = self.accelerator.pad_across_processes(ids, dim=1, pad_index=0)
        mask = self.accelerator.pad_across_processes(mask, dim=1, pad_index=0)
        return (
            self.accelerator.gather(ids),
            self.accelerator.gather(mask),
            self.accelerator.gather(advantages),
        )

    def _local_rows(self, local_count: int) -> slice:
        start = self.accelerator.process_index * local_count
        return slice(start, start + local_count)

    # ---------------------------------------------------------------------------------------------
    # Loss
    # ---------------------------------------------------------------------------------------------

    def _compute_loss(self, model, inputs: dict[str, Any]) -> torch.Tensor:
        args = self.args
        mode = "train" if self.model.training else "eval"
        completion_ids = inputs["completion_ids"]
        mask = inputs["completion_mask"]
        if "tool_mask" in inputs:
            mask = mask * inputs["tool_mask"]
        input_ids = torch.cat([inputs["prompt_ids"], completion_ids], dim=1)
        attention_mask = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        logps, entropies, aux_loss = self._get_per_token_logps_and_entropies(
            model,
            input_ids,
            attention_mask,
            completion_ids.size(1),
            compute_entropy=True,
            compute_aux_loss=self.aux_loss_enabled,
            **{key: inputs.get(key) for key in _FORWARD_KEYS},
        )

        mean_entropy = algorithm.mean_completion_entropy(entropies, mask)
        initial_entropy = self._initial_entropy(mean_entropy, mask, mode)
        gate = algorithm.entropy_gate(
            mean_entropy, args.entropy_gate, args.entropy_threshold, initial_entropy
        )
        advantages = algorithm.shaped_advantages(inputs["advantages"], mean_entropy, gate, args.gamma)
        weights = inputs["gtpo_weights"]

        if args.preset == "official":
            loss = algorithm.official_gtpo_loss(logps, advantages, weights, inputs["gtpo_divisor"], mask)
        else:
            old_logps = inputs.get("old_per_token_logps")
            old_logps = logps.detach() if old_logps is None else old_logps
            self._log_clipping(mode, logps.detach(), old_logps, advantages, mask)
            loss = algorithm.gtpo_loss(
                logps,
                old_logps,
                advantages,
                weights,
                mask,
                epsilon_low=self.epsilon_low,
                epsilon_high=self.epsilon_high,
                importance_weights=inputs.get("importance_sampling_ratio"),
                beta=self.beta,
                ref_logps=inputs.get("ref_per_token_logps"),
            )
        normalizer = self.current_gradient_accumulation_steps if mode == "train" else 1.0
        loss = loss / normalizer
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * aux_loss / normalizer

        self._log_loss_metrics(mode, entropies, mask, gate, mean_entropy, initial_entropy)
        if self.beta != 0.0:
            kl = algorithm.k3_kl(logps, inputs["ref_per_token_logps"])
            self._metrics[mode]["kl"].append(self._global_token_mean(kl, mask))
        return loss

    def _initial_entropy(self, mean_entropy: torch.Tensor, mask: torch.Tensor, mode: str) -> float:
        """H_ini: mean completion entropy of the first training batch (all processes), then kept.
        Completions without a real token (masked out, as mask_truncated_completions does) have no
        entropy and are left out; a batch of only such completions leaves H_ini unset."""
        if self.initial_entropy is not None:
            return self.initial_entropy
        real = (mask.sum(dim=1) > 0).to(mean_entropy.dtype)
        stats = torch.stack([(mean_entropy * real).sum(), real.sum()])
        total, count = self.accelerator.reduce(stats, reduction="sum").tolist()
        value = total / max(count, 1.0)
        if mode == "train" and count > 0:
            self.initial_entropy = value
        return value

    def _global_token_mean(self, values: torch.Tensor, mask: torch.Tensor) -> float:
        mask = mask.to(values.dtype)
        stats = torch.stack([(values.detach() * mask).sum(), mask.sum()])
        total, count = self.accelerator.reduce(stats, reduction="sum").tolist()
        return total / max(count, 1.0)

    def _log_clipping(self, mode, logps, old_logps, advantages, mask) -> None:
        """TRL's clip_ratio/* metrics: shares of real tokens whose update the PPO clip stops."""
        eps_low, eps_high = self.epsilon_low, self.epsilon_high
        low, high = algorithm.clipped_tokens(logps, old_logps, advantages, eps_low, eps_high)
        metrics = self._metrics[mode]
        metrics["clip_ratio/low_mean"].append(self._global_token_mean(low.float(), mask))
        metrics["clip_ratio/high_mean"].append(self._global_token_mean(high.float(), mask))
        metrics["clip_ratio/region_mean"].append(self._global_token_mean((low | high).float(), mask))

    def _log_loss_metrics(self, mode, entropies, mask, gate, mean_entropy, initial_entropy) -> None:
        metrics = self._metrics[mode]
        metrics["entropy"].append(self._global_token_mean(entropies, mask))
        gathered_gate = self.accelerator.gather(gate)
        gathered_entropy = self.accelerator.gather(mean_entropy)
        for name, value in algorithm.gate_diagnostics(gathered_gate, gathered_entropy).items():
            metrics[f"gtpo/{name}"].append(value)
        metrics["gtpo/initial_entropy"].append(initial_entropy)

    # ---------------------------------------------------------------------------------------------
    # Checkpoints: complete or absent, and a resumed run continues exactly (gtpo.checkpoints)
    # ---------------------------------------------------------------------------------------------

    def _get_train_sampler(self, dataset=None):
        return checkpoints.EpochSeededSampler(super()._get_train_sampler(dataset))

    def _get_output_dir(self, trial) -> str:
        # While a checkpoint is being saved, transformers writes it into the staging directory.
        return self._staging_dir or super()._get_output_dir(trial)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        if self._staging_dir is None:  # pushed once renamed to its final place
            super()._push_from_checkpoint(checkpoint_folder)

    def _save_checkpoint(self, model, trial):
        run_dir = self._get_output_dir(trial)
        name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        staging = checkpoints.staging_dir(run_dir, name)
        staged, final = os.path.join(staging, name), os.path.join(run_dir, name)
        if self.args.should_save:
            checkpoints.remove_staging(run_dir)
        self.accelerator.wait_for_everyone()
        self._staging_dir = staging
        try:
            super()._save_checkpoint(model, trial)
            self._save_resume_state(staged)
        finally:
            self._staging_dir = None
        if self.state.best_model_checkpoint == staged:
            self.state.best_model_checkpoint = final
            if self.args.should_save:
                self.state.save_to_json(os.path.join(staged, TRAINER_STATE_NAME))
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            checkpoints.publish(staged, final)
            checkpoints.prune(run_dir, self.args.save_total_limit, self.state.best_model_checkpoint)
        if self.args.push_to_hub:
            self._push_from_checkpoint(final)

    def _save_resume_state(self, folder: str) -> None:
        """H_ini and TRL's micro-step count; TRL's generation buffer when the next step reuses it."""
        if self.args.should_save:
            with open(os.path.join(folder, STATE_FILE), "w") as f:
                json.dump({"initial_entropy": self.initial_entropy, "micro_step": self._step}, f)
        if self._step % (self.args.steps_per_generation * self.num_iterations) != 0:
            buffer = os.path.join(folder, BUFFER_FILE.format(self.accelerator.process_index))
            torch.save(self._buffered_inputs, buffer)

    def _load_optimizer_and_scheduler(self, checkpoint):
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, STATE_FILE)
        if os.path.exists(path):
            with open(path) as f:
                state = json.load(f)
            self.initial_entropy = state["initial_entropy"]
            self._step = state.get("micro_step", 0)
        buffer = os.path.join(checkpoint, BUFFER_FILE.format(self.accelerator.process_index))
        if os.path.exists(buffer):
            self._buffered_inputs = torch.load(
                buffer, map_location=self.accelerator.device, weights_only=True
            )
