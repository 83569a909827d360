"""GTPO through TRL's loss: the same objective as the loss-time formula, every TRL loss type,
H_ini over the first optimisation step, and the entropy pass."""

import math

import pytest
import torch
from conftest import spy_trl_advantages, tiny_config
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer
from trl.trainer.utils import add_fused_lm_head

from gtpo import algorithm
from gtpo.app.models import build_tiny_model, build_tokenizer
from gtpo.config import GTPOConfig
from gtpo.trainer import GTPOTrainer

torch.set_num_threads(1)

PROMPT = [{"role": "user", "content": "What is 1 + 1?"}]
# Every loss type of TRL 1.16 that GTPOConfig accepts (luspo is refused: tests/test_trainer.py).
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "vespo")
# TRL's function as imported, before any test wraps it on the class.
_TRL_LOGPS_AND_ENTROPIES = GRPOTrainer._get_per_token_logps_and_entropies
OFF = dict(positive_weight=1.0, negative_weight=1.0, entropy_gate="off", gamma=0.0)


def length_reward(completions, **kwargs):
    return [float(len(c[0]["content"]) % 5) for c in completions]


def _trainer(tmp_path, trainer_cls=GTPOTrainer, config_cls=GTPOConfig, saved=False, **overrides):
    """A trainer of the tiny test model; `saved`: loaded from a directory (TRL loads a reference
    model from the policy's path)."""
    tokenizer = build_tokenizer()
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}]} for i in range(8)]
    model = build_tiny_model(tokenizer, size="test", seed=0)
    if saved:
        model.save_pretrained(tmp_path / "model")
        model = str(tmp_path / "model")
    return trainer_cls(
        model=model,
        reward_funcs=length_reward,
        args=tiny_config(tmp_path, config_cls, **overrides),
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )


def _fixed_rollouts(trainer, kind: str, seed: int = 0) -> None:
    """Completions the test chooses: 'crafted' share a prefix and an EOS suffix and differ in the
    middle (conflict tokens at both ends); 'random' are random ids of random lengths (the same at
    every call)."""
    tokenizer = trainer.processing_class
    vocab = sorted(set(tokenizer.get_vocab().values()) - set(tokenizer.all_special_ids))

    def rollout(prompts, trainer):
        generator = torch.Generator().manual_seed(seed)
        completions = []
        for row in range(len(prompts)):
            if kind == "crafted":
                middle = [vocab[(row * 5 + k) % len(vocab)] for k in range(row % 4 + 1)]
                completions.append([vocab[1], vocab[2], *middle, vocab[3], tokenizer.eos_token_id])
            else:
                length = int(torch.randint(1, 8, (1,), generator=generator))
                ids = torch.randint(0, len(vocab), (length,), generator=generator).tolist()
                completions.append([vocab[i] for i in ids] + [tokenizer.eos_token_id])
        return {
            "prompt_ids": [tokenizer("What is 1 + 1?")["input_ids"]] * len(prompts),
            "completion_ids": completions,
            "logprobs": None,
        }

    trainer.rollout_func = rollout


def _grads(model) -> dict[str, torch.Tensor]:
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    return grads


CASES = [
    (kind, gate, accumulation, "later")
    for kind in ("crafted", "random")
    for gate in ("paper", "always")
    for accumulation in (1, 2)
] + [("crafted", "paper", accumulation, "first") for accumulation in (1, 2)]


