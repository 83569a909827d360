"""GTPOTrainer: TRL's GRPOTrainer with GTPO's conflict weights, entropy gate and shaping.

GTPO enters as a per-token advantage. One override carries the algorithm (gtpo.algorithm):
`_generate_and_score_completions`, where TRL has generated, scored and computed advantages for
a whole generation batch. There, over whole groups (gathered from every process, since a group
can span processes), it builds lambda_{i,t} * delta_i * (A_i - gamma * <H>_i) and hands it to
TRL as the batch's (B, T) advantages; TRL's own `_compute_loss` does the rest, for every loss
type. The entropies for the gate and the shaping come from a no-grad pass of the policy over the
batch: TRL's own old-log-prob pass when it runs one (then with entropies), otherwise one more.
`_calculate_rewards` checks each reward function for the call (gtpo.reward_checks); checkpoints
are crash-safe and resume exactly (gtpo.checkpoints.CrashSafeCheckpoints).
Every private TRL/transformers name used is in PRIVATE_NAMES, checked by tests/test_trl_api.py.
"""

from __future__ import annotations

import contextlib
import gc
import textwrap
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from trl import GRPOTrainer
from trl.trainer.utils import add_fused_lm_head, is_async_callable

from gtpo import algorithm
from gtpo.checkpoints import CrashSafeCheckpoints
from gtpo.config import GTPOConfig
from gtpo.distributed import release_deepspeed_groups
from gtpo.reward_checks import checked_reward_function

__all__ = ["PRIVATE_NAMES", "GTPOTrainer", "end_process_group"]

# Private TRL and transformers names this package reads, calls or overrides, and why
# (docs/training.md lists them; tests/test_trl_api.py fails naming one that a release changes).
PRIVATE_NAMES: dict[str, str] = {
    "GRPOTrainer._generate_and_score_completions": "overridden: GTPO's advantages (the algorithm's hook)",
    "GRPOTrainer._get_per_token_logps_and_entropies": "called and wrapped: entropies of the policy",
    "GRPOTrainer._calculate_rewards": "overridden: reward functions checked for the call",
    "GRPOTrainer._metrics": "written: the gtpo/ metrics",
    "GRPOTrainer._name": "class attribute: the model card's method name",
    "GRPOTrainer._paper": "class attribute: the model card's paper and citation",
    "GRPOTrainer._tag_names": "class attribute: the model card's tags",
    "GRPOTrainer._step": "read and restored: TRL's micro-step counter (exact resume)",
    "GRPOTrainer._buffered_inputs": "saved and restored: TRL's generation buffer (exact resume)",
    "GRPOTrainer._get_train_sampler": "overridden: the data order survives a resume",
    "Trainer._get_output_dir": "overridden: checkpoints are written to a staging directory",
    "Trainer._push_from_checkpoint": "overridden: pushed once renamed to the final place",
    "Trainer._save_checkpoint": "overridden: staged, flushed and renamed checkpoints",
    "Trainer._load_optimizer_and_scheduler": "overridden: GTPO's and TRL's state restored on resume",
}

# Forward-pass inputs that TRL passes through for multimodal models (as its own loss does).
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

GTPO_CITATION = textwrap.dedent("""\
    @article{simoni2025gtpo,
        title        = {{GTPO: Stabilizing Group Relative Policy Optimization via Gradient and
                         Entropy Control}},
        author       = {Marco Simoni and Aleksandar Fontana and Giulio Rossolini and Andrea Saracino
                        and Paolo Mori},
        year         = 2025,
        eprint       = {arXiv:2508.03772},
    }""")


