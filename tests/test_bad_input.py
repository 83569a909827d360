"""Bad input fails in one line, with exit code 2, before any model is loaded or anything is written:
every case goes through the real `gtpo train` / `gtpo eval` command line."""

import json
from pathlib import Path

import huggingface_hub
import pytest

import gtpo.app.models
import gtpo.tasks.datasets
from gtpo.app.cli import main

DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
GOOD_ROW = json.dumps({"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"})
FILES = {
    "good.jsonl": GOOD_ROW + "\n",
    "bad_json.jsonl": GOOD_ROW + "\n{not json\n",
    "no_answer.jsonl": json.dumps({"question": "q"}) + "\n",
    "no_question.jsonl": json.dumps({"answer": "#### 3"}) + "\n",
    "no_final.jsonl": json.dumps({"question": "q", "answer": "no final line"}) + "\n",
    "list.jsonl": "[1, 2]\n",
    "amc.jsonl": json.dumps({"problem": "p", "answer": 27.0}) + "\n",
    "empty.jsonl": "",
    "blank.jsonl": "\n\n",
    "unknown_field.yaml": "training:\n  output_dir: {tmp}/run\n  num_generation: 8\n",
    "wrong_type.yaml": "dataset:\n  limit: many\ntraining:\n  output_dir: {tmp}/run\n",
    "wrong_section.yaml": "warm_start: 300\ntraining:\n  output_dir: {tmp}/run\n",
    "not_yaml.yaml": "training: [unclosed\n",
    "list.yaml": "- a\n- b\n",
}


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Input files in tmp_path; loading a model fails the test, and the hub is out of reach."""

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked about a model")

    def offline_dataset(hub_id, *args, **kwargs):
        raise ConnectionError(f"Couldn't reach {hub_id!r} on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(gtpo.app.models, "load_model_and_tokenizer", no_model)
    monkeypatch.setattr(huggingface_hub, "repo_exists", no_hub)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(gtpo.tasks.datasets, "load_dataset", offline_dataset)
    for name, content in FILES.items():
        (tmp_path / name).write_text(content.replace("{tmp}", str(tmp_path)))
    return tmp_path


def _run(argv: list[str], tmp: Path, capsys) -> tuple[int, str]:
    """Exit code and stderr of `gtpo ...`; argparse's own errors exit through SystemExit."""
    try:
        code = main([arg.replace("{tmp}", str(tmp)) for arg in argv])
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def _assert_one_line(code: int, error: str, command: str, message: str, tmp: Path) -> None:
    assert code == 2
    assert error.startswith(f"gtpo {command}: error: ") and error.count("\n") == 1, error
    assert message.replace("{tmp}", str(tmp)) in error
    assert not (tmp / "run").exists()  # nothing written either


