"""GTPOTrainer: TRL's GRPOTrainer with GTPO's conflict weights, entropy gate and shaping.

GTPO enters as a per-token advantage, lambda_{i,t} * delta_i * (A_i - gamma * <H>_i), which TRL's
own `_compute_loss` consumes for every loss type (gtpo.algorithm has the formulas). The conflict
weights lambda need whole groups, so they are built in `_generate_and_score_completions`, where TRL
has generated, scored and computed advantages A_i for a whole generation batch (gathered from
every process: a group can span processes). The gate delta and the shaping need each completion's
mean entropy <H>_i and H_ini; which forward pass of the policy supplies the entropies:

* TRL's old-log-prob pass, when it runs one (generation and optimisation steps misaligned, or
  vLLM's importance-sampling correction), asked for entropies too: the advantages are complete in
  the batch, as TRL's are;
* the first training generation batch (and every evaluation batch): one more no-grad pass, which
  measures H_ini;
* otherwise (aligned steps, TRL's default): the loss's own forward pass. The batch carries lambda
  and A_i per row (TRL's shuffle and split keep them with their rows), and `compute_loss` hands
  TRL's loss a batch whose "advantages" are completed, when TRL reads them, from the entropies
  its forward pass of the policy has just returned. No extra pass runs.

`compute_loss` also watches the run: a warning line when the gate drops (nearly) every
completion, or shaping alone moves the policy, for several steps (GTPOConfig.stall_*).
`_calculate_rewards` checks each reward function for the call (gtpo.reward_checks); checkpoints
are crash-safe and resume exactly (gtpo.checkpoints.CrashSafeCheckpoints).
Every private TRL/transformers name used is in PRIVATE_NAMES, checked by tests/test_trl_api.py.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import textwrap
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import torch
from trl import GRPOTrainer
from trl.trainer.utils import add_fused_lm_head, is_async_callable

from gtpo import algorithm
from gtpo.checkpoints import CrashSafeCheckpoints
from gtpo.config import GTPOConfig
from gtpo.distributed import release_deepspeed_groups
from gtpo.reward_checks import check_prompt_column, checked_reward_function

__all__ = ["PRIVATE_NAMES", "GTPOTrainer", "end_process_group"]

# Private TRL and transformers names this package reads, calls or overrides, and why
# (docs/training.md lists them; tests/test_trl_api.py fails naming one that a release changes).
PRIVATE_NAMES: dict[str, str] = {
    "GRPOTrainer._generate_and_score_completions": "overridden: GTPO's advantages (the algorithm's hook)",
    "GRPOTrainer._get_per_token_logps_and_entropies": (
        "called and wrapped: entropies of the policy (H_ini pass, TRL's old-log-prob pass, the loss's pass)"
    ),
    "GRPOTrainer._calculate_rewards": "overridden: reward functions checked for the call",
    "GRPOTrainer._metrics": "written: the gtpo/ metrics",
    "GRPOTrainer._logs": "written: the completions table's advantages are GTPO's",
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

logger = logging.getLogger(__name__)


def _loss_mask(batch: Mapping[str, Any]) -> torch.Tensor:
    """The tokens TRL's loss trains on: the completion's, minus tool outputs."""
    mask = batch["completion_mask"]
    return mask * batch["tool_mask"] if "tool_mask" in batch else mask


class _AdvantagesAtLossTime(Mapping):
    """A batch whose "advantages" are computed (once) when TRL's loss first reads them."""

    def __init__(self, batch: Mapping[str, Any], compute: Callable[[], torch.Tensor]) -> None:
        self._batch = batch
        self._compute = compute
        self._advantages: torch.Tensor | None = None

    def __getitem__(self, key: str) -> Any:
        if key != "advantages":
            return self._batch[key]
        if self._advantages is None:
            self._advantages = self._compute()
        return self._advantages

    def __contains__(self, key: object) -> bool:
        return key == "advantages" or key in self._batch

    def __iter__(self) -> Iterator[str]:
        yield from self._batch
        if "advantages" not in self._batch:
            yield "advantages"

    def __len__(self) -> int:
        return len(self._batch) + ("advantages" not in self._batch)


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
        check_prompt_column(kwargs.get("train_dataset"))  # TRL would fail at its first step
        super().__init__(model, reward_funcs, args, **kwargs)
        self.initial_entropy: float | None = None
        self.last_group: dict[str, Any] | None = None
        self._last_rewards: torch.Tensor | None = None
        self._table_start: int | None = None  # where TRL's completions table holds this batch
        self._stall_counts: torch.Tensor | None = None
        self._stall_streaks: dict[str, list[int]] = {"gated": [], "shaping": []}
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
        entropies = captured[0] if captured else None
        if entropies is None and (mode == "eval" or self.initial_entropy is None):
            entropies = self._policy_entropies(output, mode)  # H_ini, or an evaluation batch
        local_rows = output["advantages"].shape[0]
        ids, mask, advantages = self._gather_rows(
            output["completion_ids"], completion_mask, output["advantages"]
        )
        args = self.args
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        conflict = algorithm.conflict_mask(ids, mask, advantages, group_size, mode=args.conflict_mode)
        divisor = None
        if args.preset == "official":
            weights, divisor = algorithm.official_token_weights(
                ids, mask, advantages, group_size, args.positive_weight, args.negative_weight
            )
            output.pop("old_per_token_logps", None)  # their ratio is always 1 (exp(logp - logp.detach()))
        else:
            weights = algorithm.token_weights(
                conflict, advantages, args.positive_weight, args.negative_weight
            )
        for name, value in algorithm.conflict_shares(conflict, advantages, mask).items():
            self._metrics[mode][f"gtpo/{name}"].append(value)
        if self.accelerator.is_main_process:
            self.last_group = self._describe_group(
                inputs, ids, mask, advantages, conflict, weights, group_size
            )
        first = self.accelerator.process_index * local_rows
        rows = slice(first, first + local_rows)
        width = completion_mask.shape[1]
        output["gtpo_sequence_advantages"] = output.pop("advantages")
        if entropies is None:  # completed at loss time, from the loss's own forward pass
            output["gtpo_token_weights"] = weights[rows, :width]
            if divisor is not None:
                output["gtpo_divisor"] = divisor[rows]
            output["gtpo_row"] = torch.arange(rows.start, rows.stop, device=completion_mask.device)
            self._table_start = len(self._logs["advantages"]) - ids.shape[0]
            self._fill_trained_advantages(torch.arange(ids.shape[0]), torch.full((ids.shape[0],), math.nan))
            self._metrics[mode]["gtpo/initial_entropy"].append(self.initial_entropy)
            return output
        self._table_start = None
        mean_entropy = algorithm.mean_completion_entropy(entropies, _loss_mask(output))
        has_tokens = (_loss_mask(output).sum(dim=1) > 0).float()
        mean_entropy, has_tokens = self._gather_rows(mean_entropy, has_tokens)
        initial_entropy = self._initial_entropy(mean_entropy, has_tokens, mode)
        token_advantages, gate, shaped = self._gtpo_advantages(
            advantages, weights, divisor, mean_entropy, initial_entropy, mode, local_rows
        )
        output["advantages"] = token_advantages[rows, :width]
        output["gtpo_gate"] = gate[rows]
        output["gtpo_shaping_only"] = self._shaping_only(advantages, gate, mean_entropy)[rows]
        self._log_gate_metrics(mode, advantages, gate, mean_entropy)
        self._metrics[mode]["gtpo/initial_entropy"].append(initial_entropy)
        self._table_start = len(self._logs["advantages"]) - ids.shape[0]
        self._fill_trained_advantages(torch.arange(ids.shape[0]), shaped)
        self._table_start = None
        return output

    def _gtpo_advantages(self, advantages, weights, divisor, mean_entropy, initial_entropy, mode, rows):
        """GTPO's (N, T) token advantages, the gate delta (N,) and the shaped sequence advantages
        delta_i * (A_i - gamma * <H>_i) (N,), for the preset; `rows` is the local batch size (the
        official loss's scale in evaluation)."""
        args = self.args
        gate = algorithm.entropy_gate(
            mean_entropy, args.entropy_gate, args.entropy_threshold, initial_entropy
        )
        shaped = algorithm.shaped_advantages(advantages, mean_entropy, gate, args.gamma)
        if divisor is None:
            token_advantages = algorithm.token_advantages(advantages, weights, mean_entropy, gate, args.gamma)
            return token_advantages, gate, shaped
        # The authors' loss: summed over completions, not divided by the accumulation steps.
        scale = rows
        if mode == "train":
            scale = args.per_device_train_batch_size * args.gradient_accumulation_steps
        token_advantages = algorithm.official_token_advantages(
            advantages, weights, divisor, mean_entropy, gate, args.gamma, scale=scale
        )
        return token_advantages, gate, shaped

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

    def _shaping_only(self, advantages: torch.Tensor, gate: torch.Tensor, mean_entropy: torch.Tensor):
        return algorithm.shaping_only(advantages, gate, mean_entropy, self.args.gamma)

    def _log_gate_metrics(self, mode, advantages, gate, mean_entropy) -> None:
        metrics = self._metrics[mode]
        for name, value in algorithm.gate_diagnostics(gate, mean_entropy).items():
            metrics[f"gtpo/{name}"].append(value)
        shaping_only = self._shaping_only(advantages, gate, mean_entropy)
        metrics["gtpo/shaping_only_share"].append(float(shaping_only.float().mean()))

    def _fill_trained_advantages(self, rows: torch.Tensor, values: torch.Tensor) -> None:
        """Write GTPO's shaped advantages delta_i * (A_i - gamma * <H>_i) of global batch rows
        `rows` into TRL's completions table (while it holds this generation batch) and into
        last_group, on the main process; NaN marks a value not known yet."""
        if not self.accelerator.is_main_process:
            return
        table = self._logs["advantages"]
        for row, value in zip(rows.tolist(), values.tolist(), strict=True):
            if self._table_start is not None and 0 <= self._table_start + row < len(table):
                table[self._table_start + row] = value
            if self.last_group is not None and row < len(self.last_group["advantages"]):
                self.last_group["advantages"][row] = None if math.isnan(value) else value

    # ---------------------------------------------------------------------------------------------
    # The loss: TRL's, on advantages completed from its own forward pass when the batch asks for it
    # ---------------------------------------------------------------------------------------------

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        if "gtpo_token_weights" not in inputs:  # advantages complete in the batch
            loss = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            # A generation buffer saved by gtpo before the stall guard existed lacks its counts; its
            # advantages are complete all the same, so it trains as saved, unwatched.
            if mode == "train" and "gtpo_gate" in inputs:
                self._watch(inputs["gtpo_gate"], inputs["gtpo_shaping_only"])
            return loss
        with self._entropies_of_policy_pass(model) as captured:
            completed: dict[str, torch.Tensor] = {}
            loss_inputs = _AdvantagesAtLossTime(
                inputs, lambda: self._loss_time_advantages(inputs, captured, mode, completed)
            )
            loss = super().compute_loss(model, loss_inputs, return_outputs, num_items_in_batch)
        if not completed:
            raise RuntimeError(
                "GTPOTrainer: TRL's loss did not read the batch's advantages; this TRL version is not "
                "supported (docs/training.md, private TRL names)"
            )
        if mode == "train":
            self._watch(completed["gate"], completed["shaping_only"])
        return loss

    @contextlib.contextmanager
    def _entropies_of_policy_pass(self, model) -> Iterator[list[torch.Tensor]]:
        """While TRL computes the loss, collect the entropies of its forward pass of the policy
        (`model`, the model the loss is computed for); a pass of any other model, such as a
        reference model, is left alone."""
        captured: list[torch.Tensor] = []
        original = self._get_per_token_logps_and_entropies
        reference = getattr(self, "ref_model", None)

        def policy_pass_with_entropies(called_model, *args, **kwargs):
            result = original(called_model, *args, **kwargs)
            is_policy = called_model is model and called_model is not reference
            if is_policy and not captured and result[1] is not None:
                captured.append(result[1])
            return result

        self._get_per_token_logps_and_entropies = policy_pass_with_entropies
        try:
            yield captured
        finally:
            del self._get_per_token_logps_and_entropies

    def _loss_time_advantages(self, batch, captured, mode, completed) -> torch.Tensor:
        """GTPO's (B, T) advantages of a micro-batch, from the entropies of the loss's own forward
        pass (detached): gate, shaping and the lambda the batch carries."""
        if not captured:
            raise RuntimeError(
                "GTPOTrainer: TRL's loss read the advantages before its forward pass of the policy "
                "returned entropies; this TRL version is not supported (docs/training.md)"
            )
        advantages = batch["gtpo_sequence_advantages"]
        mean_entropy = algorithm.mean_completion_entropy(captured[0], _loss_mask(batch))
        token_advantages, gate, shaped = self._gtpo_advantages(
            advantages, batch["gtpo_token_weights"], batch.get("gtpo_divisor"), mean_entropy,
            self.initial_entropy, mode, advantages.shape[0],
        )  # fmt: skip
        completed["gate"] = gate
        completed["shaping_only"] = self._shaping_only(advantages, gate, mean_entropy)
        rows, advantages, gate, mean_entropy, shaped = self._gather_rows(
            batch["gtpo_row"], advantages, gate, mean_entropy, shaped
        )
        self._log_gate_metrics(mode, advantages, gate, mean_entropy)
        self._fill_trained_advantages(rows, shaped)
        return token_advantages

    # ---------------------------------------------------------------------------------------------
    # A run that stops learning says so (GTPOConfig.stall_warning, stall_share, stall_steps)
    # ---------------------------------------------------------------------------------------------

    def _watch(self, gate: torch.Tensor, shaping_only: torch.Tensor) -> None:
        """Count a micro-batch's completions; at the end of an optimisation step, warn once per
        stretch of stall_steps steps in which the gate dropped at least stall_share of them, or
        shaping alone moved at least stall_share of those it kept."""
        if not self.args.stall_warning:
            return
        counts = torch.stack(
            [(1 - gate).sum(), torch.tensor(float(gate.numel()), device=gate.device),
             shaping_only.float().sum(), gate.sum()]
        ).float()  # fmt: skip
        self._stall_counts = counts if self._stall_counts is None else self._stall_counts + counts
        if not self.accelerator.sync_gradients:
            return
        dropped, total, shaping_only_count, kept = self.accelerator.reduce(self._stall_counts, "sum").tolist()
        self._stall_counts = None
        step = self.state.global_step + 1
        share = self.args.stall_share
        gated_out = total > 0 and dropped / total >= share
        shaping_alone = kept > 0 and shaping_only_count / kept >= share
        for kind, stalled in (("gated", gated_out), ("shaping", shaping_alone)):
            streak = self._stall_streaks[kind]
            if not stalled:
                streak.clear()
                continue
            streak.append(step)
            if len(streak) == self.args.stall_steps and self.accelerator.is_main_process:
                logger.warning(self._stall_message(kind, streak[0], step))

    def _stall_message(self, kind: str, first: int, last: int) -> str:
        args = self.args
        steps = f"steps {first}-{last}" if first != last else f"step {last}"
        share = (
            "every completion"
            if args.stall_share >= 1
            else f"at least {args.stall_share:.0%} of the completions"
        )
        initial = "unset" if self.initial_entropy is None else f"{self.initial_entropy:.3f}"
        if kind == "gated":
            return (
                f"GTPO: the entropy gate dropped {share} in {steps} "
                f"(gtpo/gated_out_share >= {args.stall_share:g}; H_ini {initial}, entropy_threshold "
                f"{args.entropy_threshold:.3g}, entropy_gate {args.entropy_gate!r}): those steps train on "
                "nothing; raise entropy_threshold (or set entropy_gate='off'), or lower the learning rate"
            )
        return (
            f"GTPO: shaping alone moved {share} the gate kept in {steps} "
            f"(gtpo/shaping_only_share; their groups' rewards are all equal, so the update is "
            f"-gamma * <H>, gamma {args.gamma:g}, with no reward signal; H_ini {initial}, "
            f"entropy_threshold {args.entropy_threshold:.3g}): check the reward functions' rewards/ "
            "metrics, make the prompts easier or harder, raise num_generations, or set gamma=0"
        )

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
            "advantages": [None] * group_size,  # GTPO's, filled by _fill_trained_advantages
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