def end_process_group() -> None:
    """End a multi-process run: destroy torch.distributed's default process group, if one is up.

    Call it after the last collective, once nothing references the trainer any more. The group's
    gloo threads are then joined here, while the GIL can be taken. Left to interpreter exit, the
    group is freed by DDP's reducer with the GIL held, which hangs (or aborts) whenever a gloo
    thread still needs the GIL to free a finished collective's tensors (pytorch/pytorch#56297).
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        gc.collect()  # the trainer and its callbacks reference each other: free the DDP reducer now
        release_deepspeed_groups(torch.distributed.group.WORLD)
        torch.distributed.destroy_process_group()
        gc.collect()  # groups that only cycles still reference (DeepSpeed's) are freed now


class GTPOTrainer(CrashSafeCheckpoints, GRPOTrainer):
    """Drop-in replacement for GRPOTrainer that trains with GTPO. Takes the same arguments.

    Attributes:
        initial_entropy: H_ini, the mean completion entropy over the first generation batch of
            training (all processes); None before it. Saved with checkpoints.
        last_group: set on the main process by each generation batch, for reports: the batch's
            first group as plain Python values, or None before the first batch. Keys:
            `completion_ids` (list of lists of token ids, padding removed), `rewards` (reward
            function name -> list of rewards), `advantages` (list, TRL's, before GTPO's shaping),
            `conflict` (list of lists of 0/1: conflict tokens), `weights` (list of lists: lambda),
            `prompt` (the prompt's text, or of its last message; None if not text).
    """

    _tag_names: ClassVar[list[str]] = ["trl", "gtpo"]
    _name = "GTPO"
    _paper: ClassVar[dict[str, str]] = {
        "title": "GTPO: Stabilizing Group Relative Policy Optimization via Gradient and Entropy Control",
        "id": "2508.03772",
        "citation": GTPO_CITATION,
    }

    def __init__(self, model, reward_funcs=None, args: GTPOConfig | None = None, **kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = GTPOConfig(f"{str(name).rstrip('/').split('/')[-1]}-GTPO")
        if not isinstance(args, GTPOConfig):
            raise TypeError(f"GTPOTrainer needs a GTPOConfig, got {type(args).__name__}")
        super().__init__(model, reward_funcs, args, **kwargs)
        self.initial_entropy: float | None = None
        self.last_group: dict[str, Any] | None = None
        self._last_rewards: torch.Tensor | None = None
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
        self._last_rewards = rewards  # (all processes' rows, reward functions), for last_group
        return rewards

    # ---------------------------------------------------------------------------------------------
    # GTPO's advantages, computed where whole generation batches and groups are present
    # ---------------------------------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        mode = "train" if self.model.training else "eval"
        with self._entropies_from_trl_pass() as captured:
            output = super()._generate_and_score_completions(inputs)
        completion_mask = output["completion_mask"]
        loss_mask = completion_mask * output["tool_mask"] if "tool_mask" in output else completion_mask
        entropies = captured[0] if captured else self._policy_entropies(output, mode)
        mean_entropy = algorithm.mean_completion_entropy(entropies, loss_mask)
        has_tokens = (loss_mask.sum(dim=1) > 0).float()

        ids, mask, advantages, mean_entropy, has_tokens = self._gather_rows(
            output["completion_ids"], completion_mask, output["advantages"], mean_entropy, has_tokens
        )
        args = self.args
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        initial_entropy = self._initial_entropy(mean_entropy, has_tokens, mode)
        gate = algorithm.entropy_gate(
            mean_entropy, args.entropy_gate, args.entropy_threshold, initial_entropy
        )
        conflict = algorithm.conflict_mask(ids, mask, advantages, group_size, mode=args.conflict_mode)
        local_rows = output["advantages"].shape[0]
        if args.preset == "official":
            weights, divisor = algorithm.official_token_weights(
                ids, mask, advantages, group_size, args.positive_weight, args.negative_weight
            )
            # The authors' loss: summed over completions, not divided by the accumulation steps.
            scale = args.per_device_train_batch_size * args.gradient_accumulation_steps
            token_advantages = algorithm.official_token_advantages(
                advantages, weights, divisor, mean_entropy, gate, args.gamma,
                scale=scale if mode == "train" else local_rows,
            )  # fmt: skip
            output.pop("old_per_token_logps", None)  # their ratio is always 1 (exp(logp - logp.detach()))
        else:
            weights = algorithm.token_weights(
                conflict, advantages, args.positive_weight, args.negative_weight
            )
            token_advantages = algorithm.token_advantages(advantages, weights, mean_entropy, gate, args.gamma)

        start = self.accelerator.process_index * local_rows
        output["advantages"] = token_advantages[start : start + local_rows, : completion_mask.shape[1]]
        self._log_gtpo_metrics(mode, conflict, advantages, mask, gate, mean_entropy, initial_entropy)
        if self.accelerator.is_main_process:
            self.last_group = self._describe_group(
                inputs, ids, mask, advantages, conflict, weights, group_size
            )
        return output

    def _trl_runs_policy_pass(self) -> bool:
        """Whether TRL's batch preparation runs a no-grad pass of the policy (its old log-probs):
        when generation and optimisation steps are misaligned, or for vLLM's sampling correction."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        misaligned = self.args.gradient_accumulation_steps % generate_every != 0
        return misaligned or (self.use_vllm and self.vllm_importance_sampling_correction)

    @contextlib.contextmanager
    def _entropies_from_trl_pass(self) -> Iterator[list[torch.Tensor]]:
        """While TRL prepares a batch, have its old-log-prob pass (the first pass of the policy)
        return entropies too, and collect them: no second pass is needed then."""
        captured: list[torch.Tensor] = []
        if not self._trl_runs_policy_pass():
            yield captured
            return
        original = self._get_per_token_logps_and_entropies

        def first_pass_with_entropies(model, *args, **kwargs):
            if captured:
                return original(model, *args, **kwargs)
            logps, entropies, aux_loss = original(model, *args, **{**kwargs, "compute_entropy": True})
            captured.append(entropies)
            return logps, entropies, aux_loss

        self._get_per_token_logps_and_entropies = first_pass_with_entropies
        try:
            yield captured
        finally:
            del self._get_per_token_logps_and_entropies

    def _policy_entropies(self, output: dict[str, Any], mode: str) -> torch.Tensor:
        """Per-token entropies (B, T) of the policy over the batch, without gradient, through TRL's
        fused head (chunked by the per-device batch size; full logits never held)."""
        ids = torch.cat([output["prompt_ids"], output["completion_ids"]], dim=1)
        attention = torch.cat([output["prompt_mask"], output["completion_mask"]], dim=1)
        batch_size = (
            self.args.per_device_train_batch_size if mode == "train" else self.args.per_device_eval_batch_size
        )
        with torch.no_grad():
            _, entropies, _ = self._get_per_token_logps_and_entropies(
                self.model,
                ids,
                attention,
                output["completion_ids"].shape[1],
                batch_size=batch_size,
                compute_entropy=True,
                **{key: output.get(key) for key in _FORWARD_KEYS},
            )
        return entropies

    def _gather_rows(self, *tensors: torch.Tensor) -> list[torch.Tensor]:
        """Each tensor's rows from every process, in global row order (2-D ones padded with 0 to a
        common length first)."""
        if self.accelerator.num_processes == 1:
            return list(tensors)
        gathered = []
        for tensor in tensors:
            if tensor.dim() == 2:
                tensor = self.accelerator.pad_across_processes(tensor, dim=1, pad_index=0)
            gathered.append(self.accelerator.gather(tensor))
        return gathered

    def _initial_entropy(self, mean_entropy: torch.Tensor, has_tokens: torch.Tensor, mode: str) -> float:
        """H_ini: the mean completion entropy over the first training generation batch (every
        micro-batch of the first optimisation step when steps_per_generation equals the gradient
        accumulation steps, TRL's default; all processes), then kept. Completions without a real
        token have no entropy and are left out; a batch of only such completions leaves it unset
        (and counts as 0 for that batch)."""
        if self.initial_entropy is not None:
            return self.initial_entropy
        count = float(has_tokens.sum())
        value = float((mean_entropy * has_tokens).sum()) / max(count, 1.0)
        if mode == "train" and count > 0:
            self.initial_entropy = value
        return value

    def _log_gtpo_metrics(
        self, mode, conflict, advantages, mask, gate, mean_entropy, initial_entropy
    ) -> None:
        metrics = self._metrics[mode]
        for name, value in algorithm.conflict_shares(conflict, advantages, mask).items():
            metrics[f"gtpo/{name}"].append(value)
        for name, value in algorithm.gate_diagnostics(gate, mean_entropy).items():
            metrics[f"gtpo/{name}"].append(value)
        metrics["gtpo/initial_entropy"].append(initial_entropy)

    def _describe_group(self, inputs, ids, mask, advantages, conflict, weights, group_size) -> dict[str, Any]:
        """The first group of the batch as plain Python values (see the class docstring)."""
        rows = range(group_size)
        lengths = [int(mask[row].sum()) for row in rows]
        rewards = self._last_rewards
        prompt = inputs[0].get("prompt") if inputs else None
        if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
            prompt = prompt[-1].get("content")
        return {
            "completion_ids": [ids[row, : lengths[row]].tolist() for row in rows],
            "rewards": {
                name: rewards[:group_size, k].tolist() for k, name in enumerate(self.reward_func_names)
            },
            "advantages": advantages[:group_size].tolist(),
            "conflict": [conflict[row, : lengths[row]].int().tolist() for row in rows],
            "weights": [weights[row, : lengths[row]].tolist() for row in rows],
            "prompt": prompt if isinstance(prompt, str) else None,
        }

    # ---------------------------------------------------------------------------------------------
    # State kept with checkpoints (gtpo.checkpoints.CrashSafeCheckpoints)
    # ---------------------------------------------------------------------------------------------

    def resume_state(self) -> dict[str, Any]:
        return {"initial_entropy": self.initial_entropy}

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self.initial_entropy = state["initial_entropy"]
