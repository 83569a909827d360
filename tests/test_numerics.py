"""Crafted batches at the edges: all-equal rewards, EOS-only completions, completions cut at the
maximum length, empty (fully masked) rows, bf16/fp16 logits. No NaN or inf reaches a loss or a
gradient, and the values stay sensible."""

import math

import pytest
import torch

from gtpo import algorithm as A

G, T, V, EOS = 4, 6, 7, 0
DTYPES = [torch.float32, torch.bfloat16, torch.float16]


def _batch(lengths: list[int], eos: bool = True, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two groups of G right-padded completions: ids (2G, T) and mask; a completion of length L
    ends with EOS at L - 1 when eos is set (a length-T completion without EOS was cut off)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, V, (2 * G, T), generator=generator)
    ids[:, 0] = 3  # a shared first token, so conflicts exist
    mask = torch.zeros(2 * G, T, dtype=torch.long)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
        if eos and length > 0:
            ids[row, length - 1] = EOS
    ids[mask == 0] = EOS  # padding with the EOS id, as when pad == eos
    return ids, mask


SCENARIOS = {
    "mixed": ([2, 6, 1, 4, 3, 5, 6, 2], True, [10.0, 0.0, 20.0, 1.0, 0.0, 10.0, 1.5, 0.0]),
    "all_equal_rewards": ([2, 6, 1, 4, 3, 5, 6, 2], True, [10.0] * 8),
    "eos_only": ([1] * 8, True, [10.0, 0.0, 20.0, 1.0, 0.0, 10.0, 1.5, 0.0]),
    "cut_at_max_length": ([6, 6, 3, 6, 6, 2, 6, 6], False, [10.0, 0.0, 20.0, 1.0, 0.0, 10.0, 1.5, 0.0]),
    "all_at_max_length": ([6] * 8, True, [10.0, 0.0, 20.0, 1.0, 0.0, 10.0, 1.5, 0.0]),
    "some_empty_rows": ([0, 6, 1, 0, 3, 0, 0, 2], True, [10.0, 0.0, 20.0, 1.0, 0.0, 10.0, 1.5, 0.0]),
    "all_empty_rows": ([0] * 8, True, [10.0, 0.0, 20.0, 1.0, 0.0, 10.0, 1.5, 0.0]),
}


