"""GTPOTrainer on CPU with a tiny model built from a config and a locally built tokenizer."""

import json
import math
import sys
from pathlib import Path

import pytest
import torch
from conftest import free_port, run_launch, spy_trl_advantages, tiny_config
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from gtpo import algorithm
from gtpo.app.models import build_tiny_model, build_tokenizer
from gtpo.checkpoints import BUFFER_FILE, STATE_FILE
from gtpo.config import GTPOConfig
from gtpo.trainer import GTPOTrainer

torch.set_num_threads(1)


def length_reward(completions, **kwargs):
    """A reward with spread inside each group, so advantages are non-zero and conflicts exist."""
    return [float(len(c[0]["content"]) % 5) for c in completions]


def _dataset(n: int = 8) -> Dataset:
    return Dataset.from_list(
        [{"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}]} for i in range(n)]
    )


def _trainer(tmp_path, trainer_cls=GTPOTrainer, config_cls=GTPOConfig, seed=0, **overrides):
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, size="test", seed=seed)
    return trainer_cls(
        model=model,
        reward_funcs=length_reward,
        args=tiny_config(tmp_path, config_cls, **overrides),
        train_dataset=_dataset(),
        processing_class=tokenizer,
    )


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------


def test_config_defaults_follow_the_paper_preset(tmp_path):
    config = tiny_config(tmp_path)
    assert config.preset == "paper"
    assert (config.positive_weight, config.negative_weight, config.gamma) == (2.0, 0.0, 0.1)
    assert config.entropy_gate == "paper" and config.entropy_threshold == pytest.approx(math.log(2))
    assert config.conflict_mode == "prefix_suffix"
    assert config.beta == 0.0 and config.loss_type == "grpo" and config.scale_rewards == "group"
    assert config.loss_temperature == config.temperature


def test_official_preset_fields(tmp_path):
    config = tiny_config(tmp_path, preset="official", temperature=0.9)
    assert config.scale_rewards == "none"
    assert config.entropy_gate == "always" and config.entropy_threshold == 0.7
    assert config.loss_temperature == 1.0
    custom = tiny_config(tmp_path, preset="official", entropy_threshold=1.02)
    assert custom.entropy_threshold == 1.02


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("preset", "fast", "GTPOConfig.preset: must be one of"),
        ("conflict_mode", "suffix", "GTPOConfig.conflict_mode: must be one of"),
        ("entropy_gate", "never", "GTPOConfig.entropy_gate: must be one of"),
        ("positive_weight", -1.0, "GTPOConfig.positive_weight: must be >= 0"),
        ("negative_weight", float("nan"), "GTPOConfig.negative_weight: must be >= 0"),
        ("gamma", -0.1, "GTPOConfig.gamma: must be >= 0"),
        ("entropy_threshold", 0.0, "GTPOConfig.entropy_threshold: must be > 0"),
        ("loss_temperature", -1.0, "GTPOConfig.loss_temperature: must be > 0"),
        ("loss_type", "ppo", "GTPOConfig.loss_type: must be one of"),
        ("loss_type", "luspo", "GTPOConfig.loss_type='luspo' is not supported: it needs"),
        ("importance_sampling_level", "sequence", "importance_sampling_level='sequence' is not supported"),
        ("num_generations", 1, "GTPOConfig.num_generations: must be >= 2, got 1"),
    ],
)
def test_config_rejects_bad_values_in_one_line(tmp_path, field, value, message):
    with pytest.raises(ValueError, match=message) as error:
        tiny_config(tmp_path, **{field: value})
    assert "\n" not in str(error.value)


def test_official_preset_rejects_batch_scaling(tmp_path):
    with pytest.raises(ValueError, match="scale_rewards='batch'"):
        tiny_config(tmp_path, preset="official", scale_rewards="batch")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("loss_type", "dapo"),
        ("multi_objective_aggregation", "normalize_then_sum"),
        ("beta", 0.04),
        ("delta", 1.5),
        ("top_entropy_quantile", 0.5),
        ("off_policy_mask_threshold", 0.5),
        ("entropy_coef", 0.01),
    ],
)
def test_official_preset_refuses_what_the_authors_loss_lacks(tmp_path, field, value):
    with pytest.raises(
        ValueError, match=f"GTPOConfig.{field}=.* not supported with preset 'official'"
    ) as error:
        tiny_config(tmp_path, preset="official", **{field: value})
    assert "\n" not in str(error.value)
    tiny_config(tmp_path, **{field: value})  # the paper preset composes with it


