"""Crash safety: kill -9 during training and evaluation, a crash in the middle of a checkpoint save,
checkpoint rotation, safe loading, and no files written outside the run directory.

The killed runs are real subprocesses (`python -m gtpo ...`) with HOME, TMPDIR and HF_HOME
pointed at fresh directories. The recipe is small but exercises every piece of resume state: two
steps per epoch and `steps_per_generation` 2 with `save_steps` 3, so checkpoint-3 lies in the second
epoch, after the first of the two steps that share a generation batch.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers.trainer_utils import get_last_checkpoint

from gtpo import checkpoints
from gtpo.app.cli import main
from gtpo.app.report import read_metrics

RECIPE = {
    "model_name_or_path": "tiny-test",
    "seed": 0,
    "dataset": {"name": "arithmetic", "limit": 4},
    "rewards": ["format_reward", "correctness_reward"],
    "warm_start": {"steps": 2, "batch_size": 4},
    "evaluation": {"dataset": {"name": "arithmetic", "limit": 2}, "max_new_tokens": 4, "batch_size": 2},
    "training": {
        "num_generations": 4,
        "per_device_train_batch_size": 8,
        "steps_per_generation": 2,
        "max_completion_length": 8,
        "learning_rate": 1e-3,
        "max_steps": 7,
        "save_steps": 3,
        "save_total_limit": 2,
        "logging_steps": 1,
        "use_cpu": True,
        "disable_tqdm": True,
        "report_to": "none",
    },
}
STEPS = list(range(1, 8))
CHECKPOINT_FILES = {
    "model.safetensors",
    "optimizer.pt",
    "scheduler.pt",
    "rng_state.pth",
    "trainer_state.json",
}
# Environment variables that would move caches away from HOME, TMPDIR and HF_HOME.
CACHE_VARIABLES = (
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "MPLCONFIGDIR",
    "TORCHINDUCTOR_CACHE_DIR",
    "HF_DATASETS_CACHE",
    "HF_HUB_CACHE",
    "TRANSFORMERS_CACHE",
    "TRITON_CACHE_DIR",
)
# Crash inside a checkpoint save: after the model and optimizer are written, before the RNG states.
CRASH_IN_SAVE = """
import os, sys
from transformers import Trainer
from gtpo.app.cli import main
save_rng_state = Trainer._save_rng_state
def crash(self, output_dir):
    if self.state.global_step == 6:
        os._exit(17)
    save_rng_state(self, output_dir)