@pytest.mark.parametrize(("kind", "gate", "accumulation", "batch_kind"), CASES)
def test_paper_preset_through_trl_loss_equals_the_loss_time_formula(
    tmp_path, monkeypatch, kind, gate, accumulation, batch_kind
):
    """Paper preset, loss_type grpo, num_iterations 1: TRL's loss on GTPO's advantages has the loss
    and gradients of gtpo.algorithm.gtpo_loss with loss-time entropies. The first batch carries
    them complete (from the H_ini pass); a later one has them completed in the loss's own pass."""
    trl = spy_trl_advantages(monkeypatch)
    trainer = _trainer(tmp_path, entropy_gate=gate, gradient_accumulation_steps=accumulation)
    _fixed_rollouts(trainer, kind, seed=accumulation)
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = accumulation
    inputs = [{"prompt": PROMPT}] * 4
    if gate == "always":  # a threshold between the completions' entropies, so the gate drops some
        trainer._generate_and_score_completions(inputs)
        trainer.args.entropy_threshold = float(
            torch.tensor(trainer._metrics["train"]["gtpo/mean_entropy"]).max()
        )
        probe = trainer._generate_and_score_completions(inputs)
        ids = torch.cat([probe["prompt_ids"], probe["completion_ids"]], 1)
        attention = torch.cat([probe["prompt_mask"], probe["completion_mask"]], 1)
        with torch.no_grad():
            _, ent, _ = trainer._get_per_token_logps_and_entropies(
                model, ids, attention, ids.shape[1] - probe["prompt_ids"].shape[1], compute_entropy=True
            )
        trainer.args.entropy_threshold = float(
            algorithm.mean_completion_entropy(ent, probe["completion_mask"]).median()
        )
    elif batch_kind == "later":
        trainer._generate_and_score_completions(inputs)  # the first batch measures H_ini
    batch = trainer._generate_and_score_completions(inputs)
    assert ("gtpo_token_weights" in batch) == (batch_kind == "later")
    new_loss = trainer.compute_loss(model, batch)
    new_loss.backward()
    new_grads = _grads(model)

    ids, mask, adv = batch["completion_ids"], batch["completion_mask"], trl["advantages"]
    input_ids = torch.cat([batch["prompt_ids"], ids], 1)
    attention = torch.cat([batch["prompt_mask"], mask], 1)
    logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
        model, input_ids, attention, ids.shape[1], compute_entropy=True
    )
    mean_entropy = algorithm.mean_completion_entropy(entropies, mask)
    gate_values = algorithm.entropy_gate(
        mean_entropy, gate, trainer.args.entropy_threshold, trainer.initial_entropy
    )
    if gate == "always":
        assert 0 < gate_values.sum() < len(gate_values), "the gate should drop some completions"
    weights = algorithm.token_weights(algorithm.conflict_mask(ids, mask, adv, 4, "prefix_suffix"), adv)
    if kind == "crafted":
        assert (weights == 0).any() and (weights == 2).any()
    shaped = algorithm.shaped_advantages(adv, mean_entropy, gate_values, 0.1)
    old_loss = algorithm.gtpo_loss(logps, logps.detach(), shaped, weights, mask) / accumulation
    old_loss.backward()
    old_grads = _grads(model)

    assert new_loss.item() == pytest.approx(old_loss.item(), abs=1e-6)
    assert set(new_grads) == set(old_grads)
    assert any(g.abs().max() > 0 for g in new_grads.values())
    for name, grad in new_grads.items():
        assert torch.allclose(grad, old_grads[name], atol=1e-6), name


@pytest.mark.parametrize("batch_kind", ["first", "later"])
def test_official_preset_is_not_divided_by_accumulation_steps(tmp_path, monkeypatch, batch_kind):
    """As the authors' code: each micro-batch's loss is the official sum over its completions,
    whatever the number of accumulation steps, with advantages from the batch (first) or completed
    in the loss's pass (later)."""
    trl = spy_trl_advantages(monkeypatch)
    trainer = _trainer(tmp_path, preset="official", entropy_threshold=100.0, gradient_accumulation_steps=2)
    _fixed_rollouts(trainer, "crafted")
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 2
    if batch_kind == "later":
        trainer._generate_and_score_completions([{"prompt": PROMPT}] * 8)
    batch = trainer._generate_and_score_completions([{"prompt": PROMPT}] * 8)  # two micro-batches of 4
    assert ("advantages" in batch) == (batch_kind == "first")
    micro = {
        key: value[:4] if torch.is_tensor(value) and value.dim() > 0 else value
        for key, value in batch.items()
    }
    loss = trainer.compute_loss(model, micro)

    ids, mask, adv = micro["completion_ids"], micro["completion_mask"], trl["advantages"][:4]
    logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
        model,
        torch.cat([micro["prompt_ids"], ids], 1),
        torch.cat([micro["prompt_mask"], mask], 1),
        ids.shape[1],
        compute_entropy=True,
    )
    mean_entropy = algorithm.mean_completion_entropy(entropies, mask)
    weights, divisor = algorithm.official_token_weights(ids, mask, adv, 4)
    assert (divisor > 1).any()
    shaped = algorithm.shaped_advantages(adv, mean_entropy, torch.ones(4), 0.1)
    expected = algorithm.official_gtpo_loss(logps, shaped, weights, divisor, mask)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-7)
    assert expected.item() != 0


