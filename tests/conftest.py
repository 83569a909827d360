"""Shared test fixtures and helpers: the benchmark files in ../shared/data (never copied into the
project), and the small trainer configuration the trainer tests share."""

import gc
import os
import socket
import subprocess
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_finish(session: pytest.Session) -> None:
    """Exempt what collection imported (torch, transformers, sympy, ...) from garbage collection:
    transformers' Trainer calls gc.collect() at the start of every train(), which otherwise walks
    those ~450,000 objects again in every trainer test (about 0.3 s each)."""
    gc.freeze()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data. In CI (CI=true) its absence is a failure, elsewhere a skip."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"benchmark data missing: {SHARED_DATA}")
        pytest.skip(f"benchmark data not present at {SHARED_DATA}")
    return SHARED_DATA


def tiny_config(tmp_path: Path, config_cls=None, **overrides):
    """A GTPOConfig (or `config_cls`) for a few CPU steps on the tiny test model: 4 completions per
    step in one group, 8 tokens each, no checkpoints, no logging backends."""
    from gtpo.config import GTPOConfig

    fields = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=8,
        max_steps=2,
        learning_rate=1e-2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        seed=0,
        use_cpu=True,
        disable_tqdm=True,
        temperature=1.0,
    )
    fields.update(overrides)
    return (config_cls or GTPOConfig)(**fields)


def free_port() -> int:
    """A TCP port free right now, for a multi-process launch that must not collide with another's."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spy_trl_advantages(monkeypatch) -> dict:
    """Record the advantages TRL computes (before GTPO's transform) in the returned dict."""
    from trl import GRPOTrainer

    seen: dict = {}
    original = GRPOTrainer._generate_and_score_completions

    def spy(self, inputs):
        output = original(self, inputs)
        seen["advantages"] = output["advantages"].clone()
        return output

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", spy)
    return seen


def run_launch(command: list[str], outputs: list) -> None:
    """Run a training script (or its multi-process launch) on CPU only, as the GPU-less machines do;
    it must exit 0 and every process must have written its output file."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    missing = [str(path) for path in outputs if not path.exists()]
    assert not missing, f"no output from {missing}: {result.stderr[-3000:]}"