Trainer._save_rng_state = crash
sys.exit(main(sys.argv[1:]))
"""


def _train_argv(recipe: Path, run: Path) -> list[str]:
    return ["train", "--config", str(recipe), "--output_dir", str(run)]


def _write_recipe(folder: Path) -> Path:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(RECIPE))
    return path


def _steps(run: Path) -> list[int]:
    return [record["step"] for record in read_metrics(run)]


def _comparable(record: dict) -> dict:
    return {key: value for key, value in record.items() if "time" not in key}


def _checkpoints(run: Path) -> list[str]:
    names = [p.name for p in run.iterdir() if p.name.startswith(("checkpoint-", checkpoints.STAGING_PREFIX))]
    return sorted(names)


def _assert_same_parameters(run: Path, reference: Path) -> None:
    """Bitwise equality: both runs execute the same CPU operations in the same order on the same
    machine, so any difference means state was lost or restored out of order."""
    ours = load_file(run / "final" / "model.safetensors")
    theirs = load_file(reference / "final" / "model.safetensors")
    assert ours.keys() == theirs.keys()
    different = [name for name in ours if not torch.equal(ours[name], theirs[name])]
    assert not different, f"parameters differ from the uninterrupted run: {different}"


def _sandbox(root: Path) -> dict[str, str]:
    """An environment whose HOME, TMPDIR and HF_HOME are fresh, empty directories under root."""
    env = {key: value for key, value in os.environ.items() if key not in CACHE_VARIABLES}
    for name, variable in (("home", "HOME"), ("tmp", "TMPDIR"), ("hf", "HF_HOME")):
        (root / name).mkdir(parents=True, exist_ok=True)
        env[variable] = str(root / name)
    (root / "cwd").mkdir(exist_ok=True)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _written_outside(root: Path, output: str) -> list[str]:
    """What appeared in the sandbox's HOME, TMPDIR, HF_HOME and working directory besides `output`.

    Allowed: the empty `torchinductor_<user>` directory that importing torch._dynamo (through peft)
    creates in the temporary directory; nothing is ever written into it."""
    found = []
    for name in ("home", "hf", "tmp"):
        for path in (root / name).rglob("*"):
            empty_inductor = path.parent == root / "tmp" and path.name.startswith("torchinductor_")
            if not (empty_inductor and path.is_dir() and not any(path.iterdir())):
                found.append(str(path.relative_to(root)))
    found += [f"cwd/{p.name}" for p in (root / "cwd").iterdir() if p.name != output]
    return found


def _kill_when(command: list[str], root: Path, env: dict[str, str], ready: Callable[[], bool]) -> None:
    """Start `python -m gtpo ...`, SIGKILL it as soon as `ready()`; fail if it ends first."""
    log_path = root / "killed.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gtpo", *command], cwd=root / "cwd", env=env, stdout=log, stderr=log
        )
        deadline = time.monotonic() + 300
        while not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"the process ended before it was killed:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The recipe run once without interruption (in this process)."""
    root = tmp_path_factory.mktemp("reference")
    run = root / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MPLCONFIGDIR", str(root / "matplotlib"))  # the report sets it otherwise
        assert main(_train_argv(_write_recipe(root), run)) == 0
    assert _steps(run) == STEPS
    return run


