"""GTPO, top to bottom, as pure PyTorch functions on tensors.

GTPO (arXiv 2508.03772) is GRPO with two changes:
  1. conflict tokens (the same token id at the same position in a positively and in a negatively
     rewarded completion of one prompt) get their negative update skipped and their positive one
     amplified (the token weights lambda);
  2. completions whose mean entropy is too high are filtered out (the gate delta), and the mean
     entropy shapes the advantage: A_i - gamma * <H>_i.
No KL term and no reference model.

Layout conventions, used by every function below:
  N  completions in the batch; the G completions of one prompt are consecutive rows
     (rows g*G .. g*G + G - 1 form group g), so N is a multiple of G;
  T  completion length after right padding;
  completion_ids (N, T) long, completion_mask (N, T) with ones on real tokens (EOS included)
  followed by zeros on padding. The pad id may equal a real token id (EOS == PAD is common),
  so padding is recognised by the mask alone, never by an id.

Nothing here allocates a buffer sized by the vocabulary: conflict detection compares token ids
inside each group, O(N * G * T) booleans.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

AdvantageScaling = Literal["group", "batch", "none"]
ConflictMode = Literal["prefix_suffix", "position"]
EntropyGate = Literal["paper", "always", "off"]

LN2 = math.log(2.0)


# --------------------------------------------------------------------------------------------
# Advantages
# --------------------------------------------------------------------------------------------


def group_advantages(
    rewards: torch.Tensor, group_size: int, scaling: AdvantageScaling = "group", eps: float = 1e-4
) -> torch.Tensor:
    """Group-relative advantages A_i = (R_i - mean of its group) / scale.

    rewards: (N,). scaling: "group" divides by the group's standard deviation, "batch" by the
    whole batch's, "none" does not divide (the official GTPO code). Standard deviations are
    unbiased (Bessel), as in TRL; that of a single reward is 0, so its advantage is 0. Returns (N,).
    """
    grouped = rewards.view(-1, group_size)
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).view(-1)
    if scaling == "none":
        return centred
    if scaling == "group":
        std = grouped.std(dim=1, correction=int(group_size > 1)).repeat_interleave(group_size)
    elif scaling == "batch":
        std = rewards.std(correction=int(rewards.numel() > 1)).expand_as(rewards)
    else:
        raise ValueError(f"scaling must be 'group', 'batch' or 'none', got {scaling!r}")
    return centred / (std + eps)


# --------------------------------------------------------------------------------------------
# Conflict tokens
# --------------------------------------------------------------------------------------------


def _raw_conflicts(ids: torch.Tensor, valid: torch.Tensor, advantages: torch.Tensor, group_size: int):
    """Raw conflicts: token (i, t) of an active completion whose id also stands at position t in
    at least one positive and at least one negative completion of its group (itself included).

    ids, valid: (N, T); advantages: (N,). Returns bool (N, T). Memory O(N * G * T).
    """
    n, t = ids.shape
    ids = ids.view(-1, group_size, t)
    valid = valid.view(-1, group_size, t)
    adv = advantages.view(-1, group_size, 1)
    positive = valid & (adv > 0)  # (B, G, T): real tokens of positive completions
    negative = valid & (adv < 0)
    same = ids.unsqueeze(2) == ids.unsqueeze(1)  # (B, G_i, G_j, T): id of i equals id of j at t
    in_positive = (same & positive.unsqueeze(1)).any(dim=2)  # (B, G, T)
    in_negative = (same & negative.unsqueeze(1)).any(dim=2)
    active = valid & (adv != 0)
    return (in_positive & in_negative & active).view(n, t)


def _reverse_rows(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse the first lengths[i] entries of each row i, leaving padding in place.

    x: (N, T); lengths: (N,). Position t of the result holds x[i, lengths[i] - 1 - t] for
    t < lengths[i]. Applying it twice gives x back on the real positions.
    """
    t = torch.arange(x.shape[1], device=x.device).unsqueeze(0)
    source = (lengths.unsqueeze(1) - 1 - t).clamp(min=0)
    source = torch.where(t < lengths.unsqueeze(1), source, t)
    return x.gather(1, source)


def _leading_run(flags: torch.Tensor) -> torch.Tensor:
    """Bool (N, T): the unbroken run of True starting at position 0 of each row."""
    return flags.to(torch.int32).cumprod(dim=1).bool()


