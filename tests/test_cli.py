"""Recipes, the `gtpo` command, and a shortened run of the offline demo."""

import dataclasses
import gc
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gtpo.app.cli import main
from gtpo.app.evaluation.settings import EvalConfig
from gtpo.app.options import fields_of, load_flags
from gtpo.app.recipe import TRAINING_REFUSED, Recipe, RecipeError, load_recipe
from gtpo.config import GTPOConfig
from gtpo.trainer import GTPOTrainer

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "configs" / "demo.yaml"


def test_every_shipped_recipe_loads_and_builds_its_training_config():
    from gtpo.app.pipeline import training_config

    recipes = sorted((ROOT / "configs").glob("**/*.yaml"))
    recipes = [path for path in recipes if "accelerate" not in path.parts]
    assert len(recipes) >= 13
    import torch

    for path in recipes:
        recipe = load_recipe(path)
        if recipe.training.get("bf16") and not torch.cuda.is_available():
            recipe = load_recipe(path, ["--bf16", "false"])  # the paper's runs are bf16 on GPUs
        config = training_config(recipe)
        assert config.output_dir == recipe.training["output_dir"]


def test_overrides_reach_sections_and_training_fields():
    recipe = load_recipe(
        DEMO, ["--learning_rate", "1e-5", "--dataset.limit", "12", "--evaluation.dataset.limit=3"]
    )
    assert recipe.training["learning_rate"] == 1e-5
    assert recipe.dataset.limit == 12 and recipe.evaluation.dataset.limit == 3
    assert load_recipe(DEMO, ["--model_name_or_path", "smollm2-135m"]).model_name_or_path == "smollm2-135m"


def test_list_fields_take_several_words_commas_or_yaml():
    for flags in (["--rewards", "format_reward", "correctness_reward"],
                  ["--rewards", "format_reward,correctness_reward"],
                  ["--rewards", "format_reward", "--rewards", "correctness_reward"],
                  ["--rewards=[format_reward, correctness_reward]"]):  # fmt: skip
        assert load_recipe(DEMO, flags).rewards == ["format_reward", "correctness_reward"], flags
    config = load_flags(EvalConfig, ["--model_name_or_path", "tiny-test", "--benchmarks", "gsm8k", "math",
                                     "--k", "1", "--k", "4", "--num_samples", "4", "--temperature", "0.7",
                                     "--output_dir", "out"])  # fmt: skip
    assert config.benchmarks == ["gsm8k", "math"] and config.k == [1, 4] and config.temperature == 0.7


def test_train_help_lists_every_field_with_its_help_and_default(capsys):
    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "  --gamma float | None\n      Entropy shaping: A_i - gamma * <H>_i (default 0.1)." in text
    assert "  --dataset.limit int | None\n      Use the first N problems" in text
    assert "  --warm_start.steps int\n      Supervised steps before RL; 0 skips the warm start." in text
    assert (
        "  --per_device_train_batch_size int\n      The batch size per device for training. (default: 8)"
        in text
    )
    listed = {line.split()[0][2:] for line in text.splitlines() if line.startswith("  --")}
    paths = [path for path, _ in fields_of(Recipe)]
    assert listed - {"config", "resume"} == {path.removeprefix("training.") for path in paths}
    training = {f.name for f in dataclasses.fields(GTPOConfig)}
    assert set(TRAINING_REFUSED) < training  # each a GTPOConfig field, none of them listed
    assert {path.removeprefix("training.") for path in paths if path.startswith("training.")} == (
        training - set(TRAINING_REFUSED)
    )


def test_eval_help_lists_every_field(capsys):
    assert main(["eval", "-h"]) == 0
    text = capsys.readouterr().out
    assert {line.split()[0][2:] for line in text.splitlines() if line.startswith("  --")} == {
        f.name for f in dataclasses.fields(EvalConfig)
    }
    assert "  --k list[int] | None\n      pass@k for these k (default 1 when sampling)." in text