def test_initial_entropy_spans_the_whole_first_step(tmp_path, monkeypatch):
    """With gradient accumulation 2, H_ini is the mean completion entropy over both micro-batches."""
    seen: list[torch.Tensor] = []
    original = GRPOTrainer._compute_loss

    def spy(self, model, inputs):
        ids, mask = inputs["completion_ids"], inputs["completion_mask"]
        with torch.no_grad():
            _, entropies, _ = self._get_per_token_logps_and_entropies(
                model,
                torch.cat([inputs["prompt_ids"], ids], 1),
                torch.cat([inputs["prompt_mask"], mask], 1),
                ids.shape[1],
                compute_entropy=True,
            )
        seen.append(algorithm.mean_completion_entropy(entropies, mask))
        return original(self, model, inputs)

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", spy)
    trainer = _trainer(tmp_path, gradient_accumulation_steps=2, max_steps=1)
    trainer.train()
    assert len(seen) == 2
    first, second = seen
    assert abs(first.mean() - second.mean()) > 1e-4, "the micro-batches should differ"
    assert trainer.initial_entropy == pytest.approx(torch.cat(seen).mean().item(), rel=1e-5)


@pytest.mark.parametrize(("accumulation", "steps_per_generation"), [(1, 1), (1, 2)])
def test_one_policy_pass_per_batch(tmp_path, monkeypatch, accumulation, steps_per_generation):
    """The entropies come from one no-grad pass of the policy: GTPO's own when TRL runs none
    (aligned steps), TRL's old-log-prob pass when it runs one (misaligned steps)."""
    calls: list[bool] = []
    original = GRPOTrainer._get_per_token_logps_and_entropies

    def counting(self, model, *args, **kwargs):
        calls.append(kwargs.get("compute_entropy", False))
        return original(self, model, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", counting)
    trl = spy_trl_advantages(monkeypatch)
    trainer = _trainer(
        tmp_path,
        gradient_accumulation_steps=accumulation,
        steps_per_generation=steps_per_generation,
        per_device_train_batch_size=4,
    )
    _fixed_rollouts(trainer, "random")
    trainer.model.train()
    batch = trainer._generate_and_score_completions([{"prompt": PROMPT}] * 4 * steps_per_generation)
    assert calls == [True]
    assert ("old_per_token_logps" in batch) == (steps_per_generation > accumulation)
    assert "_get_per_token_logps_and_entropies" not in vars(trainer)  # the wrapper is gone again
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    mean_entropy = algorithm.mean_completion_entropy(_no_grad_entropies(trainer, batch), mask)
    adv = trl["advantages"]
    weights = algorithm.token_weights(algorithm.conflict_mask(ids, mask, adv, 4), adv)
    gate = algorithm.entropy_gate(mean_entropy, "paper", math.log(2), trainer.initial_entropy)
    expected = algorithm.token_advantages(adv, weights, mean_entropy, gate, 0.1)
    assert torch.allclose(batch["advantages"], expected, atol=1e-6)


def _count_policy_passes(monkeypatch) -> list[tuple[bool, bool]]:
    """Record (gradient enabled, entropies asked for) for each pass of the policy."""
    calls: list[tuple[bool, bool]] = []
    original = GRPOTrainer._get_per_token_logps_and_entropies

    def counting(self, model, *args, **kwargs):
        if model is self.model:
            calls.append((torch.is_grad_enabled(), kwargs.get("compute_entropy", False)))
        return original(self, model, *args, **kwargs)

    monkeypatch.setattr(GRPOTrainer, "_get_per_token_logps_and_entropies", counting)
    return calls


@pytest.mark.parametrize("accumulation", [1, 2])
def test_aligned_steps_run_no_second_pass_after_the_first_batch(tmp_path, monkeypatch, accumulation):
    """Aligned steps (TRL runs no old-log-prob pass): the first generation batch has one no-grad
    pass (H_ini); every later batch only the loss's own pass, one per micro-batch."""
    calls = _count_policy_passes(monkeypatch)
    steps = 3
    trainer = _trainer(
        tmp_path, gradient_accumulation_steps=accumulation, per_device_train_batch_size=4, max_steps=steps
    )
    assert not trainer._trl_runs_policy_pass()
    trainer.train()
    no_grad = [call for call in calls if not call[0]]
    assert no_grad == [(False, True)], f"no-grad passes of the policy: {no_grad}"
    assert calls.count((True, True)) == steps * accumulation  # the loss's passes
    assert trainer.initial_entropy is not None


def test_misaligned_steps_reuse_trl_s_pass(tmp_path, monkeypatch):
    """steps_per_generation 2 > accumulation 1: TRL's old-log-prob pass (asked for entropies) is the
    only no-grad pass, one per generation batch, the first included."""
    calls = _count_policy_passes(monkeypatch)
    trainer = _trainer(tmp_path, steps_per_generation=2, per_device_train_batch_size=4, max_steps=4)
    assert trainer._trl_runs_policy_pass()
    trainer.train()
    assert [call for call in calls if not call[0]] == [(False, True)] * 2
    assert calls.count((True, True)) == 4


def _no_grad_entropies(trainer, batch) -> torch.Tensor:
    """(B, T) entropies of the policy over the batch's completions, from one no-grad pass of TRL's
    own (unwrapped) function."""
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    with torch.no_grad():
        _, entropies, _ = _TRL_LOGPS_AND_ENTROPIES(
            trainer,
            trainer.model,
            torch.cat([batch["prompt_ids"], ids], 1),
            torch.cat([batch["prompt_mask"], mask], 1),
            ids.shape[1],
            compute_entropy=True,
        )
    return entropies


def _eager_batch(trainer, batch) -> dict:
    """The batch as the first batch would carry it: GTPO's advantages complete, from a no-grad pass."""
    entropies = _no_grad_entropies(trainer, batch)
    mean_entropy = algorithm.mean_completion_entropy(entropies, batch["completion_mask"])
    adv = batch["gtpo_sequence_advantages"]
    args = trainer.args
    gate = algorithm.entropy_gate(
        mean_entropy, args.entropy_gate, args.entropy_threshold, trainer.initial_entropy
    )
    advantages = algorithm.token_advantages(adv, batch["gtpo_token_weights"], mean_entropy, gate, args.gamma)
    kept = {k: v for k, v in batch.items() if k not in ("gtpo_token_weights", "gtpo_row")}
    return {**kept, "advantages": advantages}


def _batch_after_h_ini(trainer, accumulation: int) -> dict:
    """A training batch of crafted rollouts after the first one (which measures H_ini), so GTPO
    completes its advantages at loss time; the model is left in training mode."""
    _fixed_rollouts(trainer, "crafted")
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = accumulation
    trainer._generate_and_score_completions([{"prompt": PROMPT}] * 4)  # H_ini
    return trainer._generate_and_score_completions([{"prompt": PROMPT}] * 4)


@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_loss_time_advantages_equal_batch_advantages_for_every_loss_type(tmp_path, loss_type):
    """For every TRL loss type, completing the advantages in the loss's own pass gives the loss and
    gradients that TRL's loss gives on advantages computed beforehand from a no-grad pass."""
    trainer = _trainer(tmp_path, loss_type=loss_type, gradient_accumulation_steps=2, entropy_threshold=3.0)
    batch = _batch_after_h_ini(trainer, accumulation=2)
    model = trainer.model
    assert "advantages" not in batch
    lazy = trainer.compute_loss(model, batch)
    lazy.backward()
    lazy_grads = _grads(model)
    eager = GRPOTrainer.compute_loss(trainer, model, _eager_batch(trainer, batch))
    eager.backward()
    eager_grads = _grads(model)
    assert lazy.item() == pytest.approx(eager.item(), abs=1e-6)
    assert lazy.item() != 0
    assert set(lazy_grads) == set(eager_grads)
    for name, grad in lazy_grads.items():
        assert torch.allclose(grad, eager_grads[name], atol=1e-6), name


def test_capture_takes_the_policy_not_the_reference_model(tmp_path, monkeypatch):
    """With beta > 0 TRL keeps a reference model. Even when a pass of it with entropies runs inside
    the loss (as a TRL release might), the advantages are completed from the policy's entropies."""
    trainer = _trainer(tmp_path, saved=True, beta=0.04, entropy_threshold=3.0)
    assert trainer.ref_model is not None
    with torch.no_grad():
        for parameter in trainer.ref_model.parameters():
            parameter.mul_(3.0)  # a reference far from the policy: other entropies
    # TRL's reference head returns log-probs only; this one returns entropies too, as the policy's.
    add_fused_lm_head(
        trainer.ref_model, temperature=trainer.temperature, cast_lm_head_to_fp32=False,
        outputs=("log_probs", "entropy"),
    )  # fmt: skip
    batch = _batch_after_h_ini(trainer, accumulation=1)
    model = trainer.model
    original = GRPOTrainer._compute_loss
    read: dict[str, torch.Tensor] = {}

    def reference_pass_first(self, model, inputs):
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
        with torch.no_grad():
            self._get_per_token_logps_and_entropies(
                self.ref_model, ids, attention, inputs["completion_ids"].shape[1], compute_entropy=True
            )
        loss = original(self, model, inputs)
        read["advantages"] = inputs["advantages"]
        return loss

    monkeypatch.setattr(GRPOTrainer, "_compute_loss", reference_pass_first)
    trainer.compute_loss(model, batch)
    expected = _eager_batch(trainer, batch)["advantages"]
    assert torch.allclose(read["advantages"], expected, atol=1e-6)
    reference_view = _eager_batch(trainer, batch)
    ids, mask = batch["completion_ids"], batch["completion_mask"]
    with torch.no_grad():
        _, ref_entropies, _ = GRPOTrainer._get_per_token_logps_and_entropies(
            trainer, trainer.ref_model, torch.cat([batch["prompt_ids"], ids], 1),
            torch.cat([batch["prompt_mask"], mask], 1), ids.shape[1], compute_entropy=True,
        )  # fmt: skip
    policy_mean = algorithm.mean_completion_entropy(
        GRPOTrainer._get_per_token_logps_and_entropies(
            trainer, model, torch.cat([batch["prompt_ids"], ids], 1),
            torch.cat([batch["prompt_mask"], mask], 1), ids.shape[1], compute_entropy=True,
        )[1], mask,
    )  # fmt: skip
    ref_mean = algorithm.mean_completion_entropy(ref_entropies, mask)
    assert (policy_mean - ref_mean).abs().max() > 1e-2, "the reference should have other entropies"
    assert torch.equal(reference_view["advantages"], expected)


def _parameters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.slow
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_gtpo_switched_off_equals_trl_for_every_loss_type(tmp_path, loss_type):
    """lambda 1, gate off, gamma 0: 3 steps of GTPOTrainer equal 3 of TRL's GRPOTrainer."""
    gtpo = _trainer(tmp_path / "gtpo", max_steps=3, loss_type=loss_type, **OFF)
    gtpo.train()
    grpo = _trainer(
        tmp_path / "grpo", trainer_cls=GRPOTrainer, config_cls=GRPOConfig, max_steps=3, loss_type=loss_type
    )
    grpo.train()
    initial = _parameters(build_tiny_model(build_tokenizer(), size="test", seed=0))
    gtpo_params, grpo_params = _parameters(gtpo.model), _parameters(grpo.model)
    assert any(not torch.equal(initial[n], gtpo_params[n]) for n in initial)
    for name in gtpo_params:
        assert torch.allclose(gtpo_params[name], grpo_params[name], atol=1e-6), name


@pytest.mark.slow
@pytest.mark.parametrize("loss_type", LOSS_TYPES)
def test_gtpo_trains_with_every_loss_type(tmp_path, loss_type):
    trainer = _trainer(tmp_path, max_steps=2, loss_type=loss_type)  # the paper preset
    initial = _parameters(trainer.model)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    after = _parameters(trainer.model)
    assert any(not torch.equal(initial[n], after[n]) for n in initial)
    assert "gtpo/positive_conflict_share" in trainer.state.log_history[0]