@pytest.mark.slow
def test_kill_9_during_training_then_resume_ends_like_an_uninterrupted_run(reference, tmp_path):
    env = _sandbox(tmp_path)
    run = tmp_path / "cwd" / "run"
    argv = _train_argv(_write_recipe(tmp_path), run)

    # Killed once checkpoint-3 is complete and step 4 is logged: step 5 or later is running.
    _kill_when(argv, tmp_path, env, lambda: (run / "checkpoint-3").is_dir() and 4 in _steps(run))
    assert not (run / "final").exists()
    last = get_last_checkpoint(str(run))
    assert last is not None and set(os.listdir(last)) >= CHECKPOINT_FILES
    logged = _steps(run)
    assert logged[-1] > int(last.rsplit("-", 1)[1])  # steps after the checkpoint will be redone
    warm_started = (run / "rl_start" / "model.safetensors").read_bytes()
    before = (run / "eval" / "before" / "samples_arithmetic.jsonl").read_bytes()

    resumed = subprocess.run(
        [sys.executable, "-m", "gtpo", *argv, "--resume"],
        cwd=tmp_path / "cwd",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {last}" in resumed.stderr

    # Same data, H_ini, optimizer and sampling: every logged value and every parameter match.
    assert _steps(run) == STEPS
    assert [_comparable(m) for m in read_metrics(run)] == [_comparable(m) for m in read_metrics(reference)]
    _assert_same_parameters(run, reference)
    # The warm start and the evaluation before training were not redone.
    assert (run / "rl_start" / "model.safetensors").read_bytes() == warm_started
    assert (run / "eval" / "before" / "samples_arithmetic.jsonl").read_bytes() == before
    summary = json.loads((run / "summary.json").read_text())
    assert summary == json.loads((reference / "summary.json").read_text())
    # save_total_limit 2: the last two checkpoints are kept, nothing staged is left.
    assert _checkpoints(run) == ["checkpoint-6", "checkpoint-7"]
    assert _written_outside(tmp_path, "run") == []


@pytest.mark.slow
def test_crash_in_the_middle_of_a_save_leaves_no_partial_checkpoint(reference, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    argv = _train_argv(_write_recipe(tmp_path), run)
    crashed = subprocess.run(
        [sys.executable, "-c", CRASH_IN_SAVE, *argv], capture_output=True, text=True, timeout=300
    )
    assert crashed.returncode == 17, crashed.stderr[-3000:]
    staged = run / f"{checkpoints.STAGING_PREFIX}6" / "checkpoint-6"
    assert {"model.safetensors", "optimizer.pt"} <= set(os.listdir(staged))  # the save was cut short
    assert "rng_state.pth" not in os.listdir(staged)
    assert not (run / "checkpoint-6").exists()
    assert get_last_checkpoint(str(run)) == str(run / "checkpoint-3")
    assert set(os.listdir(run / "checkpoint-3")) >= CHECKPOINT_FILES | {"gtpo_state.json"}

    # Resume in this process, recording every torch.load: only weights_only loads are allowed.
    loads = []
    real_load = torch.load

    def recording_load(file, *args, **kwargs):
        loads.append((Path(file).name, kwargs.get("weights_only")))
        return real_load(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", recording_load)
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))
    assert main([*argv, "--resume"]) == 0
    assert f"resuming from {run / 'checkpoint-3'}" in capsys.readouterr().err
    # checkpoint-3 lies between two steps that share one generation batch: TRL's buffer came back.
    assert {name for name, _ in loads} == {
        "optimizer.pt",
        "scheduler.pt",
        "rng_state.pth",
        "generation_buffer_0.pt",
    }
    assert all(weights_only is True for _, weights_only in loads)

    assert _steps(run) == STEPS
    _assert_same_parameters(run, reference)
    assert _checkpoints(run) == ["checkpoint-6", "checkpoint-7"]


@pytest.mark.slow
def test_kill_9_during_evaluation_then_the_same_command_finishes_it(tmp_path, monkeypatch, capsys):
    from gtpo.app.evaluation import generation

    problems = 40
    bench = tmp_path / "bench.jsonl"
    rows = [{"question": f"What is {i} plus {i}?", "answer": f"#### {2 * i}"} for i in range(problems)]
    bench.write_text("".join(json.dumps(row) + "\n" for row in rows))
    env = _sandbox(tmp_path)
    out = tmp_path / "cwd" / "out"
    samples = out / "samples_gsm8k.jsonl"
    argv = ["eval", "--model_name_or_path", "tiny-test", "--benchmarks", "gsm8k",
            "--dataset_path", f"gsm8k={bench}", "--max_new_tokens", "32", "--batch_size", "1",
            "--output_dir", str(out)]  # fmt: skip

    def lines() -> int:
        return samples.read_bytes().count(b"\n") if samples.exists() else 0

    _kill_when(argv, tmp_path, env, lambda: lines() >= 3)
    assert not (out / "results.json").exists()
    assert _written_outside(tmp_path, "out") == []
    finished = samples.read_text().splitlines()
    assert 3 <= len(finished) < problems
    # A kill in the middle of a write leaves a torn last line.
    with samples.open("a") as file:
        file.write(finished[-1][: len(finished[-1]) // 2])

    generated = []
    real_generate = generation.generate

    def counting_generate(model, tokenizer, prompts, *args, **kwargs):
        generated.extend(prompts)
        return real_generate(model, tokenizer, prompts, *args, **kwargs)

    monkeypatch.setattr(generation, "generate", counting_generate)
    assert main(argv) == 0
    done = len(finished)
    assert f"gsm8k: {done} of {problems} problems already in" in capsys.readouterr().err
    assert len(generated) == problems - done  # finished problems are not redone
    records = samples.read_text().splitlines()
    assert records[:done] == finished  # and their records are kept as they were
    ids = [json.loads(line)["id"] for line in records]
    assert sorted(ids, key=int) == [str(i) for i in range(problems)]  # no duplicates, none missing
    assert json.loads((out / "results.json").read_text())["results"]["gsm8k"]["problems"] == problems


def test_rotation_keeps_the_last_checkpoints_and_never_leaves_a_partial_one(tmp_path, monkeypatch):
    for step in (1, 2, 3, 4, 5):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "model.safetensors").write_text("x")
    checkpoints.prune(str(tmp_path), 3, best=str(tmp_path / "checkpoint-1"))
    assert _checkpoints(tmp_path) == ["checkpoint-1", "checkpoint-4", "checkpoint-5"]  # best is kept
    checkpoints.prune(str(tmp_path), 1, best=None)
    assert _checkpoints(tmp_path) == ["checkpoint-5"]

    # A crash while a checkpoint is deleted: it was renamed out of the checkpoint names first.
    (tmp_path / "checkpoint-6").mkdir()
    monkeypatch.setattr(checkpoints.shutil, "rmtree", lambda *args, **kwargs: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        checkpoints.prune(str(tmp_path), 1, best=None)
    assert _checkpoints(tmp_path) == ["checkpoint-6", "tmp-checkpoint-5-deleted"]
    monkeypatch.undo()
    checkpoints.remove_staging(str(tmp_path))
    assert _checkpoints(tmp_path) == ["checkpoint-6"]


def test_evaluation_records_are_rewritten_atomically(tmp_path, monkeypatch):
    from gtpo import jsonl
    from gtpo.app.evaluation.samples import SamplesFile

    path = tmp_path / "samples.jsonl"
    content = '{"id": "0", "sample": 0}\n{"id": "1", "sam'
    path.write_text(content)
    monkeypatch.setattr(jsonl.os, "replace", lambda *args: 1 / 0)  # a crash before the rename
    with pytest.raises(ZeroDivisionError):
        SamplesFile(path).finished(1)
    assert path.read_text() == content
    monkeypatch.undo()
    assert list(SamplesFile(path).finished(1)) == ["0"]
    assert path.read_text() == '{"id": "0", "sample": 0}\n'


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.slow
def test_resume_skips_a_damaged_newest_checkpoint_for_the_previous_one(
    reference, tmp_path, monkeypatch, capsys
):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    _truncate(run / "checkpoint-7" / "model.safetensors")
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "matplotlib"))
    assert main([*_train_argv(_write_recipe(tmp_path), run), "--resume"]) == 0
    lines = capsys.readouterr().err.splitlines()
    damaged = [line for line in lines if ": damaged, " in line]
    assert damaged == [
        f"{run / 'checkpoint-7'}: damaged, not resumed from: model.safetensors is unreadable "
        "(Error while deserializing header: incomplete metadata, file not fully covered)"
    ]
    assert any(line.startswith(f"resuming from {run / 'checkpoint-6'}") for line in lines)
    # Step 7 trained again from checkpoint-6 ends exactly as the uninterrupted run.
    _assert_same_parameters(run, reference)


@pytest.mark.slow
def test_resume_with_only_damaged_checkpoints_refuses_in_one_line_and_deletes_nothing(
    reference, tmp_path, capsys
):
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    _truncate(run / "checkpoint-7" / "model.safetensors")
    (run / "checkpoint-6" / "trainer_state.json").write_text('{"global_step": ')
    before = sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    assert main([*_train_argv(_write_recipe(tmp_path), run), "--resume"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert (
        err[-1]
        == f"gtpo train: error: --resume: no complete checkpoint in {run}; run without --resume to start over"
    )
    assert any(
        line.startswith(f"{run / 'checkpoint-6'}: damaged") and "trainer_state.json" in line for line in err
    )
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*")) == before


def test_checkpoint_problem_names_what_a_resume_would_trip_on(tmp_path):
    from safetensors.torch import save_file

    folder = tmp_path / "checkpoint-1"
    folder.mkdir()
    save_file({"weight": torch.ones(64)}, folder / "model.safetensors")
    (folder / "trainer_state.json").write_text('{"global_step": 1}')
    torch.save({"state": {}}, folder / "optimizer.pt")
    assert checkpoints.checkpoint_problem(str(folder)) is None
    _truncate(folder / "optimizer.pt")
    assert (
        checkpoints.checkpoint_problem(str(folder)) == "optimizer.pt is unreadable (File is not a zip file)"
    )
    (folder / "optimizer.pt").unlink()
    assert checkpoints.checkpoint_problem(str(folder)) == "no optimizer.pt"
    (folder / "model.safetensors").unlink()
    assert checkpoints.checkpoint_problem(str(folder)) == "no model weights (model.safetensors)"
