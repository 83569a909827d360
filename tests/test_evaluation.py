"""gtpo.app.evaluation: estimators, majority voting, settings, and end-to-end runs with resumption."""

import itertools
import json
import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtpo.app.evaluation import evaluate, generation
from gtpo.app.evaluation.metrics import majority_answer, over_seeds, pass_at_k, sample_metrics, score_sample
from gtpo.app.evaluation.results import flat_metrics, results_table
from gtpo.app.evaluation.settings import EvalConfig, EvalSettings, plan_for
from gtpo.app.models import load_model_and_tokenizer
from gtpo.app.options import load_flags
from gtpo.tasks.datasets import load_task
from gtpo.tasks.prompts import SYSTEM_PROMPTS


def _brute_pass_at_k(n, c, k):
    """Share of k-subsets of n samples (c correct) that hold at least one correct sample."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(range(n), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n), st.integers(1, n))))
def test_pass_at_k_equals_enumeration(args):
    n, c, k = args
    assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k))


def test_pass_at_k_edges():
    assert pass_at_k(64, 0, 64) == 0.0
    assert pass_at_k(64, 1, 64) == 1.0
    assert pass_at_k(64, 1, 1) == pytest.approx(1 / 64)
    assert 0 < pass_at_k(1000, 1, 500) < 1 and math.isfinite(pass_at_k(1000, 3, 999))
    with pytest.raises(ValueError, match="pass@k needs"):
        pass_at_k(4, 5, 1)


def test_majority_groups_equivalent_answers():
    assert majority_answer(["1/2", "0.5", "\\frac{1}{2}", "3", "3"]) in ("1/2",)
    assert majority_answer(["3", "4", "4", "3"]) == "3"  # tie: the class seen first
    assert majority_answer([None, "", "7"]) == "7"
    assert majority_answer([None, None]) is None


def test_score_sample():
    assert score_sample("<reasoning>r</reasoning><answer>0.5</answer>", "\\frac{1}{2}") == {
        "answer": "0.5",
        "formatted": True,
        "correct": True,
    }
    assert score_sample("<answer>0.5</answer>", "0.5")["correct"] is False
    assert score_sample("so \\boxed{0.5}", "0.5", "boxed")["correct"] is True
    assert score_sample("so \\boxed{0.5}", "0.5", "tags")["formatted"] is False


def _records(table, answers=None):
    """Problem id -> scored samples from a 0/1 correctness table (rows problems, columns samples)."""
    return {
        str(i): [
            {"correct": bool(c), "formatted": True, "answer": answers[i][j] if answers else str(c)}
            for j, c in enumerate(row)
        ]
        for i, row in enumerate(table)
    }


def test_sample_metrics_against_hand_computed_values():
    # 3 problems x 4 samples; correct counts 3, 1, 0.
    table = [[1, 1, 0, 1], [0, 0, 1, 0], [0, 0, 0, 0]]
    answers = [["7", "7", "8", "7"], ["5", "5", "6", "4"], ["1", "2", "1", "3"]]
    gold = {"0": "7", "1": "6", "2": "9"}
    metrics = sample_metrics(_records(table, answers), gold, ks=[1, 2, 4], maj_ks=[1, 3, 4])
    # avg@4: per-problem means 3/4, 1/4, 0 -> 1/3; stderr = stdev([.75, .25, 0]) / sqrt(3)
    assert metrics["avg@4"][0] == pytest.approx(1 / 3)
    assert metrics["avg@4"][1] == pytest.approx(math.sqrt(((0.75 - 1 / 3) ** 2 + (0.25 - 1 / 3) ** 2
                                                           + (1 / 3) ** 2) / 2) / math.sqrt(3))  # fmt: skip
    # per-sample accuracies 1/3, 1/3, 1/3, 1/3 -> sample std 0
    assert metrics["avg@4 sample std"] == (0.0, 0.0)
    # pass@2: 1 - C(1,2)/C(4,2) = 1, 1 - C(3,2)/C(4,2) = 1/2, 0 -> mean 1/2
    assert metrics["pass@2"][0] == pytest.approx(0.5)
    assert metrics["pass@1"][0] == pytest.approx(1 / 3)
    assert metrics["pass@4"][0] == pytest.approx(2 / 3)
    # maj@1: first answers 7 (right), 5 (wrong), 1 (wrong) -> 1/3
    # maj@3: {7,7,8} -> 7 right; {5,5,6} -> 5 wrong; {1,2,1} -> 1 wrong -> 1/3
    # maj@4: problem 2's {5,5,6,4} -> 5 wrong -> still 1/3
    assert [metrics[f"maj@{k}"][0] for k in (1, 3, 4)] == pytest.approx([1 / 3] * 3)
    assert metrics["formatting"] == (1.0, 0.0)
    uneven = sample_metrics(_records([[1, 0], [1, 1]]), {"0": "1", "1": "1"})
    # per-sample accuracies: sample 0 -> 1.0, sample 1 -> 0.5; stdev = 0.3536
    assert uneven["avg@2 sample std"][0] == pytest.approx(
        math.sqrt(((1 - 0.75) ** 2 + (0.5 - 0.75) ** 2) / 1)
    )
    greedy = sample_metrics(_records([[1], [0], [1], [1]]), dict.fromkeys("0123", "1"), greedy=True)
    assert greedy["greedy"][0] == 0.75 and "avg@1" not in greedy
    assert greedy["greedy"][1] == pytest.approx(0.5 / 2)  # stdev([1, 0, 1, 1]) = 0.5, / sqrt(4)


def test_seed_mean_and_std_against_hand_computed_values():
    per_seed = [{"avg@4": (0.25, 0.1)}, {"avg@4": (0.50, 0.2)}, {"avg@4": (0.75, 0.3)}]
    combined = over_seeds(per_seed)["avg@4"]
    assert combined["value"] == pytest.approx(0.5)
    assert combined["seed_std"] == pytest.approx(0.25)  # sample std of 0.25, 0.5, 0.75
    assert combined["stderr"] == pytest.approx(0.2)
    assert combined["per_seed"] == [0.25, 0.5, 0.75]
    assert over_seeds([{"greedy": (0.4, 0.1)}])["greedy"]["seed_std"] == 0.0


def _config(**fields):
    return EvalConfig(model_name_or_path="tiny-test", benchmarks=["aime24"], output_dir="x", **fields)


def test_protocols_set_the_published_settings_and_flags_win():
    open_r1 = {name: plan_for(_config(protocol="open-r1"), name) for name in ("aime24", "amc23", "math500")}
    assert [open_r1[n].num_samples for n in ("aime24", "amc23", "math500")] == [64, 64, 4]
    assert (open_r1["aime24"].temperature, open_r1["aime24"].top_p) == (0.6, 0.95)
    assert open_r1["math500"].answer_format == "boxed" and open_r1["math500"].k == (1,)
    qwen = plan_for(_config(protocol="qwen-math"), "math500")
    assert qwen.greedy and qwen.maj_k == (8,) and qwen.num_samples == 8 and qwen.answer_format == "boxed"
    overridden = plan_for(_config(protocol="open-r1", num_samples=2, max_new_tokens=16), "aime24")
    assert (overridden.num_samples, overridden.max_new_tokens, overridden.temperature) == (2, 16, 0.6)
    plain = plan_for(_config(), "aime24")
    assert (plain.temperature, plain.num_samples, plain.answer_format, plain.max_new_tokens) == (
        0.0,
        1,
        "tags",
        4096,
    )
    assert plan_for(_config(), "gsm8k").max_new_tokens == 1024


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--protocol", "open-r2"], "--protocol: must be one of ('open-r1', 'qwen-math'), got 'open-r2'"),
        (["--answer_format", "latex"], "--answer_format: must be one of ('tags', 'boxed', 'any')"),
        (["--protocol", "qwen-math", "--maj_k", "16"], "maj_k: must be >= 1 and <= 8 (num_samples for"),
        (["--protocol", "open-r1", "--temperature", "0"], "num_samples: 64 samples per problem need"),
        (["--top_p", "0.9"], "top_p: set, but greedy decoding (temperature 0) does not use it"),
        (["--seeds", "1", "2"], "seeds: set, but greedy decoding (temperature 0) does not use it"),
        (["--seeds", "1", "1"], "--seeds: must be distinct"),
    ],
)
def test_settings_that_cannot_run_as_asked_are_refused(flags, message):
    argv = ["--model_name_or_path", "tiny-test", "--benchmarks", "aime24", "--output_dir", "x", *flags]
    with pytest.raises(ValueError) as error:
        plan_for(load_flags(EvalConfig, argv), "aime24")
    assert message in str(error.value)


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
    settings = dict(
        num_samples=4, k=[1, 2, 4], maj_k=[1, 2, 4], temperature=1.0, max_new_tokens=8, batch_size=2
    )
    stored = evaluate(
        model, tokenizer, benchmarks=benchmarks, output_dir=tmp_path, show_progress=False, **settings
    )
    results = flat_metrics(stored)
    assert set(results) == set(files)
    for name, metrics in results.items():
        records = [json.loads(line) for line in (tmp_path / f"samples_{name}.jsonl").read_text().splitlines()]
        assert len(records) == 3 * 4
        correct = sum(r["correct"] for r in records)
        assert metrics["accuracy"] == pytest.approx(correct / 12)
        assert metrics["pass@1"] == pytest.approx(metrics["accuracy"])
        assert metrics["pass@1"] <= metrics["pass@2"] <= metrics["pass@4"] <= 1.0
        assert 0.0 <= metrics["formatting"] <= 1.0
    assert json.loads((tmp_path / "results.json").read_text()) == stored
    for name, metrics in results.items():
        assert stored["results"][name]["metrics"]["avg@4"]["value"] == metrics["avg@4"] == metrics["accuracy"]
        assert stored["settings"]["benchmarks"][name] == {
            "answer_format": "tags", "num_samples": 4, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8,
            "k": [1, 2, 4], "maj_k": [1, 2, 4], "greedy": False,
        }  # fmt: skip
        assert stored["speed"][name][0]["generated_tokens"] > 0
    table = (tmp_path / "results.md").read_text()
    assert "| benchmark | metric | value | stderr |" in table and "| aime24 | pass@4 |" in table


def test_results_table_in_lighteval_style():
    results = {
        "settings": {
            "protocol": "open-r1",
            "overrides": {"num_samples": 2},
            "seeds": [0, 1],
            "benchmarks": {"aime24": {"answer_format": "boxed", "num_samples": 2, "temperature": 0.6,
                                      "top_p": 0.95, "max_new_tokens": 64, "greedy": False}},
        },
        "results": {"aime24": {"problems": 3, "metrics": {
            "avg@2": {"value": 0.5, "seed_std": 0.125, "stderr": 0.25, "per_seed": [0.375, 0.625]}}}},
        "speed": {"aime24": [{"tokens_per_second": 10.0}, {"tokens_per_second": 20.0}]},
    }  # fmt: skip
    assert results_table(results).splitlines() == [
        "gtpo eval: protocol open-r1, seeds 0, 1 (overridden: num_samples=2)",
        "",
        "| benchmark | metric | value (mean ± std over seeds) | stderr |",
        "|---|---|---|---|",
        "| aime24 | avg@2 | 0.5000 ± 0.1250 | 0.2500 |",
        "",
        "| benchmark | problems | answer_format | num_samples | temperature | top_p | max_new_tokens "
        "| greedy | tokens/s |",
        "|---|---|---|---|---|---|---|---|---|",
        "| aime24 | 3 | boxed | 2 | 0.6 | 0.95 | 64 | False | 15.0 |",
    ]


def test_interrupted_evaluation_resumes_without_duplicates(tiny, tmp_path, monkeypatch):
    model, tokenizer = tiny
    dataset = load_task_like(6)
    settings = dict(benchmarks={"toy": dataset}, output_dir=tmp_path, max_new_tokens=6, batch_size=2)
    first = evaluate(model, tokenizer, show_progress=False, **settings)
    samples = tmp_path / "samples_toy.jsonl"
    lines = samples.read_text().splitlines()
    # Simulate a kill: keep 3 finished problems and half a line of the fourth.
    samples.write_text("\n".join(lines[:3]) + "\n" + lines[3][: len(lines[3]) // 2])
    generated = []
    real_generate = generation.generate

    def counting_generate(model, tokenizer, prompts, *args, **kwargs):
        generated.extend(p[-1]["content"] for p in prompts)
        return real_generate(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(generation, "generate", counting_generate)
    second = evaluate(model, tokenizer, show_progress=False, **settings)
    finished = {json.loads(line)["id"] for line in lines[:3]}
    questions = {row["id"]: row["prompt"][-1]["content"] for row in dataset}
    assert sorted(generated) == sorted(q for pid, q in questions.items() if pid not in finished)
    lengths = [len(tokenizer(q)["input_ids"]) for q in generated]
    assert lengths == sorted(lengths, reverse=True)  # batched longest prompt first
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    assert sorted(r["id"] for r in records) == sorted(dataset["id"])
    assert second["results"] == first["results"]  # greedy decoding: the same answers again


def load_task_like(n):
    from gtpo.tasks.arithmetic import make_arithmetic_dataset

    return make_arithmetic_dataset(n, split="test")


def test_greedy_with_several_samples_is_refused(tiny, tmp_path):
    model, tokenizer = tiny
    with pytest.raises(ValueError, match="num_samples: 2 samples per problem need temperature > 0"):
        evaluate(model, tokenizer, benchmarks={"toy": load_task_like(1)}, output_dir=tmp_path, num_samples=2)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"num_sample": 4}, "num_sample: unknown field 'num_sample' (did you mean 'num_samples'?)"),
        ({"top_p": 2.0, "temperature": 1.0}, "top_p: must be > 0 and <= 1, got 2.0"),
        (
            {"protocol": "open-r2"},
            "protocol: must be one of ('open-r1', 'qwen-math'), got 'open-r2' (did you mean 'open-r1'?)",
        ),
        ({"k": (1, 8), "num_samples": 4, "temperature": 1.0}, "k: must be >= 1 and <= 4, got 8"),
    ],
)
def test_python_settings_are_checked_as_the_flags_are(tiny, tmp_path, settings, message):
    model, tokenizer = tiny
    with pytest.raises(ValueError) as error:
        evaluate(model, tokenizer, benchmarks={"toy": load_task_like(1)}, output_dir=tmp_path, **settings)
    assert str(error.value) == message
    assert not list(tmp_path.iterdir())  # refused before anything is generated or written


def test_python_and_cli_share_one_set_of_defaults(tiny, tmp_path, monkeypatch):
    """evaluate() without settings runs the plan `gtpo eval` runs without flags (the per-benchmark
    budget, greedy, tags)."""
    model, tokenizer = tiny
    budgets = set()

    def canned_generate(model, tokenizer, prompts, num_samples, temperature, max_new_tokens, *args, **kwargs):
        budgets.add(max_new_tokens)
        return [["<reasoning>r</reasoning><answer>1</answer>"] * num_samples for _ in prompts]

    monkeypatch.setattr(generation, "generate", canned_generate)
    names = ("gsm8k", "aime24", "math500")
    results = evaluate(
        model, tokenizer, benchmarks=dict.fromkeys(names, load_task_like(2)), output_dir=tmp_path,
        show_progress=False,
    )  # fmt: skip
    argv = ["--model_name_or_path", "tiny-test", "--benchmarks", *names, "--output_dir", "x"]
    cli = load_flags(EvalConfig, argv)
    for name in names:
        assert results["settings"]["benchmarks"][name] == flat_plan(plan_for(cli, name))
        assert results["settings"]["benchmarks"][name] == flat_plan(plan_for(EvalSettings(), name))
    assert results["settings"]["benchmarks"]["gsm8k"]["max_new_tokens"] == 1024
    assert results["settings"]["benchmarks"]["aime24"]["max_new_tokens"] == 4096
    assert results["settings"]["batch_size"] == cli.batch_size == 8 and results["settings"]["seeds"] == [0]
    assert budgets == {1024, 2048, 4096}


def flat_plan(plan):
    return {key: list(value) if isinstance(value, tuple) else value for key, value in vars(plan).items()}


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
    assert "--benchmarks: must be one of" in capsys.readouterr().err


def _protocol_run(shared_data, out, protocol, *flags):
    from gtpo.app.cli import main

    argv = ["eval", "--model_name_or_path", "tiny-test", "--protocol", protocol,
            "--benchmarks", "aime24", "math500", "--limit", "2", "--max_new_tokens", "6",
            "--dataset_path", f"aime24={shared_data / 'aime24.jsonl'}",
            "--dataset_path", f"math500={shared_data / 'math500.jsonl'}",
            "--output_dir", str(out), *flags]  # fmt: skip
    assert main(argv) == 0
    return json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_open_r1_protocol_end_to_end_over_seeds(shared_data, tmp_path, capsys, monkeypatch):
    system_prompts = set()
    real_generate = generation.generate

    def recording_generate(model, tokenizer, prompts, *args, **kwargs):
        system_prompts.update(p[0]["content"] for p in prompts)
        return real_generate(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(generation, "generate", recording_generate)
    results = _protocol_run(shared_data, tmp_path, "open-r1", "--num_samples", "3", "--seeds", "0", "1")
    settings = results["settings"]
    assert settings["protocol"] == "open-r1" and settings["seeds"] == [0, 1]
    assert settings["overrides"] == {"num_samples": 3, "max_new_tokens": 6}
    assert "--num_samples 3 overrides the protocol's value" in capsys.readouterr().err
    for name in ("aime24", "math500"):
        plan = settings["benchmarks"][name]
        assert (plan["temperature"], plan["top_p"], plan["answer_format"], plan["num_samples"]) == (
            0.6, 0.95, "boxed", 3
        )  # fmt: skip
        metrics = results["results"][name]["metrics"]
        assert set(metrics) == {"avg@3", "avg@3 sample std", "pass@1", "formatting"}
        per_seed = []
        for seed in (0, 1):
            records = [
                json.loads(line) for line in (tmp_path / f"seed_{seed}" / f"samples_{name}.jsonl").open()
            ]
            assert len(records) == 2 * 3
            per_seed.append(sum(r["correct"] for r in records) / 6)
        assert metrics["avg@3"]["per_seed"] == pytest.approx(per_seed)
        assert metrics["avg@3"]["value"] == pytest.approx(sum(per_seed) / 2)
    assert "| aime24 | avg@3 |" in (tmp_path / "results.md").read_text()
    assert system_prompts == {SYSTEM_PROMPTS["boxed"]}


@pytest.mark.slow
def test_qwen_math_protocol_end_to_end_and_resumed(shared_data, tmp_path, monkeypatch):
    results = _protocol_run(shared_data, tmp_path, "qwen-math", "--num_samples", "4", "--maj_k", "4")
    for name in ("aime24", "math500"):
        metrics = results["results"][name]["metrics"]
        assert {"greedy", "maj@4", "avg@4", "formatting", "greedy formatting"} <= set(metrics)
        greedy = [json.loads(line) for line in (tmp_path / f"samples_{name}_greedy.jsonl").open()]
        assert len(greedy) == 2 and metrics["greedy"]["value"] == sum(r["correct"] for r in greedy) / 2
        assert results["settings"]["benchmarks"][name]["greedy"] is True
    generated = []
    real_generate = generation.generate

    def counting_generate(model, tokenizer, prompts, *args, **kwargs):
        generated.extend(prompts)
        return real_generate(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(generation, "generate", counting_generate)
    again = _protocol_run(shared_data, tmp_path, "qwen-math", "--num_samples", "4", "--maj_k", "4")
    assert generated == []  # every sample was on disk
    assert again["results"] == results["results"]


def test_resuming_with_other_settings_is_refused(tiny, tmp_path):
    model, tokenizer = tiny
    where = dict(benchmarks={"toy": load_task_like(2)}, output_dir=tmp_path, show_progress=False)
    evaluate(model, tokenizer, max_new_tokens=4, temperature=1.0, **where)
    with pytest.raises(ValueError, match="its samples were made with max_new_tokens 4, this run asks for 5"):
        evaluate(model, tokenizer, max_new_tokens=5, temperature=1.0, **where)
    with pytest.raises(ValueError, match="made with seed 0, this run asks for 1"):
        evaluate(model, tokenizer, max_new_tokens=4, temperature=1.0, seeds=[1], **where)
    again = evaluate(model, tokenizer, max_new_tokens=4, temperature=1.0, **where)
    assert again["results"]["toy"]["problems"] == 2


@pytest.mark.slow
def test_a_lora_run_evaluates_its_adapter_and_gtpo_eval_takes_the_adapter_directory(tmp_path, capsys):
    """`gtpo train` with a lora section and no evaluation before training: the adapter model is
    evaluated after RL, the table shows what was measured, and the saved adapter (final/, no
    config.json) loads merged into its base (kept in rl_start/) as the same policy."""
    from gtpo.app.cli import main
    from gtpo.app.models import load_model_and_tokenizer
    from gtpo.tasks.arithmetic import make_arithmetic_dataset

    run = tmp_path / "lora"
    demo = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    code = main(
        ["train", "--config", str(demo), "--output_dir", str(run), "--model_name_or_path", "tiny-test",
         "--dataset.limit", "16", "--warm_start.steps", "0", "--max_steps", "2", "--logging_steps", "1",
         "--learning_rate", "0.05", "--lora.r", "4", "--evaluation.before_training", "false",
         "--evaluation.dataset.limit", "4", "--evaluation.max_new_tokens", "8"]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "| metric | after |" in out and "before" not in out
    summary = json.loads((run / "summary.json").read_text())
    assert "before" not in summary and summary["after"]["problems"] == 4
    adapter = json.loads((run / "final" / "adapter_config.json").read_text())
    assert not (run / "final" / "config.json").exists()
    assert adapter["base_model_name_or_path"] == str((run / "rl_start").resolve())

    after = [
        json.loads(line)["completion"]
        for line in (run / "eval" / "after" / "samples_arithmetic.jsonl").open()
    ]
    problems = {"arithmetic": make_arithmetic_dataset(4, split="test", seed=1)}  # the recipe's held-out set
    completions = {}
    for name in ("final", "rl_start"):
        model, tokenizer = load_model_and_tokenizer(str(run / name))
        evaluate(model, tokenizer, benchmarks=problems, output_dir=tmp_path / name, max_new_tokens=8,
                 show_progress=False)  # fmt: skip
        completions[name] = [
            json.loads(line)["completion"] for line in (tmp_path / name / "samples_arithmetic.jsonl").open()
        ]
    assert completions["final"] == after != completions["rl_start"]  # the trained adapter, not the base

    bench = tmp_path / "bench.jsonl"
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"#### {2 * i}"} for i in range(2)]
    bench.write_text("".join(json.dumps(row) + "\n" for row in rows))
    argv = ["eval", "--model_name_or_path", str(run / "final"), "--benchmarks", "gsm8k", "--max_new_tokens",
            "4", "--dataset_path", f"gsm8k={bench}", "--output_dir", str(tmp_path / "eval")]  # fmt: skip
    assert main(argv) == 0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["results"]["gsm8k"]["problems"] == 2