def test_gtpo_config_lives_in_gtpo_config():
    import gtpo
    import gtpo.config

    assert gtpo.GTPOConfig is gtpo.config.GTPOConfig is GTPOConfig


def test_trainer_needs_gtpo_config(tmp_path):
    with pytest.raises(TypeError, match="needs a GTPOConfig"):
        _trainer(tmp_path, config_cls=GRPOConfig)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def _parameters(model) -> dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_gtpo_steps_move_parameters_and_log_metrics(tmp_path):
    trainer = _trainer(tmp_path)
    before = _parameters(trainer.model)
    trainer.train()
    after = _parameters(trainer.model)
    assert any(not torch.equal(before[name], after[name]) for name in before)
    logged = {key for entry in trainer.state.log_history for key in entry}
    for name in (
        "gtpo/positive_conflict_share",
        "gtpo/negative_conflict_share",
        "gtpo/gated_out_share",
        "gtpo/mean_entropy",
        "gtpo/initial_entropy",
    ):
        assert name in logged
    assert trainer.initial_entropy is not None and trainer.initial_entropy > 0
    first = trainer.state.log_history[0]
    assert first["gtpo/initial_entropy"] == pytest.approx(trainer.initial_entropy)
    assert 0.0 <= first["gtpo/positive_conflict_share"] <= 1.0


def _entropies(trainer, batch) -> torch.Tensor:
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        _, entropies, _ = trainer._get_per_token_logps_and_entropies(
            trainer.model, ids, attention, batch["completion_ids"].shape[1], compute_entropy=True
        )
    return entropies


@pytest.mark.parametrize("preset", ["paper", "official"])
def test_advantages_are_the_algorithm_s(tmp_path, monkeypatch, preset):
    trl = spy_trl_advantages(monkeypatch)
    trainer = _trainer(tmp_path, preset=preset, max_steps=1, entropy_threshold=3.0)
    trainer.model.train()
    batch = trainer._generate_and_score_completions(
        [{"prompt": [{"role": "user", "content": "What is 1 + 1?"}]}] * 4
    )
    ids, mask, adv = batch["completion_ids"], batch["completion_mask"], trl["advantages"]
    mean_entropy = algorithm.mean_completion_entropy(_entropies(trainer, batch), mask)
    assert trainer.initial_entropy == pytest.approx(mean_entropy.mean().item(), rel=1e-5)
    gate = algorithm.entropy_gate(mean_entropy, trainer.args.entropy_gate, 3.0, trainer.initial_entropy)
    if preset == "official":
        weights, divisor = algorithm.official_token_weights(ids, mask, adv, 4)
        expected = algorithm.official_token_advantages(
            adv, weights, divisor, mean_entropy, gate, 0.1, scale=4
        )
    else:
        weights = algorithm.token_weights(algorithm.conflict_mask(ids, mask, adv, 4), adv)
        expected = algorithm.token_advantages(adv, weights, mean_entropy, gate, 0.1)
    assert batch["advantages"].shape == ids.shape
    assert torch.allclose(batch["advantages"], expected, atol=1e-6)
    group = trainer.last_group
    shaped = algorithm.shaped_advantages(adv, mean_entropy, gate, 0.1)  # what the table shows
    assert group["advantages"] == pytest.approx(shaped.tolist(), abs=1e-6)
    assert group["weights"] == [w[: int(m.sum())].tolist() for w, m in zip(weights, mask, strict=True)]
    assert [len(c) for c in group["completion_ids"]] == mask.sum(1).tolist()
    assert group["prompt"] == "What is 1 + 1?" and set(group["rewards"]) == {"length_reward"}
    assert all(set(row) <= {0, 1} for row in group["conflict"])

    # last_group: the batch's first group as plain lists, real tokens only
    group = trainer.last_group
    lengths = mask.sum(dim=1).tolist()
    assert group["prompt"] == "What is 1 + 1?"
    assert group["completion_ids"] == [ids[i, : lengths[i]].tolist() for i in range(4)]
    assert group["conflict"] == [algorithm.conflict_mask(ids, mask, adv, 4)[i, : lengths[i]].int().tolist()
                                 for i in range(4)]  # fmt: skip
    assert group["weights"] == [weights[i, : lengths[i]].tolist() for i in range(4)]
    texts = trainer.processing_class.batch_decode(group["completion_ids"], skip_special_tokens=True)
    assert group["rewards"] == {"length_reward": [float(len(t) % 5) for t in texts]}


