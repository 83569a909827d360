"""`gtpo train` under `accelerate launch` with two CPU processes, as a user starts it: one
evaluation sharded over the processes, one writer, and a failure on one process ending them all."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port
from test_multiprocess import cpu_variant

from gtpo.app.models import load_model_and_tokenizer
from gtpo.app.pipeline import _evaluate, load_dataset_section
from gtpo.app.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"
TINY = ["--model_name_or_path", "tiny-test"]
SHORT = ["--max_steps", "4", "--warm_start.steps", "10", "--evaluation.dataset.limit", "20"]
# Rank 1 fails in its second generation batch, while rank 0 goes on into the next collective.
FAIL_ON_RANK_1 = """
import os, sys
from gtpo.trainer import GTPOTrainer
from gtpo.app.cli import main
original = GTPOTrainer._generate_and_score_completions
def fail(self, inputs):
    if os.environ["RANK"] == "1" and self.state.global_step == 1:
        raise RuntimeError("injected failure")
    return original(self, inputs)
GTPOTrainer._generate_and_score_completions = fail
sys.exit(main(sys.argv[1:]))
"""


def _launch(config: str, program: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config,
               "--num_processes", "2", "--num_cpu_threads_per_process", "1",
               "--main_process_port", str(free_port()), *program]  # fmt: skip
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def _records(path: Path) -> dict[str, dict]:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    records = {record["id"]: record for record in lines}
    assert len(records) == len(lines), f"a problem evaluated twice in {path}"
    return records


def check_two_process_run(run: Path, result: subprocess.CompletedProcess, overrides: list[str]) -> None:
    """Exit 0, one writer and one console, each problem evaluated once, with the completions and
    metrics a one-process evaluation of the same models gives."""
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("run directory:") == 1 and result.stdout.count("| accuracy |") == 1
    for name in ("config.yaml", "summary.json", "report.html", "final", "rl_start"):
        assert (run / name).exists(), name
    recipe = load_recipe(DEMO, [*overrides, "--output_dir", str(run)])
    problems = load_dataset_section(recipe.evaluation.dataset, "test", recipe.seed + 1)
    summary = json.loads((run / "summary.json").read_text())
    for phase, model_dir in (("before", "rl_start"), ("after", "final")):
        ours = _records(run / "eval" / phase / "samples_arithmetic.jsonl")
        assert sorted(ours) == sorted(problems["id"])
        model, tokenizer = load_model_and_tokenizer(str(run / model_dir), seed=recipe.seed)
        alone = run.parent / f"one_process_{phase}"
        metrics = _evaluate(model, tokenizer, recipe, problems, alone)
        theirs = _records(alone / "samples_arithmetic.jsonl")
        assert {i: r["completion"] for i, r in ours.items()} == {
            i: r["completion"] for i, r in theirs.items()
        }
        assert summary[phase] == metrics


@pytest.mark.slow
def test_gtpo_train_on_two_processes_evaluates_once_and_writes_once(tmp_path):
    run = tmp_path / "run"
    overrides = [*TINY, *SHORT]
    config = str(ROOT / "configs" / "accelerate" / "ddp.yaml")
    result = _launch(
        config, ["-m", "gtpo", "train", "--config", str(DEMO), *overrides, "--output_dir", str(run)]
    )
    check_two_process_run(run, result, overrides)


@pytest.mark.slow
def test_gtpo_train_under_deepspeed_zero3_on_two_cpu_processes(tmp_path):
    """The same run under ZeRO-3 (configs/accelerate/deepspeed_zero3.yaml's CPU variant): the warm
    start and RL sharded by DeepSpeed, each evaluation with the parameters gathered."""
    run = tmp_path / "run"
    overrides = [*TINY, *SHORT]
    config = str(cpu_variant("deepspeed_zero3.yaml", tmp_path))
    result = _launch(
        config, ["-m", "gtpo", "train", "--config", str(DEMO), *overrides, "--output_dir", str(run)]
    )
    check_two_process_run(run, result, overrides)


@pytest.mark.slow
def test_a_failing_process_ends_every_process_with_an_error(tmp_path):
    script = tmp_path / "fail_on_rank_1.py"
    script.write_text(FAIL_ON_RANK_1)
    program = [str(script), "train", "--config", str(DEMO), *TINY, "--max_steps", "4",
               "--warm_start.steps", "0", "--evaluation.dataset.limit", "2",
               "--output_dir", str(tmp_path / "run")]  # fmt: skip
    began = time.monotonic()
    result = _launch(str(ROOT / "configs" / "accelerate" / "ddp.yaml"), program, timeout=120)
    assert result.returncode != 0
    assert time.monotonic() - began < 120
    assert "gtpo train: process 1 of 2 failed: RuntimeError: injected failure" in result.stderr
    assert not (tmp_path / "run" / "final").exists()


@pytest.mark.slow
def test_gtpo_eval_on_two_processes_equals_one_process(shared_data, tmp_path, capsys):
    from gtpo.app.cli import main

    flags = ["--model_name_or_path", "tiny-test", "--benchmarks", "gsm8k",
             "--dataset_path", f"gsm8k={shared_data / 'gsm8k_test.jsonl'}",
             "--limit", "9", "--max_new_tokens", "16", "--batch_size", "4"]  # fmt: skip
    config = str(ROOT / "configs" / "accelerate" / "ddp.yaml")
    result = _launch(config, ["-m", "gtpo", "eval", *flags, "--output_dir", str(tmp_path / "two")])
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("| gsm8k | greedy |") == 1  # the table, printed once
    assert main(["eval", *flags, "--output_dir", str(tmp_path / "one")]) == 0
    two, one = (_records(tmp_path / run / "samples_gsm8k.jsonl") for run in ("two", "one"))
    assert len(two) == 9
    assert {i: r["completion"] for i, r in two.items()} == {i: r["completion"] for i, r in one.items()}
    metrics = [json.loads((tmp_path / run / "results.json").read_text())["results"] for run in ("two", "one")]
    assert metrics[0] == metrics[1]