def _loss(kind: str, logits: torch.Tensor, ids, mask, rewards, gamma: float = 0.1) -> torch.Tensor:
    """GTPO (paper or official preset) or GRPO from logits, through gtpo.algorithm end to end."""
    logps = torch.log_softmax(logits, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
    mean_entropy = A.mean_completion_entropy(A.token_entropy(logits), mask)
    if kind == "grpo":
        return A.grpo_loss(logps, logps.detach(), A.group_advantages(rewards, G), mask)
    if kind == "official":
        advantages = A.group_advantages(rewards, G, scaling="none")
        gate = A.entropy_gate(mean_entropy, "always", 100.0)
        shaped = A.shaped_advantages(advantages, mean_entropy, gate, gamma)
        weights, divisor = A.official_token_weights(ids, mask, advantages, G)
        return A.official_gtpo_loss(logps, shaped, weights, divisor, mask)
    advantages = A.group_advantages(rewards, G)
    gate = A.entropy_gate(mean_entropy, "paper", initial_entropy=float(mean_entropy.mean()))
    shaped = A.shaped_advantages(advantages, mean_entropy, gate, gamma)
    weights = A.token_weights(A.conflict_mask(ids, mask, advantages, G), advantages)
    return A.gtpo_loss(logps, logps.detach(), shaped, weights, mask)


def _logits(dtype: torch.dtype, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(2 * G, T, V, generator=generator)).to(dtype).requires_grad_()


@pytest.mark.parametrize("kind", ["paper", "official", "grpo"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_nan_in_loss_or_gradient(scenario, dtype, kind):
    lengths, eos, rewards = SCENARIOS[scenario]
    ids, mask = _batch(lengths, eos)
    logits = _logits(dtype)
    loss = _loss(kind, logits, ids, mask, torch.tensor(rewards))
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.isfinite(logits.grad.float()).all()
    empty = mask.sum(dim=1) == 0
    assert (logits.grad[empty] == 0).all()  # an empty completion moves nothing
    if empty.all():
        assert loss.item() == 0.0


@pytest.mark.parametrize("kind", ["paper", "official", "grpo"])
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_all_equal_rewards_give_no_policy_gradient(dtype, kind):
    """Zero advantages everywhere: without entropy shaping (gamma 0) the gradient is exactly 0;
    with it, only the -gamma <H> term pushes (down on every completion)."""
    lengths, eos, rewards = SCENARIOS["all_equal_rewards"]
    ids, mask = _batch(lengths, eos)
    advantages = A.group_advantages(torch.tensor(rewards), G)
    assert torch.equal(advantages, torch.zeros(2 * G))
    assert not A.conflict_mask(ids, mask, advantages, G).any()
    logits = _logits(dtype)
    loss = _loss(kind, logits, ids, mask, torch.tensor(rewards), gamma=0.0)
    loss.backward()
    assert loss.item() == 0.0 and (logits.grad == 0).all()
    if kind != "grpo":
        shaped_logits = _logits(dtype)
        shaped = _loss(kind, shaped_logits, ids, mask, torch.tensor(rewards), gamma=0.1)
        shaped.backward()
        assert torch.isfinite(shaped) and torch.isfinite(shaped_logits.grad.float()).all()
        assert shaped_logits.grad.abs().sum() > 0


def test_eos_only_completions_are_all_conflict_tokens():
    ids, mask = _batch([1] * 8)
    advantages = A.group_advantages(torch.tensor(SCENARIOS["eos_only"][2]), G)
    conflict = A.conflict_mask(ids, mask, advantages, G)
    assert torch.equal(conflict, (mask == 1) & (advantages != 0).unsqueeze(1))
    weights, divisor = A.official_token_weights(ids, mask, advantages, G)
    assert torch.equal(divisor, (advantages != 0).long())
    assert set(weights[mask == 1].tolist()) <= {0.0, 1.0, 4.0}


def test_completions_cut_at_the_maximum_length_use_every_position():
    """Without EOS and without padding the suffix run is counted from the last position."""
    ids = torch.tensor([[5, 1, 2, 4], [5, 3, 2, 4], [6, 1, 1, 1], [6, 3, 3, 3]])
    mask = torch.ones_like(ids)
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    conflict = A.conflict_mask(ids, mask, advantages, 2)
    assert conflict.tolist() == [[True, False, True, True]] * 2 + [[True, False, False, False]] * 2


def test_fp16_log_probs_do_not_overflow_the_ratio():
    """A log-ratio of 12 is e^12 = 162755: beyond float16, so the ratio is taken in float32."""
    logps = torch.full((2, 3), -0.5, dtype=torch.float16, requires_grad=True)
    old = torch.full((2, 3), -12.5, dtype=torch.float16)
    mask = torch.ones(2, 3)
    for advantages in (torch.tensor([-1.0, 0.0]), torch.tensor([1.0, 0.0])):
        logps.grad = None
        loss = A.gtpo_loss(logps, old, advantages, torch.ones(2, 3), mask)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logps.grad.float()).all()
    unclipped = A.gtpo_loss(logps, old, torch.tensor([-1.0, -1.0]), torch.ones(2, 3), mask)
    assert unclipped.item() == pytest.approx(math.exp(12), rel=1e-3)  # PPO keeps r * A for A < 0


@pytest.mark.parametrize("junk", [math.nan, math.inf, -math.inf])
def test_padding_values_never_reach_the_loss(junk):
    ids, mask = _batch([2, 6, 1, 4, 3, 5, 6, 2])
    generator = torch.Generator().manual_seed(2)
    clean = -torch.rand(2 * G, T, generator=generator) * 3
    dirty = torch.where(mask.bool(), clean, torch.full_like(clean, junk))
    advantages = torch.linspace(-1, 1, 2 * G)
    weights, divisor = A.official_token_weights(ids, mask, advantages, G)
    losses = {
        "gtpo": lambda lp: A.gtpo_loss(lp, lp.detach(), advantages, torch.ones_like(lp), mask),
        "kl": lambda lp: A.grpo_loss(
            lp, lp.detach(), advantages, mask, beta=0.1, ref_logps=lp.detach() - 0.1
        ),
        "official": lambda lp: A.official_gtpo_loss(lp, advantages, weights, divisor, mask),
    }
    for name, loss_of in losses.items():
        a, b = clean.clone().requires_grad_(), dirty.clone().requires_grad_()
        expected, got = loss_of(a), loss_of(b)
        expected.backward()
        got.backward()
        assert torch.isfinite(got) and got.item() == pytest.approx(expected.item()), name
        assert torch.equal(a.grad, b.grad), name


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_entropy_with_masked_vocabulary_and_extreme_logits(dtype):
    big = torch.finfo(dtype).max / 2
    logits = torch.tensor([[0.0, 0.0, -math.inf, -math.inf], [big, -big, 0.0, big]]).to(dtype)
    logits.requires_grad_()
    entropy = A.token_entropy(logits)
    assert entropy.dtype == torch.float32
    assert entropy.tolist() == pytest.approx([math.log(2), math.log(2)], abs=1e-3)
    entropy.sum().backward()
    assert torch.isfinite(logits.grad.float()).all()
    assert A.token_entropy(torch.full((3, 5), -math.inf).to(dtype)).isnan().all()  # no distribution


def test_single_rewards_and_constant_groups_have_zero_advantage():
    assert torch.equal(A.group_advantages(torch.tensor([3.0, 5.0]), 1), torch.zeros(2))
    assert torch.equal(A.group_advantages(torch.tensor([3.0]), 1, scaling="batch"), torch.zeros(1))
    assert torch.equal(A.group_advantages(torch.full((6,), 1.5), 3), torch.zeros(6))
    assert torch.equal(A.group_advantages(torch.full((6,), 1.5), 3, scaling="batch"), torch.zeros(6))


def test_empty_completions_have_zero_entropy_and_pass_the_gate():
    mask = torch.tensor([[0, 0, 0], [1, 1, 0]])
    mean_entropy = A.mean_completion_entropy(torch.full((2, 3), 2.0), mask)
    assert mean_entropy.tolist() == [0.0, 2.0]
    assert A.entropy_gate(mean_entropy, "always", 1.0).tolist() == [1.0, 0.0]
    assert A.sequence_mean(torch.ones(2, 3), mask).tolist() == [0.0, 1.0]


# ---------------------------------------------------------------------------------------------
# Through GTPOTrainer and TRL's loss, on a batch with the edge cases
# ---------------------------------------------------------------------------------------------


def _length_reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 5) for c in completions]