def test_table_and_last_group_show_the_advantages_trained_on(tmp_path, monkeypatch):
    """Aligned steps: TRL's completions table and last_group hold GTPO's shaped advantages
    delta_i * (A_i - gamma * <H>_i), filled in by the loss's pass (not TRL's A_i)."""
    trl = spy_trl_advantages(monkeypatch)
    trainer = _trainer(tmp_path, entropy_threshold=3.0)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    inputs = [{"prompt": [{"role": "user", "content": "What is 1 + 1?"}]}] * 4
    trainer._generate_and_score_completions(inputs)  # H_ini
    batch = trainer._generate_and_score_completions(inputs)
    assert "advantages" not in batch  # completed in the loss's pass
    assert trainer.last_group["advantages"] == [None] * 4
    trainer.compute_loss(trainer.model, batch)
    mean_entropy = algorithm.mean_completion_entropy(_entropies(trainer, batch), batch["completion_mask"])
    adv = trl["advantages"]
    gate = algorithm.entropy_gate(mean_entropy, "paper", 3.0, trainer.initial_entropy)
    shaped = algorithm.shaped_advantages(adv, mean_entropy, gate, 0.1)
    assert not torch.allclose(shaped, adv)
    assert list(trainer._logs["advantages"]) == pytest.approx(shaped.tolist(), abs=1e-6)
    assert trainer.last_group["advantages"] == pytest.approx(shaped.tolist(), abs=1e-6)


def test_gtpo_switched_off_equals_trl_grpo(tmp_path):
    """Weights 1/1, gate off and gamma 0: K steps match TRL's GRPOTrainer (loss 'grpo', beta 0)."""
    off = dict(positive_weight=1.0, negative_weight=1.0, entropy_gate="off", gamma=0.0)
    gtpo = _trainer(tmp_path / "gtpo", max_steps=3, **off)
    gtpo.train()
    grpo = _trainer(
        tmp_path / "grpo", trainer_cls=GRPOTrainer, config_cls=GRPOConfig, max_steps=3, loss_type="grpo"
    )
    grpo.train()
    gtpo_params, grpo_params = _parameters(gtpo.model), _parameters(grpo.model)
    initial = _parameters(build_tiny_model(build_tokenizer(), size="test", seed=0))
    assert any(not torch.equal(initial[n], gtpo_params[n]) for n in initial)
    for name in gtpo_params:
        assert torch.allclose(gtpo_params[name], grpo_params[name], atol=1e-6), name


def test_gtpo_differs_from_grpo_when_on(tmp_path):
    gtpo = _trainer(tmp_path / "gtpo", max_steps=2, entropy_gate="off")
    gtpo.train()
    grpo = _trainer(
        tmp_path / "grpo", trainer_cls=GRPOTrainer, config_cls=GRPOConfig, max_steps=2, loss_type="grpo"
    )
    grpo.train()
    gtpo_params, grpo_params = _parameters(gtpo.model), _parameters(grpo.model)
    assert any(not torch.allclose(gtpo_params[n], grpo_params[n], atol=1e-6) for n in gtpo_params)


def test_official_preset_loss_is_the_official_formula(tmp_path, monkeypatch):
    trl = spy_trl_advantages(monkeypatch)
    # A random tiny model's entropy is far above 0.7; a high threshold keeps completions in the loss.
    trainer = _trainer(tmp_path, preset="official", temperature=0.9, entropy_threshold=100.0)
    model = trainer.model
    model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer's loop, which this test bypasses
    batch = trainer._generate_and_score_completions(
        [{"prompt": [{"role": "user", "content": "What is 2 + 3?"}]}] * 4
    )
    loss = trainer.compute_loss(model, batch)  # TRL's loss, on GTPO's advantages
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()

    # Log-probs and entropies come from raw logits (temperature 1), while sampling used 0.9.
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    completion_ids, mask = batch["completion_ids"], batch["completion_mask"]
    length = completion_ids.shape[1]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=attention).logits[:, -length - 1 : -1].float()
    logps, entropies, _ = trainer._get_per_token_logps_and_entropies(
        model, ids, attention, length, compute_entropy=True
    )
    at_temperature = {
        temp: torch.log_softmax(logits / temp, -1).gather(-1, completion_ids.unsqueeze(-1)).squeeze(-1)
        for temp in (1.0, 0.9)
    }
    assert torch.allclose(logps.detach(), at_temperature[1.0], atol=2e-3)
    assert not torch.allclose(logps.detach(), at_temperature[0.9], atol=1e-2)
    assert torch.allclose(entropies, algorithm.token_entropy(logits), atol=2e-3)

    # The official formula, by hand and through the algorithm core, on the same log-probs.
    mean_entropy = algorithm.mean_completion_entropy(entropies, mask)
    centred = trl["advantages"]  # scale_rewards 'none': R - mean(R)
    shaped = ((mean_entropy <= 100.0).float() * (centred - 0.1 * mean_entropy)).detach()
    weights, divisor = algorithm.official_token_weights(completion_ids, mask, centred, 4)
    by_hand = (-(shaped.unsqueeze(1) * weights * mask).sum(1) / mask.sum(1) / divisor.clamp(min=1)).sum()
    expected = algorithm.official_gtpo_loss(logps, shaped, weights, divisor, mask)
    assert expected.item() == pytest.approx(by_hand.item(), rel=1e-5, abs=1e-7)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5, abs=1e-7)
    expected.backward()
    assert any(grad.abs().max() > 0 for grad in grads.values()), "the official loss produced no gradient"
    for name, grad in grads.items():
        assert torch.allclose(grad, dict(model.named_parameters())[name].grad, atol=1e-7, rtol=1e-5), name