GSM8K = ["--dataset.name", "gsm8k", "--warm_start.steps", "0", "--dataset.path"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        # unknown names, with the nearest valid one
        (["--learnig_rate", "1"], "--learnig_rate: unknown flag (did you mean 'learning_rate'?)"),
        (["--num_generation", "8"], "--num_generation: unknown flag (did you mean 'num_generations'?)"),
        (["--dataset.limt", "3"], "--dataset.limt: unknown field 'limt' (did you mean 'limit'?)"),
        (["--warm_start.step", "3"], "--warm_start.step: unknown field 'step' (did you mean 'steps'?)"),
        (["--training", "x"], "--training: expected a mapping of GTPOConfig fields, got 'x'"),
        (["--training.a.b", "x"], "--training.a.b: unknown field 'b'"),
        (["stray"], "unexpected argument 'stray'"),
        (["--max_steps"], "flag --max_steps needs a value"),
        # wrong types
        (["--max_steps", "ten"], "--max_steps: expected an integer, got 'ten'"),
        # values that would be accepted and then ignored or misread
        (["--dataset.path", "{tmp}/good.jsonl"], "--dataset.path: the arithmetic task is generated"),
        (["--evaluation.dataset.path", "{tmp}/good.jsonl"], "--evaluation.dataset.path: the arithmetic"),
        (["--max_steps", "-3"], "--max_steps: must be >= 1, or -1 to train for num_train_epochs, got -3"),
        (["--max_steps", "0"], "--max_steps: must be >= 1, or -1 to train for num_train_epochs, got 0"),
        (["--training.seed", "3"], "--training.seed: not used by gtpo train: the recipe's seed (--seed)"),
        (["--resume_from_checkpoint", "x"], "--resume_from_checkpoint: not used by gtpo train"),
        (["--eval_strategy", "steps"], "--eval_strategy: not used by gtpo train"),
        (["--num_generations_eval", "4"], "--num_generations_eval: not used by gtpo train: the trainer"),
        (["--data_seed", "4"], "--data_seed: not used by gtpo train: the recipe's seed (--seed) also orders"),
        (
            ["--warm_start.steps", "0", "--warm_start.learning_rate", "0.1"],
            "--warm_start.learning_rate: set, but warm_start.steps is 0 (no warm start)",
        ),
        (["--algorithm", "ppo"], "--algorithm: must be one of ('gtpo', 'grpo'), got 'ppo'"),
        (["--seed", "1.5"], "--seed: expected an integer, got '1.5'"),
        (["--gamma", "high"], "--gamma: expected a number, got 'high'"),
        (["--use_cpu", "maybe"], "--use_cpu: expected true or false, got 'maybe'"),
        (["--dataset", "gsm8k"], "--dataset: expected a mapping of DatasetSection fields, got 'gsm8k'"),
        (["--lr_scheduler_type", "sideways"], "sideways is not a valid SchedulerType"),
        # out-of-range GTPO values
        (["--gamma", "-1"], "--gamma: must be >= 0, got -1.0"),
        (["--positive_weight", "nan"], "--positive_weight: must be >= 0, got nan"),
        (["--negative_weight", "inf"], "--negative_weight: must be >= 0, got inf"),
        (["--entropy_threshold", "0"], "--entropy_threshold: must be > 0, got 0.0"),
        (["--loss_temperature", "-1"], "--loss_temperature: must be > 0, got -1.0"),
        (["--preset", "fast"], "--preset: must be one of ('paper', 'official'), got 'fast'"),
        (["--conflict_mode", "suffix"], "--conflict_mode: must be one of ('prefix_suffix', 'position')"),
        (["--entropy_gate", "never"], "--entropy_gate: must be one of"),
        (["--nonfinite_rewards", "zero"], "--nonfinite_rewards: must be one of ('error', 'missing')"),
        (["--loss_type", "dapoo"], "--loss_type: must be one of ('cispo', 'grpo', "),
        (["--loss_type", "dapoo"], "got 'dapoo' (did you mean 'dapo'?)"),
        (["--loss_type", "luspo"], "GTPOConfig.loss_type='luspo' is not supported"),
        (["--algorithm", "grpo", "--gamma", "0.1"], "training.gamma: a GTPO field, but algorithm is 'grpo'"),
        (
            ["--algorithm", "grpo", "--nonfinite_rewards", "missing"],
            "training.nonfinite_rewards: a GTPO field, but algorithm is 'grpo'",
        ),
        # out-of-range training and recipe values
        (["--learning_rate", "-1e-5"], "--learning_rate: must be >= 0, got -1e-05"),
        (["--beta", "nan"], "--beta: must be >= 0, got nan"),
        (["--temperature", "0"], "--temperature: must be > 0, got 0.0"),
        (["--top_p", "1.5"], "--top_p: must be > 0 and <= 1, got 1.5"),
        (["--max_completion_length", "0"], "--max_completion_length: must be >= 1, got 0"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size: must be >= 1, got 0"),
        (["--scale_rewards", "median"], "--scale_rewards: must be one of ('group', 'none', 'batch')"),
        (["--dataset.limit", "0"], "--dataset.limit: must be >= 1, got 0"),
        (["--warm_start.format_fraction", "2"], "--warm_start.format_fraction: must be >= 0 and <= 1"),
        (["--evaluation.num_samples", "4"], "--evaluation.num_samples: 4 samples per problem need"),
        (["--lora.r", "0"], "--lora.r: must be >= 1, got 0"),
        (["--rewards", "[]"], "--rewards: name at least one reward function"),
        (["--rewards", "format_reward,speed_reward"], "unknown reward 'speed_reward'"),
        (["--reward_weights", "1,2,3"], "training.reward_weights: 3 weights for 2 reward functions"),
        # num_generations below 2 or not dividing the batch
        (["--num_generations", "1"], "--num_generations: must be >= 2, got 1"),
        (["--num_generations", "0"], "--num_generations: must be >= 2, got 0"),
        (["--num_generations", "5"], "generation_batch_size (32) must be divisible by num_generations (5)"),
        (["--per_device_train_batch_size", "12"], "must be divisible by num_generations (8)"),
        # datasets: unknown benchmark, missing file, malformed JSONL, missing column, empty
        (["--dataset.name", "gsm9k"], "unknown task 'gsm9k'; known tasks: aime24, aime25, amc23, gsm8k"),
        (["--evaluation.dataset.name", "aime26"], "unknown task 'aime26'"),
        ([*GSM8K, "{tmp}/missing.jsonl"], "{tmp}/missing.jsonl: dataset file not found"),
        ([*GSM8K, "{tmp}/bad_json.jsonl"], "{tmp}/bad_json.jsonl:2: not valid JSON"),
        ([*GSM8K, "{tmp}/list.jsonl"], "{tmp}/list.jsonl:1: expected a JSON object"),
        ([*GSM8K, "{tmp}/no_answer.jsonl"], "{tmp}/no_answer.jsonl:1: missing field 'answer'"),
        ([*GSM8K, "{tmp}/no_question.jsonl"], "{tmp}/no_question.jsonl:1: missing field 'question'"),
        ([*GSM8K, "{tmp}/no_final.jsonl"], "{tmp}/no_final.jsonl:1: field 'answer': no '####' line"),
        ([*GSM8K, "{tmp}/empty.jsonl"], "{tmp}/empty.jsonl: no rows"),
        ([*GSM8K, "{tmp}/blank.jsonl"], "{tmp}/blank.jsonl: no rows"),
        (
            ["--evaluation.dataset.name", "gsm8k", "--evaluation.dataset.path", "{tmp}/no_answer.jsonl"],
            "{tmp}/no_answer.jsonl:1: missing field 'answer'",
        ),
        (
            ["--dataset.name", "amc23", "--dataset.path", "{tmp}/amc.jsonl"],
            "warm_start.steps: the dataset has no worked solutions",
        ),
        # model names
        (["--model_name_or_path", "tiny-huge"], "unknown model 'tiny-huge'"),
        (["--model_name_or_path", "tiny_demo"], "unknown model 'tiny_demo' (did you mean 'tiny-demo'?)"),
        (["--model_name_or_path", "smollm2"], "unknown model 'smollm2' (did you mean 'smollm2-135m'?)"),
        (["--model_name_or_path", "runs/none/final"], "model 'runs/none/final': no such directory"),
        (["--model_name_or_path", "{tmp}"], "not a directory with a saved model (no config.json)"),
        (["--model_name_or_path", "nobody/no-model"], "not in the Hugging Face cache, and HF_HUB_OFFLINE"),
    ],
)
def test_train_rejects_bad_flags(workdir, capsys, flags, message):
    code, error = _run(["train", "--config", str(DEMO), "--output_dir", "{tmp}/run", *flags], workdir, capsys)
    _assert_one_line(code, error, "train", message, workdir)


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        ("missing.yaml", "{tmp}/missing.yaml: recipe file not found"),
        ("not_yaml.yaml", "{tmp}/not_yaml.yaml: line 2 is not valid YAML"),
        ("list.yaml", "{tmp}/list.yaml: a recipe is a mapping of fields, got list"),
        (
            "unknown_field.yaml",
            "{tmp}/unknown_field.yaml: training.num_generation: unknown field 'num_generation' "
            "(did you mean 'num_generations'?)",
        ),
        ("wrong_type.yaml", "{tmp}/wrong_type.yaml: dataset.limit: expected an integer, got 'many'"),
        ("wrong_section.yaml", "wrong_section.yaml: warm_start: expected a mapping of WarmStartSection"),
    ],
)
def test_train_rejects_bad_recipe_files(workdir, capsys, recipe, message):
    code, error = _run(["train", "--config", f"{{tmp}}/{recipe}"], workdir, capsys)
    _assert_one_line(code, error, "train", message, workdir)