@pytest.mark.parametrize(
    ("preset", "dtype"), [("paper", torch.float32), ("official", torch.bfloat16)], ids=str
)
def test_trainer_loss_on_empty_eos_only_and_full_length_rows(tmp_path, preset, dtype):
    from datasets import Dataset

    from gtpo.app.models import build_tiny_model, build_tokenizer
    from gtpo.config import GTPOConfig
    from gtpo.trainer import GTPOTrainer

    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, size="test", seed=0).to(dtype)
    prompt = [{"role": "user", "content": "What is 1 + 1?"}]
    trainer = GTPOTrainer(
        model=model,
        reward_funcs=_length_reward,
        args=GTPOConfig(
            output_dir=str(tmp_path),
            per_device_train_batch_size=4,
            num_generations=4,
            max_completion_length=6,
            report_to="none",
            use_cpu=True,
            bf16=False,
            preset=preset,
            entropy_threshold=100.0,
            mask_truncated_completions=True,
        ),
        train_dataset=Dataset.from_list([{"prompt": prompt}] * 4),
        processing_class=tokenizer,
    )
    # Row 0 cut off at the maximum length (mask_truncated_completions leaves it empty), row 1 EOS
    # only, rows 2 and 3 of the maximum length, EOS included.
    letters = tokenizer("abcdefgh")["input_ids"][-6:]
    eos = tokenizer.eos_token_id
    completions = [letters, [eos], [*letters[:5], eos], [*letters[::-1][:5], eos]]
    trainer.rollout_func = lambda prompts, trainer: {
        "prompt_ids": [tokenizer("What is 1 + 1?")["input_ids"]] * 4,
        "completion_ids": completions,
        "logprobs": None,
    }
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    batch = trainer._generate_and_score_completions([{"prompt": prompt}] * 4)
    mask = batch["completion_mask"]
    assert mask.sum(1).tolist() == [0, 1, 6, 6]
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    assert torch.isfinite(batch["advantages"]).all()
    assert torch.isfinite(loss.float())
    assert all(torch.isfinite(p.grad.float()).all() for p in trainer.model.parameters() if p.grad is not None)

    # H_ini averages the completions that have tokens; the empty one has no entropy.
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], mask], dim=1)
    with torch.no_grad():
        _, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, attention, mask.shape[1], compute_entropy=True
        )
    mean_entropy = A.mean_completion_entropy(entropies, mask)
    assert trainer.initial_entropy == pytest.approx(mean_entropy[1:].mean().item(), rel=1e-3)

    # All-equal rewards and gamma 0: zero advantages, no gradient at all.
    trainer.model.zero_grad()
    trainer.args.gamma = 0.0
    trainer.reward_funcs = [lambda completions, **kwargs: [1.0] * len(completions)]
    batch = trainer._generate_and_score_completions([{"prompt": prompt}] * 4)
    assert "advantages" not in batch  # completed in the loss's own pass, from TRL's zero advantages
    assert (batch["gtpo_sequence_advantages"] == 0).all()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    assert loss.item() == 0.0
    assert all((p.grad == 0).all() for p in trainer.model.parameters() if p.grad is not None)
