"""gtpo.app.warmstart: the partly formatted SFT warm start."""

import pytest
import torch

from gtpo.app.models import build_tiny_model, build_tokenizer
from gtpo.app.warmstart import warm_start, warm_start_dataset, warm_start_target
from gtpo.tasks.arithmetic import make_arithmetic_dataset
from gtpo.tasks.rewards import extract_answer, format_score


def test_target_styles_score_as_intended():
    full = warm_start_target("2+3=5", "5", "full")
    assert full == "<reasoning>2+3=5</reasoning>\n<answer>5</answer>"
    assert format_score(full) == 10.0 and extract_answer(full) == "5"
    assert format_score(warm_start_target("2+3=5", "5", "reasoning_only")) == 1.0
    assert format_score(warm_start_target("2+3=5", "5", "answer_only")) == 1.0
    with pytest.raises(ValueError, match="unknown target style"):
        warm_start_target("2+3=5", "5", "latex")


@pytest.mark.parametrize("fraction", [0.0, 0.3, 1.0])
def test_format_fraction_is_honoured(fraction):
    rows = warm_start_dataset(make_arithmetic_dataset(1000, seed=2), fraction, seed=2)
    assert rows.column_names == ["prompt", "completion"]
    targets = [row["completion"][0]["content"] for row in rows]
    scores = [format_score(t) for t in targets]
    full = sum(score == 10.0 for score in scores) / len(scores)
    assert abs(full - fraction) < 0.05
    assert all(score in (1.0, 10.0) for score in scores)
    if fraction < 1:
        partial = [t for t, s in zip(targets, scores, strict=True) if s == 1.0]
        assert any("<reasoning>" in t for t in partial) and any("<answer>" in t for t in partial)


def test_bad_fraction():
    with pytest.raises(ValueError, match="format_fraction"):
        warm_start_dataset(make_arithmetic_dataset(5), 1.5)


@pytest.mark.slow
def test_a_few_steps_train_the_model(tmp_path):
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, size="test")
    before = [p.detach().clone() for p in model.parameters()]
    trained = warm_start(
        model,
        tokenizer,
        make_arithmetic_dataset(16),
        steps=3,
        format_fraction=0.5,
        output_dir=str(tmp_path),
        batch_size=4,
    )
    assert any(not torch.equal(a, b) for a, b in zip(before, trained.parameters(), strict=True))
    assert all(torch.isfinite(p).all() for p in trained.parameters())


@pytest.mark.slow
def test_the_warm_started_model_computes_as_it_will_once_saved(tmp_path):
    """SFT runs under TRL's default mixed precision (bf16, CPU included); the returned model must not
    keep accelerate's autocast forward, or it would score differently from its saved copy."""
    from transformers import AutoModelForCausalLM

    tokenizer = build_tokenizer()
    trained = warm_start(
        build_tiny_model(tokenizer, size="test"),
        tokenizer,
        make_arithmetic_dataset(16),
        steps=2,
        format_fraction=0.5,
        output_dir=str(tmp_path / "sft"),
        batch_size=4,
    )
    trained.save_pretrained(tmp_path / "saved")
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "saved")
    ids = torch.tensor([tokenizer.encode("<reasoning>12+30=42</reasoning>")])
    trained.eval()
    with torch.no_grad():
        assert torch.equal(trained(ids).logits, saved(ids).logits)