def test_an_unknown_hub_model_is_reported_before_loading(workdir, capsys, monkeypatch):
    asked = []
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "repo_exists", lambda name: asked.append(name) or False)
    argv = ["train", "--config", str(DEMO), "--output_dir", "{tmp}/run"]
    code, error = _run([*argv, "--model_name_or_path", "nobody/no-model"], workdir, capsys)
    _assert_one_line(
        code, error, "train", "model 'nobody/no-model' not found on the Hugging Face hub", workdir
    )
    assert asked == ["nobody/no-model"]

    def unreachable(name):
        raise ConnectionError("no network")

    monkeypatch.setattr(huggingface_hub, "repo_exists", unreachable)
    code, error = _run([*argv, "--model_name_or_path", "nobody/no-model"], workdir, capsys)
    _assert_one_line(code, error, "train", "the hub could not be reached (ConnectionError)", workdir)


EVAL = ["eval", "--model_name_or_path", "tiny-test", "--output_dir", "{tmp}/run"]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--benchmarks", "gsm9k"], "got 'gsm9k' (did you mean 'gsm8k'?)"),
        (["--benchmarks", "gsm8k", "--dataset_path", "gsm8k"], "--dataset_path: expects NAME=PATH"),
        (["--benchmarks", "gsm8k", "--temprature", "1"], "--temprature: unknown flag (did you"),
        (["--benchmarks", "gsm8k", "--limit", "abc"], "--limit: expected an integer, got 'abc'"),
        (["--benchmarks", "gsm8k", "--limit", "0"], "--limit: must be >= 1, got 0"),
        (
            ["--benchmarks", "gsm8k", "math", "--k", "1", "4", "--num_samples", "2", "--temperature", "1"],
            "--k: must be >= 1 and <= 2, got 4",
        ),
        (["--benchmarks", "gsm8k", "--top_p", "0.9"], "--top_p: set, but greedy decoding"),
        (["--benchmarks", "gsm8k", "--seeds", "3"], "--seeds: set, but greedy decoding"),
        (
            ["--benchmarks", "gsm8k", "--dataset_path", "math={tmp}/good.jsonl"],
            "--dataset_path: 'math' is not one of the benchmarks ['gsm8k']",
        ),
        (["--output_dir", "{tmp}/run", "x"], "--output_dir: takes one value; unexpected argument 'x'"),
        (["--benchmarks", "gsm8k", "--k", "0"], "--k: set, but greedy decoding"),
        (["--benchmarks", "gsm8k", "--num_samples", "4"], "--num_samples: 4 samples per problem need"),
        (["--benchmarks", "gsm8k", "--top_p", "0"], "--top_p: must be > 0 and <= 1, got 0.0"),
        (["--benchmarks", "gsm8k", "--temperature", "-1"], "--temperature: must be >= 0, got -1.0"),
        (["--benchmarks", "gsm8k", "--model_name_or_path", "tiny-dmo"], "unknown model 'tiny-dmo'"),
        (["--benchmarks", "gsm8k", "--dataset_path", "gsm8k={tmp}/nope.jsonl"], "dataset file not found"),
        (["--benchmarks", "gsm8k", "--dataset_path", "gsm8k={tmp}/bad_json.jsonl"], "bad_json.jsonl:2: not"),
        (
            ["--benchmarks", "gsm8k", "--dataset_path", "gsm8k={tmp}/no_answer.jsonl"],
            "no_answer.jsonl:1: missing field 'answer'",
        ),
        (["--benchmarks", "gsm8k", "--dataset_path", "gsm8k={tmp}/empty.jsonl"], "empty.jsonl: no rows"),
        (["--benchmarks", "gsm8k"], "openai/gsm8k[test] could not be loaded from the hub"),
    ],
)
def test_eval_rejects_bad_flags(workdir, capsys, flags, message):
    code, error = _run([*EVAL, *flags], workdir, capsys)
    _assert_one_line(code, error, "eval", message, workdir)
