"""Tests of gtpo.algorithm: hand-worked examples, properties, and a slow per-token reference."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gtpo import algorithm as A

# ---------------------------------------------------------------------------------------------
# A hand-worked group (G = 4). Token 2 is EOS and also the pad id, as in many tokenizers.
#   row 0, A > 0: 5 6 7 9 2
#   row 1, A < 0: 5 6 8 9 2
#   row 2, A > 0: 5 3 7 2 | pad
#   row 3, A = 0: 5 6 7 2 | pad
# Raw conflicts (same id, same position, in a positive and a negative row):
#   from the start: t=0 (5) rows 0,1,2; t=1 (6) rows 0,1; t=3 (9) rows 0,1; t=4 (2) rows 0,1.
#   from the end: s=0 (2) rows 0,1,2; s=1 (9) rows 0,1; s=2 nothing.
# ---------------------------------------------------------------------------------------------
IDS = torch.tensor([[5, 6, 7, 9, 2], [5, 6, 8, 9, 2], [5, 3, 7, 2, 2], [5, 6, 7, 2, 2]])
MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 1, 0], [1, 1, 1, 1, 0]])
ADV = torch.tensor([1.0, -1.0, 0.5, 0.0])


def test_conflicts_position_mode_by_hand():
    expected = torch.tensor(
        [[1, 1, 0, 1, 1], [1, 1, 0, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool
    )
    assert torch.equal(A.conflict_mask(IDS, MASK, ADV, 4, mode="position"), expected)


def test_conflicts_prefix_suffix_mode_by_hand():
    # Row 2's EOS (t=3) conflicts counted from its own end, not from the start; row 0 and 1's
    # t=3,4 are the suffix run; the t=2 mismatch breaks both runs.
    expected = torch.tensor(
        [[1, 1, 0, 1, 1], [1, 1, 0, 1, 1], [1, 0, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool
    )
    assert torch.equal(A.conflict_mask(IDS, MASK, ADV, 4, mode="prefix_suffix"), expected)


def test_prefix_suffix_ignores_matches_after_divergence():
    # Positive and negative agree at t=0, differ at t=1, agree again at t=2 and differ at the end.
    ids = torch.tensor([[1, 2, 3, 4], [1, 9, 3, 8]])
    mask = torch.ones_like(ids)
    adv = torch.tensor([1.0, -1.0])
    assert A.conflict_mask(ids, mask, adv, 2, mode="prefix_suffix").tolist() == [
        [True, False, False, False],
        [True, False, False, False],
    ]
    assert A.conflict_mask(ids, mask, adv, 2, mode="position")[:, 2].all()


def test_token_weights_by_hand():
    conflict = A.conflict_mask(IDS, MASK, ADV, 4)
    weights = A.token_weights(conflict, ADV, positive_weight=2.0, negative_weight=0.0)
    assert weights.tolist() == [
        [2, 2, 1, 2, 2],
        [0, 0, 1, 0, 0],
        [2, 1, 1, 2, 1],
        [1, 1, 1, 1, 1],
    ]
    custom = A.token_weights(conflict, ADV, positive_weight=3.0, negative_weight=0.5)
    assert custom[0, 0] == 3.0 and custom[1, 0] == 0.5 and custom[3, 0] == 1.0


def test_official_token_weights_by_hand():
    weights, divisor = A.official_token_weights(IDS, MASK, ADV, 4)
    assert weights.tolist() == [
        [2, 2, 1, 2, 2],
        [0, 0, 1, 0, 0],
        [2, 1, 1, 2, 0],  # zero on padding: the official code multiplies by the mask
        [1, 1, 1, 1, 0],
    ]
    # n_i = max(prefix run, suffix run): rows 0 and 1 have runs of 2 and 2; row 2 of 1 and 1.
    assert divisor.tolist() == [2, 2, 1, 0]
    assert divisor.dtype == torch.long


def test_official_weights_multiply_runs():
    # Identical completions: every token is in both runs, so the positive one weighs 2 * 2.
    ids = torch.tensor([[4, 2, 0], [4, 2, 0], [4, 7, 2]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0], [1, 1, 1]])
    weights, divisor = A.official_token_weights(ids, mask, torch.tensor([1.0, -2.0, 0.0]), 3)
    assert weights.tolist() == [[4, 4, 0], [0, 0, 0], [1, 1, 1]]
    assert divisor.tolist() == [2, 2, 0]


def test_conflicts_ignore_padding_that_equals_a_real_token():
    # The pad id (2) equals EOS; the negative row is shorter, so the positive row's EOS at t=2 sits
    # above the negative row's padding. Reading ids instead of the mask would mark it at t=2.
    ids = torch.tensor([[7, 8, 2], [7, 2, 2]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.tensor([1.0, -1.0])
    assert A.conflict_mask(ids, mask, adv, 2, mode="position").tolist() == [
        [True, False, False],
        [True, False, False],
    ]
    # From the ends both rows finish with EOS, so the suffix run marks both EOS tokens.
    assert A.conflict_mask(ids, mask, adv, 2).tolist() == [[True, False, True], [True, True, False]]


def test_groups_do_not_mix():
    # Two groups of 2: the same tokens in different groups never conflict.
    ids = torch.tensor([[1, 2], [3, 4], [3, 4], [1, 2]])
    mask = torch.ones_like(ids)
    adv = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert not A.conflict_mask(ids, mask, adv, 2).any()
    assert A.conflict_mask(ids, mask, adv, 4).all()


# ---------------------------------------------------------------------------------------------
# Advantages, entropy, gate
# ---------------------------------------------------------------------------------------------


def test_group_advantages_by_hand():
    rewards = torch.tensor([0.0, 10.0, 20.0, 19.0, 1.0, 1.0])
    centred = A.group_advantages(rewards, 3, scaling="none")
    assert torch.allclose(centred, torch.tensor([-10.0, 0.0, 10.0, 12.0, -6.0, -6.0]))
    scaled = A.group_advantages(rewards, 3, scaling="group", eps=0.0)
    assert torch.allclose(scaled[:3], torch.tensor([-1.0, 0.0, 1.0]))  # std of (0, 10, 20) is 10
    assert torch.allclose(scaled[3:], centred[3:] / math.sqrt(108.0))  # (144 + 36 + 36) / 2
    batch = A.group_advantages(rewards, 3, scaling="batch", eps=0.0)
    assert torch.allclose(batch, centred / rewards.std())
    same = A.group_advantages(torch.full((4,), 5.0), 2)
    assert torch.equal(same, torch.zeros(4))
    with pytest.raises(ValueError, match="scaling"):
        A.group_advantages(rewards, 3, scaling="std")


def test_token_entropy_uniform_and_peaked():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]])
    entropy = A.token_entropy(logits)
    assert entropy[0].item() == pytest.approx(math.log(4.0))
    assert entropy[1].item() == pytest.approx(0.0, abs=1e-6)


def test_mean_completion_entropy_uses_mask():
    entropies = torch.tensor([[1.0, 3.0, 100.0], [2.0, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [0, 0, 0]])
    mean = A.mean_completion_entropy(entropies, mask)
    assert mean.tolist() == [2.0, 0.0]
    assert not mean.requires_grad


def test_entropy_gate_rules():
    h = torch.tensor([0.1, 0.69, 0.70, 0.71, 1.5])
    assert A.entropy_gate(h, "off").tolist() == [1, 1, 1, 1, 1]
    assert A.entropy_gate(h, "always").tolist() == [1, 1, 1, 0, 0]  # threshold 0.7
    assert A.entropy_gate(h, "always", threshold=1.02).tolist() == [1, 1, 1, 1, 0]
    # ln 2 = 0.6931...: with a low initial entropy, completions above ln 2 are dropped.
    assert A.entropy_gate(h, "paper", initial_entropy=0.3).tolist() == [1, 1, 0, 0, 0]
    # With a high initial entropy the paper gate lets everything through.
    assert A.entropy_gate(h, "paper", initial_entropy=0.9).tolist() == [1, 1, 1, 1, 1]
    with pytest.raises(ValueError, match="initial_entropy"):
        A.entropy_gate(h, "paper")
    with pytest.raises(ValueError, match="rule"):
        A.entropy_gate(h, "sometimes")


def test_shaped_advantages():
    adv = torch.tensor([1.0, -1.0, 0.5], requires_grad=True)
    shaped = A.shaped_advantages(adv, torch.tensor([0.5, 0.2, 3.0]), torch.tensor([1.0, 1.0, 0.0]), gamma=0.1)
    assert torch.allclose(shaped, torch.tensor([0.95, -1.02, 0.0]))
    assert not shaped.requires_grad


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------


def _random_batch(seed: int, n: int = 8, t: int = 6):
    gen = torch.Generator().manual_seed(seed)
    logps = (-torch.rand(n, t, generator=gen) * 3).requires_grad_()
    old = logps.detach() + 0.3 * torch.randn(n, t, generator=gen)
    lengths = torch.randint(1, t + 1, (n,), generator=gen)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).long()
    adv = torch.randn(n, generator=gen)
    return logps, old, mask, adv


def test_gtpo_loss_by_hand():
    # One completion of two tokens, on-policy: loss = -(1/2) * A' * (w0 + w1).
    logps = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    loss = A.gtpo_loss(
        logps, logps.detach(), torch.tensor([0.5]), torch.tensor([[2.0, 1.0]]), torch.ones(1, 2)
    )
    assert loss.item() == pytest.approx(-0.75)
    loss.backward()
    # d loss / d logp_t = -(1/2) * A' * w_t
    assert logps.grad.tolist() == [[-0.5, -0.25]]


def test_gtpo_loss_clips_off_policy_ratios():
    logps = torch.tensor([[0.0]], requires_grad=True)
    old = torch.tensor([[-1.0]])  # ratio e = 2.718 > 1.2
    loss = A.gtpo_loss(logps, old, torch.tensor([1.0]), torch.ones(1, 1), torch.ones(1, 1))
    assert loss.item() == pytest.approx(-1.2)
    loss.backward()
    assert logps.grad.item() == 0.0  # clipped: no gradient


def test_gtpo_reduces_to_grpo():
    logps, old, mask, adv = _random_batch(0)
    gate = A.entropy_gate(torch.rand(8), "off")
    shaped = A.shaped_advantages(adv, torch.rand(8), gate, gamma=0.0)
    weights = A.token_weights(torch.rand(8, 6) > 0.5, adv, positive_weight=1.0, negative_weight=1.0)
    gtpo = A.gtpo_loss(logps, old, shaped, weights, mask)
    (g_gtpo,) = torch.autograd.grad(gtpo, logps)
    grpo = A.grpo_loss(logps, old, adv, mask)
    (g_grpo,) = torch.autograd.grad(grpo, logps)
    assert torch.allclose(gtpo, grpo) and torch.allclose(g_gtpo, g_grpo)


def test_grpo_kl_term():
    logps, old, mask, adv = _random_batch(1)
    ref = logps.detach() - 0.5
    with_kl = A.grpo_loss(logps, old, adv, mask, beta=0.1, ref_logps=ref)
    kl = A.sequence_mean(A.k3_kl(logps, ref), mask).mean()
    assert torch.allclose(with_kl, A.grpo_loss(logps, old, adv, mask) + 0.1 * kl)
    assert (A.k3_kl(logps, ref) >= 0).all()
    with pytest.raises(ValueError, match="ref_logps"):
        A.grpo_loss(logps, old, adv, mask, beta=0.1)


def test_official_loss_by_hand():
    # Two completions, summed (not averaged), each divided by its token count and its n_i.
    logps = torch.tensor([[-1.0, -1.0], [-1.0, -1.0]], requires_grad=True)
    mask = torch.tensor([[1, 1], [1, 0]])
    loss = A.official_gtpo_loss(
        logps, torch.tensor([1.0, -2.0]), torch.tensor([[4.0, 2.0], [1.0, 0.0]]), torch.tensor([2, 0]), mask
    )
    # row 0: -(1 * (4 + 2) / 2) / 2 = -1.5; row 1: -(-2 * 1 / 1) / 1 = 2
    assert loss.item() == pytest.approx(0.5)
    loss.backward()
    assert logps.grad.tolist() == [[-1.0, -0.5], [2.0, 0.0]]


# ---------------------------------------------------------------------------------------------
# A slow per-token reference, written from the spec's sentences, against the vectorised code
# ---------------------------------------------------------------------------------------------


def _slow_runs(ids, mask, adv, group_size):
    """Per-token loops over the spec's sentences: (raw from start, prefix run, suffix run)."""
    ids, mask, adv = ids.tolist(), mask.tolist(), adv.tolist()
    n, t_len = len(ids), len(ids[0])
    lengths = [sum(row) for row in mask]
    raw, prefix, suffix = ([[False] * t_len for _ in range(n)] for _ in range(3))
    for start in range(0, n, group_size):
        rows = range(start, start + group_size)
        pos = [j for j in rows if adv[j] > 0]
        neg = [j for j in rows if adv[j] < 0]

        def raw_from_start(i, t, pos=pos, neg=neg):
            tok = ids[i][t]
            hit_pos = any(t < lengths[j] and ids[j][t] == tok for j in pos)
            hit_neg = any(t < lengths[j] and ids[j][t] == tok for j in neg)
            return hit_pos and hit_neg

        def raw_from_end(i, s, pos=pos, neg=neg):
            tok = ids[i][lengths[i] - 1 - s]
            hit_pos = any(s < lengths[j] and ids[j][lengths[j] - 1 - s] == tok for j in pos)
            hit_neg = any(s < lengths[j] and ids[j][lengths[j] - 1 - s] == tok for j in neg)
            return hit_pos and hit_neg

        for i in rows:
            if adv[i] == 0:
                continue
            for t in range(lengths[i]):
                raw[i][t] = raw_from_start(i, t)
                prefix[i][t] = all(raw_from_start(i, u) for u in range(t + 1))
                suffix[i][t] = all(raw_from_end(i, u) for u in range(lengths[i] - t))
    return torch.tensor(raw), torch.tensor(prefix), torch.tensor(suffix)


