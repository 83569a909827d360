"""The synthetic arithmetic task and the partial-format warm start."""

import re

import pytest
import torch

from gtpo.app.models import load_model_and_tokenizer
from gtpo.app.warmstart import warm_start, warm_start_dataset
from gtpo.tasks.arithmetic import make_arithmetic_dataset
from gtpo.tasks.rewards import format_reward


def _recompute(solution: str) -> int:
    value = None
    for step in solution.split(", "):
        left, op, right, result = re.fullmatch(r"(\d+)([+-])(\d+)=(\d+)", step).groups()
        assert value is None or int(left) == value
        value = int(left) + int(right) if op == "+" else int(left) - int(right)
        assert value == int(result) and value >= 0
    return value


def test_problems_are_exact_deterministic_and_splits_disjoint():
    train = make_arithmetic_dataset(400, "train", seed=3)
    test = make_arithmetic_dataset(100, "test", seed=3)
    assert make_arithmetic_dataset(400, "train", seed=3)["id"] == train["id"]
    assert make_arithmetic_dataset(400, "train", seed=3)["prompt"] == train["prompt"]
    for row in [*train, *test]:
        assert str(_recompute(row["solution"])) == row["answer"]
        assert row["source"] == "arithmetic" and row["prompt"][0]["role"] == "system"
    questions = {r["prompt"][1]["content"] for r in train}
    assert len(questions) == 400
    assert not questions & {r["prompt"][1]["content"] for r in test}
    with pytest.raises(ValueError, match="arithmetic split must be one of"):
        make_arithmetic_dataset(3, "valid")


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_warm_start_targets_honour_the_format_fraction(fraction):
    rows = warm_start_dataset(make_arithmetic_dataset(500, "train"), fraction, seed=1)
    rewards = format_reward([r["completion"] for r in rows])
    share = sum(r == 10.0 for r in rewards) / len(rewards)
    assert share == pytest.approx(fraction, abs=0.06)
    assert all(r in (1.0, 10.0) for r in rewards)  # partial targets hold exactly one block


def test_warm_start_trains_the_model(tmp_path):
    model, tokenizer = load_model_and_tokenizer("tiny-test")
    before = [p.detach().clone() for p in model.parameters()]
    model = warm_start(
        model, tokenizer, make_arithmetic_dataset(32, "train"), steps=3, format_fraction=0.5,
        output_dir=str(tmp_path), batch_size=8,
    )  # fmt: skip
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="format_fraction must be within"):
        warm_start_dataset(make_arithmetic_dataset(2, "train"), 1.5)