def _conflict_runs(
    completion_ids: torch.Tensor, completion_mask: torch.Tensor, advantages: torch.Tensor, group_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw conflicts and the two runs of the prefix_suffix definition, each bool (N, T).

    prefix: the unbroken run of raw conflicts from the first completion token (positions
    counted from the start). suffix: the unbroken run ending at the last real token, where
    positions are counted from each completion's own end (EOS included).
    """
    valid = completion_mask.bool()
    lengths = valid.sum(dim=1)
    raw = _raw_conflicts(completion_ids, valid, advantages, group_size)
    prefix = _leading_run(raw)
    ids_from_end = _reverse_rows(completion_ids, lengths)
    # The real tokens form a prefix of each row, so reversing them leaves the mask unchanged.
    raw_from_end = _raw_conflicts(ids_from_end, valid, advantages, group_size)
    suffix = _reverse_rows(_leading_run(raw_from_end), lengths)
    return raw, prefix, suffix


def conflict_mask(
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    advantages: torch.Tensor,
    group_size: int,
    mode: ConflictMode = "prefix_suffix",
) -> torch.Tensor:
    """Which tokens are conflict tokens. Only completions with A_i != 0 take part.

    completion_ids, completion_mask: (N, T), right padded; advantages: (N,).
    mode "prefix_suffix" (official code): raw conflicts in the unbroken run from the start or in
    the unbroken run to the end (counted from each completion's end). mode "position" (v1
    abstract): every raw conflict, positions counted from the start. Returns bool (N, T).
    """
    if mode == "position":
        return _raw_conflicts(completion_ids, completion_mask.bool(), advantages, group_size)
    if mode == "prefix_suffix":
        _, prefix, suffix = _conflict_runs(completion_ids, completion_mask, advantages, group_size)
        return prefix | suffix
    raise ValueError(f"mode must be 'prefix_suffix' or 'position', got {mode!r}")


def token_weights(
    conflict: torch.Tensor,
    advantages: torch.Tensor,
    positive_weight: float = 2.0,
    negative_weight: float = 0.0,
) -> torch.Tensor:
    """The paper's lambda: positive_weight on conflict tokens of positive completions,
    negative_weight on conflict tokens of negative completions, 1 everywhere else.

    conflict: bool (N, T); advantages: (N,) (the sign is what counts). Returns float (N, T).
    """
    sign = advantages.unsqueeze(1)
    weights = torch.ones(conflict.shape, dtype=torch.float32, device=conflict.device)
    weights = torch.where(conflict & (sign > 0), positive_weight, weights)
    return torch.where(conflict & (sign < 0), negative_weight, weights)


def official_token_weights(
    completion_ids: torch.Tensor,
    completion_mask: torch.Tensor,
    advantages: torch.Tensor,
    group_size: int,
    positive_weight: float = 2.0,
    negative_weight: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official code's lambda and per-completion divisor.

    lambda = lambda_prefix * lambda_suffix, each built like token_weights from one run, so a
    positive token in both runs weighs 2 * 2 = 4; zero on padding (the code multiplies by the
    mask). Divisor n_i = max(1, longest of the prefix and suffix runs) for active completions
    and 0 for zero-advantage ones (the loss clamps it to at least 1).
    Returns (float (N, T), long (N,)).
    """
    _, prefix, suffix = _conflict_runs(completion_ids, completion_mask, advantages, group_size)
    weights = token_weights(prefix, advantages, positive_weight, negative_weight)
    weights = weights * token_weights(suffix, advantages, positive_weight, negative_weight)
    weights = weights * completion_mask.to(weights.dtype)
    longest = torch.maximum(prefix.sum(dim=1), suffix.sum(dim=1)).clamp(min=1)
    divisor = torch.where(advantages != 0, longest, torch.zeros_like(longest))
    return weights, divisor.long()


# --------------------------------------------------------------------------------------------
# Entropy: mean completion entropy, the gate delta, shaped advantages
# --------------------------------------------------------------------------------------------


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dimension, in float32; tokens with logit -inf
    (masked out of the vocabulary) contribute 0. logits: (..., V). Returns (...)."""
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    finite_log_probs = log_probs.clamp(min=torch.finfo(log_probs.dtype).min)  # 0 * -inf would be NaN
    return -(log_probs.exp() * finite_log_probs).sum(dim=-1)


def mean_completion_entropy(entropies: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """<H>_i: mean per-token entropy over each completion's real tokens, without gradient.

    entropies, completion_mask: (N, T). Returns (N,); 0 for an empty completion.
    """
    mask = completion_mask.to(torch.float32)
    total = (entropies.detach().float() * mask).sum(dim=1)
    return total / mask.sum(dim=1).clamp(min=1.0)


def entropy_gate(
    mean_entropy: torch.Tensor,
    rule: EntropyGate = "paper",
    threshold: float | None = None,
    initial_entropy: float | None = None,
) -> torch.Tensor:
    """The gate delta_i in {0, 1} per completion. mean_entropy: (N,). Returns float (N,).

    "paper": if the entropy measured at the start of training (initial_entropy, H_ini) exceeds
      ln 2, every completion passes; otherwise completions with <H>_i > ln 2 are dropped.
      threshold overrides ln 2 in both places.
    "always" (official code): drop completions with <H>_i > threshold (default 0.7), always.
    "off": every completion passes (the paper's ablation without delta).
    """
    passes = torch.ones_like(mean_entropy, dtype=torch.float32)
    if rule == "off":
        return passes
    if rule == "paper":
        if initial_entropy is None:
            raise ValueError("entropy_gate='paper' needs initial_entropy (H_ini)")
        limit = LN2 if threshold is None else threshold
        if initial_entropy > limit:
            return passes
        return (mean_entropy <= limit).float()
    if rule == "always":
        limit = 0.7 if threshold is None else threshold
        return (mean_entropy <= limit).float()
    raise ValueError(f"rule must be 'paper', 'always' or 'off', got {rule!r}")


def shaped_advantages(
    advantages: torch.Tensor, mean_entropy: torch.Tensor, gate: torch.Tensor, gamma: float = 0.1
) -> torch.Tensor:
    """delta_i * (A_i - gamma * <H>_i), a detached scalar per completion. All (N,)."""
    return (gate * (advantages - gamma * mean_entropy)).detach()


# --------------------------------------------------------------------------------------------
# GTPO as a per-token advantage (what GTPOTrainer hands to TRL's loss)
# --------------------------------------------------------------------------------------------


def token_advantages(
    advantages: torch.Tensor,
    weights: torch.Tensor,
    mean_entropy: torch.Tensor,
    gate: torch.Tensor,
    gamma: float = 0.1,
) -> torch.Tensor:
    """lambda_{i,t} * delta_i * (A_i - gamma * <H>_i): the advantage of token t of completion i.

    advantages, mean_entropy, gate: (N,); weights: lambda (N, T). Returns detached float (N, T).
    Since lambda >= 0, any loss that multiplies a token's advantage by a function of that token's
    ratio (PPO's clip included: min(r*l*A, clip(r)*l*A) = l * min(r*A, clip(r)*A)) gives the
    GTPO objective from it; gtpo_loss below is that objective written out, the reference.
    """
    return (weights * shaped_advantages(advantages, mean_entropy, gate, gamma).unsqueeze(1)).detach()


def official_token_advantages(
    advantages: torch.Tensor,
    weights: torch.Tensor,
    divisor: torch.Tensor,
    mean_entropy: torch.Tensor,
    gate: torch.Tensor,
    gamma: float = 0.1,
    scale: float = 1.0,
) -> torch.Tensor:
    """The official loss as a per-token advantage for a per-completion-mean loss (TRL's "grpo"):
    lambda_{i,t} * delta_i * (A_i - gamma * <H>_i) / max(1, n_i) * scale.

    A per-completion-mean loss averages over the B completions of a micro-batch and divides by the
    G_acc accumulation steps; the official loss sums over completions and is not divided, so
    scale = B * G_acc makes the two equal, value and gradient (the ratio being 1).
    weights, divisor: from official_token_weights. Returns detached float (N, T).
    """
    per_completion = token_advantages(advantages, weights, mean_entropy, gate, gamma)
    return per_completion * (scale / divisor.clamp(min=1).to(per_completion.dtype)).unsqueeze(1)


# --------------------------------------------------------------------------------------------
# Losses
# --------------------------------------------------------------------------------------------


def clipped_policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> torch.Tensor:
    """Per-token PPO loss -min(r * A, clip(r, 1 - eps_low, 1 + eps_high) * A), r = pi / pi_old.

    logps, old_logps: (N, T); advantages: (N,) or (N, T). On-policy (old_logps = logps
    detached) r is 1 in value and carries the gradient of log pi. The ratio is taken in float32,
    so bf16/fp16 log-probs do not overflow it. Returns (N, T).
    """
    if advantages.dim() == 1:
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp((logps - old_logps).float())
    clipped = torch.clamp(ratio, 1.0 - epsilon_low, 1.0 + epsilon_high)
    return -torch.minimum(ratio * advantages, clipped * advantages)


def sequence_mean(per_token: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Mean over each completion's real tokens. (N, T) -> (N,)."""
    mask = completion_mask.to(per_token.dtype)
    return (per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def _real_only(values: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """values with padding positions set to 0, so that whatever a model produced there (even
    inf or NaN) reaches neither the loss nor its gradient."""
    return values.masked_fill(~completion_mask.bool(), 0.0)


def k3_kl(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(pi || pi_ref): exp(ref - logp) - (ref - logp) - 1. (N, T)."""
    delta = ref_logps - logps
    return torch.exp(delta) - delta - 1.0


def gtpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    completion_mask: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
    importance_weights: torch.Tensor | None = None,
    beta: float = 0.0,
    ref_logps: torch.Tensor | None = None,
) -> torch.Tensor:
    """The paper's loss: -(1/N) sum_i (1/|o_i|) sum_t lambda_{i,t} * clipped(r_{i,t}, A'_i).

    The trainer does not call it: it hands token_advantages to TRL's loss. This is the objective
    written out, the reference that path is tested against (tests/test_equivalence.py).

    advantages: the shaped A'_i = delta_i * (A_i - gamma <H>_i), (N,); weights: lambda (N, T).
    Averaging over all N rows equals the paper's 1/G per group averaged over groups.
    Optional extras, both off in the paper: importance_weights ((N, T) or (N, 1)) multiply the
    policy term, as for a sampler/trainer mismatch (vLLM); beta > 0 adds beta * k3 KL to
    ref_logps. Padding (completion_mask 0) takes no part, whatever its values. Returns a scalar.
    """
    logps, old_logps = _real_only(logps, completion_mask), _real_only(old_logps, completion_mask)
    per_token = clipped_policy_loss(logps, old_logps, advantages, epsilon_low, epsilon_high) * weights
    if importance_weights is not None:
        per_token = per_token * importance_weights
    if beta != 0.0:
        if ref_logps is None:
            raise ValueError("a loss with beta != 0 needs ref_logps")
        per_token = per_token + beta * k3_kl(logps, _real_only(ref_logps, completion_mask))
    return sequence_mean(per_token, completion_mask).mean()


def official_gtpo_loss(
    logps: torch.Tensor,
    advantages: torch.Tensor,
    weights: torch.Tensor,
    divisor: torch.Tensor,
    completion_mask: torch.Tensor,
) -> torch.Tensor:
    """The official code's loss: sum_i -(1/|o_i|) sum_t r_{i,t} A'_i lambda_{i,t} / max(1, n_i).
    The reference for official_token_advantages through TRL's loss (the trainer's path).

    The ratio r = exp(logps - logps.detach()) is 1 in value (no clipping); completions are
    summed, not averaged. advantages: shaped (N,); weights, divisor from
    official_token_weights. Padding takes no part, whatever its values. Returns a scalar.
    """
    logps = _real_only(logps, completion_mask)
    ratio = torch.exp(logps - logps.detach())
    per_token = -ratio * advantages.unsqueeze(1) * weights
    return (sequence_mean(per_token, completion_mask) / divisor.clamp(min=1)).sum()


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    completion_mask: torch.Tensor,
    beta: float = 0.0,
    ref_logps: torch.Tensor | None = None,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> torch.Tensor:
    """Plain GRPO from the same pieces: every token weight 1, no gate, unshaped advantages,
    plus beta * k3 KL to a reference model when beta > 0. Returns a scalar."""
    weights = torch.ones_like(logps)
    return gtpo_loss(
        logps,
        old_logps,
        advantages,
        weights,
        completion_mask,
        epsilon_low,
        epsilon_high,
        beta=beta,
        ref_logps=ref_logps,
    )


# --------------------------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------------------------


def conflict_shares(
    conflict: torch.Tensor, advantages: torch.Tensor, completion_mask: torch.Tensor
) -> dict[str, float]:
    """Shares of real tokens that are conflict tokens of positive / negative completions."""
    real = completion_mask.bool()
    total = max(int(real.sum()), 1)
    sign = advantages.unsqueeze(1)
    return {
        "positive_conflict_share": float((conflict & real & (sign > 0)).sum()) / total,
        "negative_conflict_share": float((conflict & real & (sign < 0)).sum()) / total,
    }


def clipped_tokens(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    epsilon_low: float = 0.2,
    epsilon_high: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens whose update the PPO clip stops: r < 1 - eps_low with A < 0 (low) and r > 1 + eps_high
    with A > 0 (high). logps, old_logps: (N, T); advantages: (N,). Returns two bool (N, T)."""
    ratio = torch.exp((logps - old_logps).float())
    sign = advantages.unsqueeze(1)
    return (ratio < 1.0 - epsilon_low) & (sign < 0), (ratio > 1.0 + epsilon_high) & (sign > 0)


def shaping_only(
    advantages: torch.Tensor, gate: torch.Tensor, mean_entropy: torch.Tensor, gamma: float = 0.1
) -> torch.Tensor:
    """Completions that the update moves by the entropy shaping alone: A_i = 0 (all rewards of the
    group equal, or none scored), kept by the gate, gamma * <H>_i != 0, so their advantage is
    -gamma * <H>_i. All (N,). Returns bool (N,)."""
    return (advantages == 0) & (gate > 0) & (gamma * mean_entropy != 0)


def gate_diagnostics(gate: torch.Tensor, mean_entropy: torch.Tensor) -> dict[str, float]:
    """Share of completions the gate dropped, and the batch's mean completion entropy."""
    return {
        "gated_out_share": float(1.0 - gate.float().mean()),
        "mean_entropy": float(mean_entropy.mean()),
    }