def _slow_conflicts(ids, mask, adv, group_size, mode):
    raw, prefix, suffix = _slow_runs(ids, mask, adv, group_size)
    return raw if mode == "position" else prefix | suffix


group_batches = st.integers(min_value=2, max_value=5).flatmap(
    lambda g: st.tuples(
        st.just(g),
        st.integers(min_value=1, max_value=3),  # groups
        st.integers(min_value=1, max_value=7),  # T
        st.integers(min_value=2, max_value=4),  # vocabulary: small, so matches are frequent
        st.integers(min_value=0, max_value=2**31 - 1),
    )
)


def _make_batch(g, groups, t_len, vocab, seed):
    gen = torch.Generator().manual_seed(seed)
    n = g * groups
    ids = torch.randint(0, vocab, (n, t_len), generator=gen)
    lengths = torch.randint(0, t_len + 1, (n,), generator=gen)
    mask = (torch.arange(t_len).unsqueeze(0) < lengths.unsqueeze(1)).long()
    ids = torch.where(mask.bool(), ids, torch.zeros_like(ids))  # pad id 0 is also a real token
    adv = torch.randint(-1, 2, (n,), generator=gen).float() * torch.rand(n, generator=gen)
    return ids, mask, adv


@settings(max_examples=150, deadline=None)
@given(group_batches, st.sampled_from(["prefix_suffix", "position"]))
def test_conflicts_match_slow_reference(batch, mode):
    g, groups, t_len, vocab, seed = batch
    ids, mask, adv = _make_batch(g, groups, t_len, vocab, seed)
    assert torch.equal(
        A.conflict_mask(ids, mask, adv, g, mode=mode), _slow_conflicts(ids, mask, adv, g, mode)
    )