@pytest.mark.slow
def test_shortened_demo_runs_end_to_end(tmp_path, capsys, caplog):
    """The demo recipe, shortened to seconds: warm start, evaluation, GTPO, evaluation, report."""
    run = tmp_path / "demo"
    caplog.set_level("WARNING", logger="gtpo.trainer")
    code = main(
        ["train", "--config", str(DEMO), "--output_dir", str(run), "--model_name_or_path", "tiny-test",
         "--dataset.limit", "64", "--warm_start.steps", "4", "--max_steps", "3", "--save_steps", "2",
         "--logging_steps", "1", "--evaluation.dataset.limit", "8", "--evaluation.max_new_tokens", "12"]
    )  # fmt: skip
    assert code == 0
    assert not [r for r in caplog.records if r.name == "gtpo.trainer"], "no stall warning in the demo"
    gc.collect()  # nothing keeps the trainer (or a DDP reducer) alive: end_process_group depends on it
    assert not [o for o in gc.get_objects() if isinstance(o, GTPOTrainer) and o.args.output_dir == str(run)]
    out = capsys.readouterr().out
    assert "| accuracy |" in out and "| formatting |" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["before"]["problems"] == summary["after"]["problems"] == 8
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2, 3]
    assert all("gtpo/gated_out_share" in m and "formatting" in m for m in metrics)
    assert (run / "final" / "model.safetensors").exists()
    assert (run / "checkpoint-2" / "gtpo_state.json").exists()
    assert (run / "rl_start" / "model.safetensors").exists()  # the warm-started policy, reusable
    assert (run / "config.yaml").exists()
    for plot in ("reward", "entropy", "conflict_shares", "gated_out_share", "formatting", "accuracy"):
        assert (run / "plots" / f"{plot}.png").stat().st_size > 1000
    groups = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert [g["step"] for g in groups] == [1, 2, 3]
    assert all(len(g["tokens"][i]) == len(g["completion_ids"][i]) == len(g["conflict"][i])
               for g in groups for i in range(8))  # fmt: skip
    assert set(groups[0]["rewards"]) == {"format_reward", "correctness_reward"}

    # The report renders stored files only: it works with the models and checkpoints deleted.
    for folder in ("final", "rl_start", "checkpoint-2", "checkpoint-3", "warm_start"):
        shutil.rmtree(run / folder, ignore_errors=True)
    (run / "report.html").unlink()
    assert main(["report", str(run)]) == 0
    report = (run / "report.html").read_text()
    assert "Held-out evaluation" in report and "a group trained on at step" in report


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["--loss_type=dapo", "demo_dapo.yaml"])
def test_gtpo_with_dapo_from_the_command_line(tmp_path, recipe):
    run = tmp_path / "dapo"
    config = ROOT / "configs" / recipe if recipe.endswith(".yaml") else DEMO
    extra = [] if recipe.endswith(".yaml") else [recipe]
    code = main(
        ["train", "--config", str(config), *extra, "--output_dir", str(run),
         "--model_name_or_path", "tiny-test", "--dataset.limit", "64", "--warm_start.steps", "2",
         "--max_steps", "2", "--logging_steps", "1",
         "--evaluation.dataset.limit", "4", "--evaluation.max_new_tokens", "8"]
    )  # fmt: skip
    assert code == 0
    saved = (run / "config.yaml").read_text()
    assert "loss_type: dapo" in saved
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 2 and all("gtpo/gated_out_share" in m for m in metrics)


@pytest.mark.slow
def test_grpo_baseline_with_kl_uses_the_warm_started_model_as_reference(tmp_path):
    run = tmp_path / "grpo"
    code = main(
        ["train", "--config", str(DEMO), "--output_dir", str(run), "--algorithm", "grpo", "--beta", "0.04",
         "--model_name_or_path", "tiny-test", "--dataset.limit", "64", "--warm_start.steps", "2",
         "--max_steps", "2", "--logging_steps", "1", "--evaluation.dataset.limit", "4",
         "--evaluation.max_new_tokens", "8"]
    )  # fmt: skip
    assert code == 0
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("kl" in m for m in metrics) and not any("gtpo/gated_out_share" in m for m in metrics)
    assert (run / "rl_start" / "model.safetensors").exists()