def test_several_iterations_and_generation_steps(tmp_path):
    """A generation batch serves 2 steps x 2 iterations: from the second step on, the policy has
    moved away from the one that sampled, so ratios differ from 1 and the clip stops some tokens."""
    trainer = _trainer(
        tmp_path,
        num_iterations=2,
        steps_per_generation=2,
        per_device_train_batch_size=4,
        max_steps=8,
        learning_rate=5e-2,
        epsilon=0.05,
    )
    trainer.train()
    logged = [e for e in trainer.state.log_history if "clip_ratio/region_mean" in e]
    assert len(logged) == 8
    region = [e["clip_ratio/region_mean"] for e in logged]
    assert all(0.0 <= r <= 1.0 for r in region)
    assert region[0] == 0.0  # the first step is on-policy: every ratio is exactly 1
    assert max(region) > 0.0, region
    assert all(e["clip_ratio/region_mean"] >= e["clip_ratio/high_mean"] for e in logged)


def test_a_generation_buffer_saved_before_the_stall_guard_resumes_exactly(tmp_path):
    """gtpo before the stall guard saved TRL's buffer without its counts (gtpo_gate,
    gtpo_shaping_only); the advantages in it are complete, so a resume from it trains what the
    uninterrupted run trained."""
    run = _trainer(tmp_path / "run", steps_per_generation=2, save_strategy="steps", save_steps=1)
    run.train()
    checkpoint = tmp_path / "run" / "out" / "checkpoint-1"  # between the two steps of one generation
    buffer_file = checkpoint / BUFFER_FILE.format(0)
    buffer = torch.load(buffer_file, weights_only=True)
    for micro_batch in buffer:
        del micro_batch["gtpo_gate"], micro_batch["gtpo_shaping_only"]
    torch.save(buffer, buffer_file)

    resumed = _trainer(tmp_path / "resumed", steps_per_generation=2)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.state.global_step == 2
    for (name, trained), (_, again) in zip(
        run.model.named_parameters(), resumed.model.named_parameters(), strict=True
    ):
        assert torch.equal(trained, again), name


@pytest.mark.slow
def test_lora_training_and_resume_restores_initial_entropy(tmp_path):
    from peft import LoraConfig

    tokenizer = build_tokenizer()
    config = tiny_config(tmp_path, max_steps=2, save_strategy="steps", save_steps=1)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = GTPOTrainer(
        model=build_tiny_model(tokenizer, size="test"),
        reward_funcs=length_reward,
        args=config,
        train_dataset=_dataset(),
        processing_class=tokenizer,
        peft_config=lora,
    )
    base_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora" not in n}
    lora_before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    assert all(torch.equal(p, dict(trainer.model.named_parameters())[n]) for n, p in base_before.items())
    assert any(not torch.equal(p, dict(trainer.model.named_parameters())[n]) for n, p in lora_before.items())
    checkpoint = tmp_path / "out" / "checkpoint-1"
    saved = json.loads((checkpoint / STATE_FILE).read_text())["initial_entropy"]
    assert saved == pytest.approx(trainer.initial_entropy)

    resumed = GTPOTrainer(
        model=build_tiny_model(tokenizer, size="test"),
        reward_funcs=length_reward,
        args=tiny_config(tmp_path, max_steps=3, save_strategy="no"),
        train_dataset=_dataset(),
        processing_class=tokenizer,
        peft_config=lora,
    )
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.initial_entropy == pytest.approx(saved)
    assert resumed.state.global_step == 3