@settings(max_examples=100, deadline=None)
@given(group_batches)
def test_official_weights_match_slow_reference(batch):
    g, groups, t_len, vocab, seed = batch
    ids, mask, adv = _make_batch(g, groups, t_len, vocab, seed)
    _, prefix, suffix = _slow_runs(ids, mask, adv, g)
    weights, divisor = A.official_token_weights(ids, mask, adv, g)
    for i in range(ids.shape[0]):
        for t in range(ids.shape[1]):
            expected = 0.0
            if mask[i, t]:
                expected = 1.0
                for run in (prefix, suffix):
                    if run[i, t]:
                        expected *= 2.0 if adv[i] > 0 else 0.0
            assert weights[i, t].item() == expected
        longest = max(int(prefix[i].sum()), int(suffix[i].sum()), 1)
        assert divisor[i].item() == (longest if adv[i] != 0 else 0)


@settings(max_examples=60, deadline=None)
@given(group_batches, st.floats(0.0, 3.0), st.floats(0.0, 1.0), st.floats(0.0, 0.5))
def test_loss_gradient_matches_slow_loop(batch, positive_weight, negative_weight, gamma):
    g, groups, t_len, vocab, seed = batch
    ids, mask, adv = _make_batch(g, groups, t_len, vocab, seed)
    n = ids.shape[0]
    gen = torch.Generator().manual_seed(seed)
    logps = (-torch.rand(n, t_len, generator=gen) * 2).requires_grad_()
    old = logps.detach() + 0.2 * torch.randn(n, t_len, generator=gen)
    entropies = torch.rand(n, t_len, generator=gen)
    h = A.mean_completion_entropy(entropies, mask)
    gate = A.entropy_gate(h, "always", threshold=0.5)
    shaped = A.shaped_advantages(adv, h, gate, gamma)
    weights = A.token_weights(A.conflict_mask(ids, mask, adv, g), adv, positive_weight, negative_weight)
    loss = A.gtpo_loss(logps, old, shaped, weights, mask, epsilon_low=0.2, epsilon_high=0.28)
    (grad,) = torch.autograd.grad(loss, logps)

    conflict = _slow_conflicts(ids, mask, adv, g, "prefix_suffix")
    slow_total = logps.sum() * 0.0  # on the graph even when no token contributes
    for i in range(n):
        length = int(mask[i].sum())
        h_i = sum(float(entropies[i, t]) for t in range(length)) / max(length, 1)
        delta = 1.0 if h_i <= 0.5 else 0.0
        a_i = delta * (float(adv[i]) - gamma * h_i)
        for t in range(length):
            lam = 1.0
            if conflict[i, t]:
                lam = positive_weight if adv[i] > 0 else negative_weight
            ratio = torch.exp(logps[i, t] - old[i, t])
            clipped = torch.clamp(ratio, 0.8, 1.28)
            term = -torch.minimum(ratio * a_i, clipped * a_i) * lam
            slow_total = slow_total + term / length
    slow_loss = slow_total / n
    (slow_grad,) = torch.autograd.grad(slow_loss, logps)
    assert torch.allclose(loss, slow_loss, atol=1e-5)
    assert torch.allclose(grad, slow_grad, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(group_batches, st.sampled_from(["prefix_suffix", "position"]), st.randoms(use_true_random=False))
def test_permuting_a_group_permutes_outputs(batch, mode, rnd):
    g, groups, t_len, vocab, seed = batch
    ids, mask, adv = _make_batch(g, groups, t_len, vocab, seed)
    perm = []
    for start in range(0, ids.shape[0], g):
        block = list(range(start, start + g))
        rnd.shuffle(block)
        perm.extend(block)
    perm = torch.tensor(perm)
    conflict = A.conflict_mask(ids, mask, adv, g, mode=mode)
    assert torch.equal(A.conflict_mask(ids[perm], mask[perm], adv[perm], g, mode=mode), conflict[perm])
    weights, divisor = A.official_token_weights(ids, mask, adv, g)
    w_perm, d_perm = A.official_token_weights(ids[perm], mask[perm], adv[perm], g)
    assert torch.equal(w_perm, weights[perm]) and torch.equal(d_perm, divisor[perm])


@settings(max_examples=100, deadline=None)
@given(group_batches, st.sampled_from(["prefix_suffix", "position"]), st.integers(1, 5), st.integers(0, 3))
def test_extra_right_padding_changes_nothing(batch, mode, extra, pad_id):
    g, groups, t_len, vocab, seed = batch
    ids, mask, adv = _make_batch(g, groups, t_len, vocab, seed)
    n = ids.shape[0]
    ids_padded = torch.cat([ids, torch.full((n, extra), pad_id)], dim=1)
    mask_padded = torch.cat([mask, torch.zeros(n, extra, dtype=mask.dtype)], dim=1)
    conflict = A.conflict_mask(ids_padded, mask_padded, adv, g, mode=mode)
    assert torch.equal(conflict[:, :t_len], A.conflict_mask(ids, mask, adv, g, mode=mode))
    assert not conflict[:, t_len:].any()
    weights, divisor = A.official_token_weights(ids_padded, mask_padded, adv, g)
    w_ref, d_ref = A.official_token_weights(ids, mask, adv, g)
    assert torch.equal(weights[:, :t_len], w_ref) and torch.equal(divisor, d_ref)


@settings(max_examples=100, deadline=None)
@given(group_batches, st.sampled_from(["prefix_suffix", "position"]), st.booleans())
def test_no_conflicts_when_active_rows_share_a_sign(batch, mode, positive):
    g, groups, t_len, vocab, seed = batch
    ids, mask, adv = _make_batch(g, groups, t_len, vocab, seed)
    adv = adv.abs() if positive else -adv.abs()
    assert not A.conflict_mask(ids, mask, adv, g, mode=mode).any()
    weights, _ = A.official_token_weights(ids, mask, adv, g)
    assert torch.equal(weights, mask.float())


@settings(max_examples=100, deadline=None)
@given(group_batches, st.floats(0.0, 5.0), st.floats(0.0, 1.0))
def test_zero_advantage_rows_weigh_one(batch, positive_weight, negative_weight):
    g, groups, t_len, vocab, seed = batch
    ids, mask, adv = _make_batch(g, groups, t_len, vocab, seed)
    conflict = A.conflict_mask(ids, mask, adv, g)
    weights = A.token_weights(conflict, adv, positive_weight, negative_weight)
    zero = adv == 0
    assert (weights[zero] == 1.0).all()
    assert not conflict[zero].any()


def test_runs_on_other_dtypes():
    ids, mask, adv = IDS, MASK.bool(), ADV.double()
    assert torch.equal(A.conflict_mask(ids.int(), mask, adv, 4), A.conflict_mask(IDS, MASK, ADV, 4))
    logps = torch.randn(4, 5, dtype=torch.bfloat16, requires_grad=True)
    loss = A.gtpo_loss(logps, logps.detach(), ADV.bfloat16(), torch.ones(4, 5), MASK)
    loss.backward()
    assert torch.isfinite(logps.grad.float()).all()


def test_diagnostics():
    conflict = A.conflict_mask(IDS, MASK, ADV, 4)
    shares = A.conflict_shares(conflict, ADV, MASK)
    # 18 real tokens; positive conflicts: 4 (row 0) + 2 (row 2); negative: 4 (row 1).
    assert shares["positive_conflict_share"] == pytest.approx(6 / 18)
    assert shares["negative_conflict_share"] == pytest.approx(4 / 18)
    stats = A.gate_diagnostics(torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([0.2, 0.4, 0.6, 0.8]))
    assert stats == {"gated_out_share": 0.25, "mean_entropy": pytest.approx(0.5)}


def test_importance_weights_scale_the_policy_term_only():
    logps, old, mask, adv = _random_batch(2)
    ones = torch.ones_like(logps)
    base = A.gtpo_loss(logps, old, adv, ones, mask)
    assert torch.allclose(A.gtpo_loss(logps, old, adv, ones, mask, importance_weights=2 * ones), 2 * base)
    ref = logps.detach() + 0.1
    kl = A.sequence_mean(A.k3_kl(logps, ref), mask).mean()
    with_both = A.gtpo_loss(logps, old, adv, ones, mask, importance_weights=2 * ones, beta=0.5, ref_logps=ref)
    assert torch.allclose(with_both, 2 * base + 0.5 * kl)


def test_clipped_tokens_by_hand():
    # ratios e^0.5 = 1.65, e^-0.5 = 0.61, 1.0 on both rows; row 0 positive, row 1 negative.
    logps = torch.tensor([[0.5, -0.5, 0.0], [0.5, -0.5, 0.0]])
    low, high = A.clipped_tokens(logps, torch.zeros(2, 3), torch.tensor([1.0, -1.0]), 0.2, 0.28)
    assert high.tolist() == [[True, False, False], [False, False, False]]
    assert low.tolist() == [[False, False, False], [False, True, False]]
