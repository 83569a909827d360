"""Recipes, the `gtpo` command, and a shortened run of the offline demo."""

import json
import shutil
from pathlib import Path

import pytest

from gtpo.app.cli import main
from gtpo.app.recipe import RecipeError, load_recipe

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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["--learnig_rate", "1"], "--learnig_rate: unknown flag (did you mean 'learning_rate'?)"),
        (["--max_steps", "ten"], "--max_steps: expected an integer, got 'ten'"),
        (["--dataset.limt", "3"], "unknown field 'limt' (did you mean 'limit'?)"),
        (["--warm_start.format_fraction", "lots"], "warm_start.format_fraction: expected a number"),
        (["--algorithm", "ppo"], "algorithm: must be one of ('gtpo', 'grpo')"),
        (["--max_steps"], "flag --max_steps needs a value"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_overrides_fail_in_one_line(overrides, message):
    with pytest.raises(RecipeError) as error:
        load_recipe(DEMO, overrides)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_bad_recipe_files(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("training: [unclosed\n")
    with pytest.raises(RecipeError, match=r"broken\.yaml: line 2 is not valid YAML"):
        load_recipe(broken)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("training:\n  output_dir: x\n  num_generation: 8\n")
    with pytest.raises(
        RecipeError, match=r"num_generation: unknown training field \(did you mean .num_generations.\?\)"
    ):
        load_recipe(wrong)


def test_shortened_demo_runs_end_to_end(tmp_path, capsys):
    """The demo recipe, shortened to seconds: warm start, evaluation, GTPO, evaluation, report."""
    run = tmp_path / "demo"
    code = main(
        ["train", "--config", str(DEMO), "--output_dir", str(run), "--model_name_or_path", "tiny-test",
         "--dataset.limit", "64", "--warm_start.steps", "4", "--max_steps", "3", "--save_steps", "2",
         "--logging_steps", "1", "--evaluation.dataset.limit", "8", "--evaluation.max_new_tokens", "12"]
    )  # fmt: skip
    assert code == 0
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
