"""benchmarks/common.py without training: each shared variant is the same trainer whether a benchmark
builds it in Python or passes its flags to `gtpo train`, and the step clock times what it wraps."""

import time

import pytest
from trl import GRPOConfig, GRPOTrainer

from benchmarks.common import DEMO_RECIPE, TRL_TIMED, VARIANTS, StepClock, cycle_steps, paired_ratios
from gtpo import GTPOConfig, GTPOTrainer
from gtpo.app.pipeline import training_config
from gtpo.app.recipe import load_recipe


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_flags_and_python_config_agree(name, tmp_path):
    variant = VARIANTS[name]
    recipe = load_recipe(DEMO_RECIPE, [*variant.flags(), "--output_dir", str(tmp_path)])
    from_flags = training_config(recipe)
    from_python, trainer_class = variant.trainer(output_dir=str(tmp_path), use_cpu=True)
    assert type(from_flags) is type(from_python)
    assert (trainer_class is GTPOTrainer) == isinstance(from_python, GTPOConfig)
    assert from_python.loss_type == from_flags.loss_type == "grpo"
    assert from_python.beta == from_flags.beta == variant.beta
    if isinstance(from_python, GTPOConfig):
        assert from_python.preset == from_flags.preset == variant.preset
    else:
        assert type(from_python) is GRPOConfig


def test_step_clock_times_wrapped_parts():
    class Owner:
        def work(self, seconds: float) -> str:
            time.sleep(seconds)
            return "done"

    owner, clock = Owner(), StepClock()
    clock.time(owner, "work", "generation")
    for _ in range(3):
        clock.on_step_begin(None, None, None)
        assert owner.work(0.02) == "done"
        time.sleep(0.01)
        clock.on_step_end(None, None, None)
    assert len(clock.steps) == 3
    assert clock.median("generation", warmup=1) >= 0.02
    assert clock.median("step", warmup=1) >= clock.median("generation", warmup=1) + 0.01
    assert 0 < clock.median("generation", warmup=1, share=True) < 1
    assert clock.median("loss", warmup=1) == 0.0
    with pytest.raises(SystemExit, match="no whole 1-step cycle after the 3 warm-up cycles"):
        clock.median("step", warmup=3)


def test_step_clock_times_whole_generation_cycles():
    clock = StepClock()
    # A reuse run: a generating step (0.3 s) then a step on the stored batch (0.1 s), five times over.
    clock.steps = [{"step": 0.3, "generation": 0.2}, {"step": 0.1}] * 5
    assert clock.per_cycle("step", warmup=1, cycle=2) == pytest.approx([0.2] * 4)
    assert clock.per_cycle("generation", warmup=1, share=True, cycle=2) == pytest.approx([0.5] * 4)
    assert clock.median("step", warmup=0, cycle=1) == pytest.approx(0.2)  # single steps: between the modes
    clock.steps.append({"step": 0.3, "generation": 0.2})  # an unfinished cycle is left out
    assert len(clock.per_cycle("step", warmup=0, cycle=2)) == 5
    with pytest.raises(SystemExit, match="no whole 2-step cycle after the 5 warm-up cycles"):
        clock.per_cycle("step", warmup=5, cycle=2)


def test_paired_ratios_are_quartiles_of_cycle_by_cycle_ratios():
    q1, median, q3 = paired_ratios([1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 1.0, 1.0, 2.0, 2.0])
    assert median == pytest.approx(2.0)  # ratios 1, 2, 3, 2, 2.5
    assert q1 < median < q3
    with pytest.raises(ValueError):
        paired_ratios([1.0, 2.0], [1.0])


def test_cycle_steps_counts_optimisation_steps_per_generation():
    assert cycle_steps("gtpo:dapo:reuse") == cycle_steps("trl:dr_grpo:reuse") == 2
    assert cycle_steps("gtpo:dapo:aligned") == cycle_steps("trl:grpo:aligned") == 1
    assert all(cycle_steps(name) == 1 for name in VARIANTS)


@pytest.mark.parametrize("name", sorted(TRL_TIMED))
def test_timed_trl_methods_exist(name):
    assert callable(getattr(GRPOTrainer, name, None)), f"TRL's GRPOTrainer has no {name} to time"
