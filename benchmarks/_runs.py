"""Pieces the learning and stability benchmarks share: `gtpo train` runs in child processes, reused
when finished, several at a time, and a seed's runs started from one warm-started policy."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = ROOT / "configs" / "demo.yaml"
K = TypeVar("K", bound=Hashable)


def smoothed(values: list[float], window: int = 10) -> list[float]:
    """Trailing moving average (training metrics come from one small batch per step)."""
    return [statistics.mean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def from_start(rl_start: Path) -> list[str]:
    """`gtpo train` flags that start RL from a saved warm-started policy (another run's rl_start/),
    without repeating the warm start or the evaluation before RL (same start, same scores)."""
    return ["--model_name_or_path", str(rl_start), "--warm_start.steps", "0",
            "--evaluation.before_training", "false"]  # fmt: skip


def train(run_dir: Path, flags: list[str], threads: int | None) -> dict[str, Any]:
    """One `gtpo train --output_dir run_dir FLAGS...` in a child process (`threads` CPU threads), or
    the finished run already there; returns its summary.json and metrics.jsonl records."""
    if not (run_dir / "summary.json").exists():
        command = [sys.executable, "-m", "gtpo", "train", "--output_dir", str(run_dir), *flags]
        env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise SystemExit(f"{run_dir} failed:\n{result.stderr[-3000:]}")
    from gtpo.jsonl import read_jsonl

    summary = json.loads((run_dir / "summary.json").read_text())
    return {"summary": summary, "metrics": read_jsonl(run_dir / "metrics.jsonl")}


def threads_per_run(jobs: int) -> int | None:
    """One CPU thread per run when several run at a time; torch's default otherwise."""
    return 1 if jobs > 1 else None


def after_first(
    keys: list[K],
    first: Callable[[K], Any],
    rest: Callable[[K, Any], dict[Hashable, Callable[[], Any]]],
    jobs: int,
) -> tuple[dict[K, Any], dict[Hashable, Any]]:
    """first(key) for every key (a seed, say), then the jobs rest(key, first's result) names, each
    once its key's first has finished, `jobs` at a time. Returns first's results by key and the
    jobs' results by their names."""
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        pending = {pool.submit(first, key): key for key in keys}
        firsts: dict[K, Any] = {}
        started = {}
        for future in as_completed(pending):
            key = pending[future]
            firsts[key] = future.result()
            for name, job in rest(key, firsts[key]).items():
                started[pool.submit(job)] = name
        results = {started[future]: future.result() for future in as_completed(started)}
    return firsts, results