def _run_conflict_script(out_dir, processes: int) -> dict:
    script = str(Path(__file__).with_name("ddp_conflicts.py"))
    if processes == 1:
        command = [sys.executable, script, str(out_dir)]
    else:
        # On a machine without GPUs, accelerate's multi-process launcher runs torch.distributed with gloo.
        command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes",
                   str(processes), "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                   "--num_cpu_threads_per_process", "1", "--main_process_port", str(free_port()),
                   script, str(out_dir)]  # fmt: skip
    outputs = [out_dir / f"rank{r}.pt" for r in range(processes)]
    run_launch(command, outputs)
    ranks = [torch.load(path) for path in outputs]
    assert all(rank["world"] == processes for rank in ranks)
    return {
        "weights": torch.cat([r["token_advantages"] for r in ranks]),
        "advantages": torch.cat([r["advantages"] for r in ranks]),
        "loss": torch.stack([r["loss"] for r in ranks]).mean(),  # DDP averages the processes' gradients
    }


@pytest.mark.slow
def test_two_processes_compute_what_one_does(tmp_path):
    """A group split across two processes gets the same GTPO advantages and loss as in one."""
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = _run_conflict_script(tmp_path / "one", 1)
    two = _run_conflict_script(tmp_path / "two", 2)
    assert (one["weights"] == 0).any(), "the fixed completions should contain conflicts"
    assert torch.equal(one["advantages"], two["advantages"])
    assert torch.allclose(one["weights"], two["weights"], atol=1e-6)
    assert torch.allclose(one["loss"], two["loss"], atol=1e-6)


# ---------------------------------------------------------------------------------------------
# A run that stops learning says so (GTPOConfig.stall_warning)
# ---------------------------------------------------------------------------------------------


def _stall_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "gtpo.trainer" and r.levelname == "WARNING"]


def test_a_gate_that_drops_every_completion_is_named_once(tmp_path, caplog):
    trainer = _trainer(tmp_path, entropy_gate="always", entropy_threshold=1e-6, stall_steps=2, max_steps=3)
    with caplog.at_level("WARNING", logger="gtpo.trainer"):
        trainer.train()
    assert [entry["gtpo/gated_out_share"] for entry in trainer.state.log_history[:3]] == [1.0] * 3
    (message,) = _stall_warnings(caplog)  # once for the stretch of steps 1-3
    assert "\n" not in message
    assert "gtpo/gated_out_share" in message and "steps 1-2" in message
    assert f"H_ini {trainer.initial_entropy:.3f}" in message and "entropy_threshold 1e-06" in message
    assert "raise entropy_threshold" in message and "lower the learning rate" in message


def test_training_on_shaping_alone_is_named(tmp_path, caplog):
    """Equal rewards in every group: A_i = 0, so only the shaping -gamma * <H> moves the policy."""
    tokenizer = build_tokenizer()
    trainer = GTPOTrainer(
        model=build_tiny_model(tokenizer, size="test", seed=0),
        reward_funcs=lambda completions, **kwargs: [1.0] * len(completions),
        args=tiny_config(tmp_path, entropy_gate="off", stall_steps=2, max_steps=2),
        train_dataset=_dataset(),
        processing_class=tokenizer,
    )
    with caplog.at_level("WARNING", logger="gtpo.trainer"):
        trainer.train()
    assert [entry["gtpo/shaping_only_share"] for entry in trainer.state.log_history[:2]] == [1.0] * 2
    (message,) = _stall_warnings(caplog)
    assert "gtpo/shaping_only_share" in message and "steps 1-2" in message and "gamma=0" in message


def test_stall_warning_switched_off_and_silent_on_a_learning_run(tmp_path, caplog):
    gated = _trainer(
        tmp_path / "off", entropy_gate="always", entropy_threshold=1e-6, stall_steps=1, stall_warning=False
    )
    learning = _trainer(tmp_path / "on", entropy_threshold=100.0, stall_steps=1)  # rewards differ
    with caplog.at_level("WARNING", logger="gtpo.trainer"):
        gated.train()
        learning.train()
    assert _stall_warnings(caplog) == []
    shares = [entry["gtpo/shaping_only_share"] for entry in learning.state.log_history[:2]]
    assert all(share < 1 for share in shares)
