"""gtpo.app.evaluation: estimators, majority voting, and end-to-end runs with resumption."""

import itertools
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtpo.app import evaluation as E
from gtpo.app.models import load_model_and_tokenizer
from gtpo.tasks.datasets import load_task


def _brute_pass_at_k(n, c, k):
    """Share of k-subsets of n samples (c correct) that hold at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_equals_enumeration(args):
    n, c, k = args
    assert E.pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k))


def test_pass_at_k_edges():
    assert E.pass_at_k(64, 0, 64) == 0.0
    assert E.pass_at_k(64, 1, 64) == 1.0
    assert E.pass_at_k(64, 1, 1) == pytest.approx(1 / 64)
    assert 0 < E.pass_at_k(1000, 1, 500) < 1 and math.isfinite(E.pass_at_k(1000, 3, 999))
    with pytest.raises(ValueError, match="pass@k needs"):
        E.pass_at_k(4, 5, 1)


def test_majority_groups_equivalent_answers():
    assert E.majority_answer(["1/2", "0.5", "\\frac{1}{2}", "3", "3"]) in ("1/2",)
    assert E.majority_answer(["3", "4", "4", "3"]) == "3"  # tie: the class seen first
    assert E.majority_answer([None, "", "7"]) == "7"
    assert E.majority_answer([None, None]) is None


def test_score_sample():
    assert E.score_sample("<reasoning>r</reasoning><answer>0.5</answer>", "\\frac{1}{2}") == {
        "answer": "0.5",
        "formatted": True,
        "correct": True,
    }
    assert E.score_sample("<answer>0.5</answer>", "0.5")["correct"] is False


def test_results_table():
    table = E.results_table({"gsm8k": {"problems": 2, "accuracy": 0.5}})
    assert table.splitlines() == [
        "| benchmark | problems | accuracy |",
        "|---|---|---|",
        "| gsm8k | 2 | 0.500 |",
    ]


@pytest.fixture(scope="module")
def tiny():
    return load_model_and_tokenizer("tiny-test")


def test_evaluate_every_shared_benchmark_end_to_end(tiny, shared_data, tmp_path):
    model, tokenizer = tiny
    files = {
        "gsm8k": "gsm8k_test",
        "math500": "math500",
        "aime24": "aime24",
        "aime25": "aime25",
        "amc23": "amc23",
    }
    benchmarks = {
        name: load_task(name, path=shared_data / f"{f}.jsonl", limit=3) for name, f in files.items()
    }
    settings = dict(num_samples=4, ks=[1, 2, 4], temperature=1.0, max_new_tokens=8, batch_size=2)
    results = E.evaluate(model, tokenizer, benchmarks, tmp_path, show_progress=False, **settings)
    assert set(results) == set(files)
    for name, metrics in results.items():
        records = [json.loads(line) for line in (tmp_path / f"samples_{name}.jsonl").read_text().splitlines()]
        assert len(records) == 3 * 4
        correct = sum(r["correct"] for r in records)
        assert metrics["accuracy"] == pytest.approx(correct / 12)
        assert metrics["pass@1"] == pytest.approx(metrics["accuracy"])
        assert metrics["pass@1"] <= metrics["pass@2"] <= metrics["pass@4"] <= 1.0
        assert 0.0 <= metrics["formatting"] <= 1.0
    assert json.loads((tmp_path / "results.json").read_text()) == results
    assert (tmp_path / "results.md").read_text().startswith("| benchmark |")


def test_interrupted_evaluation_resumes_without_duplicates(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    dataset = load_task_like(6)
    first = E.evaluate(
        model, tokenizer, {"toy": dataset}, tmp_path, max_new_tokens=6, batch_size=2, show_progress=False
    )
    samples = tmp_path / "samples_toy.jsonl"
    lines = samples.read_text().splitlines()
    # Simulate a kill: keep 3 finished problems and half a line of the fourth.
    samples.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    generated = []
    real_generate = E.generate

    def counting_generate(model, tokenizer, prompts, *args, **kwargs):
        generated.extend(p[-1]["content"] for p in prompts)
        return real_generate(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(E, "generate", counting_generate)
    second = E.evaluate(
        model, tokenizer, {"toy": dataset}, tmp_path, max_new_tokens=6, batch_size=2, show_progress=False
    )
    assert generated == [row["prompt"][-1]["content"] for row in dataset][3:]
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(dataset["id"])
    assert second == first  # greedy decoding: the same answers again


def load_task_like(n):
    from gtpo.tasks.arithmetic import make_arithmetic_dataset

    return make_arithmetic_dataset(n, split="test")


def test_greedy_with_several_samples_is_refused(tiny, tmp_path):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="num_samples: 2 samples per problem need temperature > 0"):
        E.evaluate(model, tokenizer, {"toy": load_task_like(1)}, tmp_path, num_samples=2, temperature=0.0)


def test_cli_eval(shared_data, tmp_path, capsys):
    from gtpo.app.cli import main

    code = main(
        ["eval", "--model_name_or_path", "tiny-test", "--benchmarks", "aime24", "amc23",
         "--dataset_path", f"aime24={shared_data / 'aime24.jsonl'}",
         "--dataset_path", f"amc23={shared_data / 'amc23.jsonl'}",
         "--limit", "2", "--max_new_tokens", "4", "--output_dir", str(tmp_path)]
    )  # fmt: skip
    assert code == 0
    assert "| aime24 |" in capsys.readouterr().out
    assert Path(tmp_path / "samples_amc23.jsonl").exists()
    assert (
        main(["eval", "--model_name_or_path", "tiny-test", "--benchmarks", "aime26", "--output_dir", "x"])
        == 2
    )
    assert "got 'aime26' (did you mean 'aime25'?)" in capsys.readouterr().err