@pytest.mark.slow
def test_training_reports_to_trackio_and_tensorboard(tmp_path):
    """`report_to` with the `gtpo[trackio]` and `gtpo[tensorboard]` extras: a 2-step run, offline,
    logs every step to trackio's local store (TRACKIO_DIR) and to TensorBoard event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    env = {**os.environ, "TRACKIO_DIR": str(tmp_path / "trackio"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "gtpo", "train", "--model_name_or_path", "tiny-test",
               "--output_dir", str(run), "--dataset.limit", "16", "--max_steps", "2", "--logging_steps", "1",
               "--max_completion_length", "8", "--use_cpu", "true", "--project", "gtpo-test",
               "--report_to", "trackio", "tensorboard"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    metric = "train/gtpo/gated_out_share"
    store = sqlite3.connect(tmp_path / "trackio" / "gtpo-test.db")  # the project's local store
    rows = store.execute("SELECT step, metrics FROM metrics").fetchall()
    store.close()
    assert sorted(step for step, logged in rows if metric in json.loads(logged)) == [1, 2]
    (events,) = (run / "runs").glob("*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert [event.step for event in accumulator.Scalars(metric)] == [1, 2]


def test_a_logging_backend_that_is_not_installed_is_refused_before_anything_runs(monkeypatch):
    from transformers.integrations import integration_utils

    monkeypatch.setattr(integration_utils, "get_available_reporting_integrations", lambda: ["tensorboard"])
    with pytest.raises(RecipeError, match=r"^--report_to: 'trackio' is not installed \(pip install "):
        load_recipe(DEMO, ["--report_to", "tensorboard", "trackio"])
    assert load_recipe(DEMO, ["--report_to", "tensorboard"]).training["report_to"] == "tensorboard"


def test_a_flag_for_a_section_the_recipe_leaves_off_is_refused():
    with pytest.raises(RecipeError, match=r"^--evaluation.temperature: set, but the recipe names no"):
        load_recipe(None, ["--evaluation.temperature", "0.5"])
    # the same section switched on by a flag takes the flag's values
    recipe = load_recipe(None, ["--evaluation.dataset.name", "gsm8k", "--evaluation.temperature", "0.5"])
    assert recipe.evaluation.dataset.name == "gsm8k" and recipe.evaluation.temperature == 0.5


@pytest.mark.parametrize(("flags", "expected"), [([], "grpo"), (["--loss_type", "dapo"], "dapo")])
def test_grpo_baseline_takes_gtpos_loss_type_unless_set(tmp_path, flags, expected):
    from gtpo.app.pipeline import training_config

    recipe = load_recipe(DEMO, ["--algorithm", "grpo", "--output_dir", str(tmp_path), *flags])
    assert training_config(recipe).loss_type == expected  # TRL's own default would be "dapo"


def test_recipe_evaluation_answer_format_reaches_the_evaluation(tmp_path, monkeypatch):
    from gtpo.app import evaluation, pipeline

    seen = {}

    class Stop(Exception):
        pass

    def no_evaluation(model, tokenizer, *, benchmarks, output_dir, **settings):
        seen.update(settings)
        raise Stop

    monkeypatch.setattr(evaluation, "evaluate", no_evaluation)
    recipe = load_recipe(DEMO, ["--evaluation.answer_format", "boxed", "--output_dir", str(tmp_path)])
    with pytest.raises(Stop):
        pipeline._evaluate(None, None, recipe, None, tmp_path)
    assert seen["answer_format"] == "boxed"
    with pytest.raises(RecipeError, match=r"evaluation\.answer_format: must be one of"):
        load_recipe(DEMO, ["--evaluation.answer_format", "latex"])
