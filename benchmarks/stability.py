"""Collapse study: where GTPO beats GRPO, and where it does not.

A sweep of stress cells (the demo recipe, configs/demo.yaml, with one setting pushed: RL learning
rate, sampling temperature, group size, completion length limit, updates per batch, a format still
fragile when RL starts) for the variants below, over several seeds. All variants of one seed (and
one warm start) start RL from the same saved policy, `rl_start/` of a start run made once per seed,
so they differ only in the RL algorithm. `--model smollm2-135m` runs the pretrained
SmolLM2-135M-Instruct on the same arithmetic task instead (GTPO against GRPO beta 0, steps chosen
from a time budget per run).

Collapse, fixed before any result was seen and applied the same way to every run. Each training
metric below is read from metrics.jsonl (one record per RL step) as a 10-step trailing mean, from
the 10th step on (so one lucky first batch is no "best"); a run collapsed at the first step of the
first stretch of K = 10 consecutive steps on which one of these holds:
  * length:     completions/clipped_ratio > 0.5 (most completions stop at the length limit);
  * formatting: formatting (share of completions with the full format reward) < 0.5, once it has
                been >= 0.5 in an earlier step (the format was held, then lost);
  * accuracy:   accuracy (share of completions rewarded correct) < half its best so far, once that
                best is >= 0.1.
A run that none of these fired on still collapsed ("held-out formatting", no step) if its greedy
held-out formatting after RL is below half its value before RL (the policy lost the format under
greedy decoding while sampling kept it). Entropy is plotted but is no part of the rule: GTPO's gate
acts on that very quantity, so a rule on it would favour GTPO by construction.

Reported per cell and variant: collapse rate, collapse steps, held-out accuracy and formatting after
RL (mean +- std over seeds), and for each variant against its baseline (PAIRS) the per-seed paired
difference with a 95% percentile bootstrap interval of its mean (10,000 resamples, numpy, seed 0).
Plots, one per cell: mean length, formatting, entropy and training accuracy over steps, one column
per variant, one thin line per seed (10-step trailing mean), a cross where a run collapsed.

Cell `long` (the paper's regime): 1 prompt x 8 completions per step for 1,500 steps at the demo's
learning rate, a weights-only checkpoint every 250 steps, each evaluated after the run (with the
seed's rl_start/ as step 0) by the held-out evaluation summary.json uses. Its endpoints are the
curve's last point; it adds the area under the held-out accuracy and formatting curves (trapezoids
divided by the step range) to the paired statistics, and its figure shows the curves.

Every finished run leaves a small JSON record (settings, collapse, endpoints, held-out curve, training
series) in --results (benchmarks/results/stability_<cell>/<variant>_seed<k>.json for a full run); a
recorded run is never redone, so a later session resumes the study, and `--report` renders tables
and figures from the records alone. Runs go the key pair (GRPO beta 0, GTPO paper) on every seed
first, seed by seed, then the other variants; no run starts once OUT/STOP exists.

    python -m benchmarks.stability --jobs 2                  # default cells, 6 variants, seeds 0-4
    python -m benchmarks.stability --jobs 2 --quick          # 1 cell, GRPO beta 0 vs GTPO, 3 seeds
    python -m benchmarks.stability --jobs 2 --cells all --loss_types
    python -m benchmarks.stability --jobs 2 --model smollm2-135m --budget_minutes 30
    python -m benchmarks.stability --jobs 2 --cells long --out runs/long   # its 4 variants, 5 seeds
    python -m benchmarks.stability --cells long --report                     # from the records

Flags it does not know go to every `gtpo train` (e.g. `--dataset.limit 1000`), unless the script
itself sets that field, which is refused.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks import common
from benchmarks.common import (
    DEMO_RECIPE,
    ROOT,
    WINDOW,
    Collapse,
    collapse,
    from_start,
    threads_per_run,
    trailing_means,
    train,
)

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0

VARIANTS: dict[str, tuple[str, ...]] = {
    # The shared four (benchmarks.common: GRPO's baselines use GRPO's loss_type, as GTPO does), then
    # the two ablations.
    **{
        name: common.VARIANTS[name].flags()
        for name in ("grpo_beta0", "grpo_beta0.04", "gtpo_paper", "gtpo_official")
    },
    "conflict_only": ("--entropy_gate", "off", "--gamma", "0"),
    "entropy_only": ("--positive_weight", "1", "--negative_weight", "1"),
}
# GTPO on TRL's other loss types (needs the token-level GTPO of issue 10): DAPO's token-level
# normalisation with its clip-higher epsilon, Dr. GRPO's constant normaliser without std scaling.
LOSS_TYPE_VARIANTS: dict[str, tuple[str, ...]] = {
    "dapo": ("--algorithm", "grpo", "--loss_type", "dapo", "--epsilon_high", "0.28"),
    "dapo_gtpo": ("--loss_type", "dapo", "--epsilon_high", "0.28"),
    "dr_grpo": ("--algorithm", "grpo", "--loss_type", "dr_grpo", "--scale_rewards", "none"),
    "dr_grpo_gtpo": ("--loss_type", "dr_grpo", "--scale_rewards", "none"),
}
ALL_VARIANTS = {**VARIANTS, **LOSS_TYPE_VARIANTS}
# variant -> the baseline its paired difference is taken against
PAIRS = {
    "grpo_beta0.04": "grpo_beta0",
    "gtpo_paper": "grpo_beta0",
    "gtpo_official": "grpo_beta0",
    "conflict_only": "grpo_beta0",
    "entropy_only": "grpo_beta0",
    "dapo_gtpo": "dapo",
    "dr_grpo_gtpo": "dr_grpo",
}


@dataclass(frozen=True)
class Cell:
    """One stress setting: flags for the RL runs and, when it changes the warm start, for it; its
    own RL steps (else the model's default) and, for a held-out curve, the steps between two
    held-out evaluations (saved checkpoints, evaluated after the run)."""

    rl: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    steps: int | None = None
    held_out_every: int | None = None
    variants: tuple[str, ...] | None = None  # its default variants, when it is the one cell run


@dataclass(frozen=True)
class Model:
    """A model the study runs: flags over configs/demo.yaml, its cells, defaults, start steps."""

    flags: tuple[str, ...]
    cells: dict[str, Cell]
    default_cells: tuple[str, ...]
    default_variants: tuple[str, ...]
    default_seeds: tuple[int, ...]
    start_steps: int  # RL steps of the start run (its step times set the budgeted steps)
    default_out: str
    default_steps: int | None = None  # RL steps of a cell without its own; None: from the budget


DEMO_CELLS = {
    "base": Cell(),  # the demo's own settings: learning rate 1e-4, temperature 1, G = 8, 40 tokens
    "lr_3e-4": Cell(("--learning_rate", "3e-4")),
    "lr_1e-3": Cell(("--learning_rate", "1e-3")),
    "temperature_1.5": Cell(("--temperature", "1.5")),
    "group_16": Cell(("--num_generations", "16")),  # 2 prompts x 16 per step: same batch of 32
    "length_20": Cell(("--max_completion_length", "20")),
    "length_96": Cell(("--max_completion_length", "96")),
    "iterations_4": Cell(("--num_iterations", "4")),  # 4 updates per generated batch: off-policy
    "fragile_format": Cell(start=("--warm_start.steps", "100")),  # format still fragile at RL start
    # The paper's regime at the demo's learning rate: 1 prompt x 8 completions per step, 1,500 steps,
    # greedy held-out accuracy and formatting every 250 steps.
    "long": Cell(
        ("--per_device_train_batch_size", "8"),
        steps=1500,
        held_out_every=250,
        variants=("grpo_beta0", "grpo_beta0.04", "gtpo_paper", "gtpo_official"),
    ),
}
SMOLLM2_CELLS = {
    "base": Cell(),  # learning rate 1e-5, temperature 1, G = 8, 64 tokens
    "lr_1e-4": Cell(("--learning_rate", "1e-4")),
    "temperature_1.5": Cell(("--temperature", "1.5")),
}
SMOLLM2_FLAGS = (
    "--model_name_or_path", "smollm2-135m", "--warm_start.steps", "30", "--warm_start.batch_size", "8",
    "--warm_start.learning_rate", "5e-5", "--per_device_train_batch_size", "16",
    "--max_completion_length", "64",
    "--learning_rate", "1e-5", "--evaluation.max_new_tokens", "64", "--evaluation.batch_size", "25",
    "--evaluation.dataset.limit", "100",
)  # fmt: skip
MODELS = {
    "tiny-demo": Model(
        flags=(),
        cells=DEMO_CELLS,
        default_cells=("lr_1e-3", "temperature_1.5", "group_16"),
        default_variants=tuple(VARIANTS),
        default_seeds=(0, 1, 2, 3, 4),
        start_steps=1,
        default_out="runs/stability",
        default_steps=80,
    ),
    # A short warm start teaches the format partly; 2 prompts x 8 completions per RL step.
    "smollm2-135m": Model(
        flags=SMOLLM2_FLAGS,
        cells=SMOLLM2_CELLS,
        default_cells=("lr_1e-4",),
        default_variants=("grpo_beta0", "gtpo_paper"),
        default_seeds=(0, 1),
        start_steps=3,
        default_out="runs/stability_smollm2",
    ),
}
QUICK = {"cells": ["lr_1e-3"], "variants": ["grpo_beta0", "gtpo_paper"], "seeds": [0, 1, 2], "steps": 50}
SMOLLM2_QUICK = {"seeds": [0], "budget_minutes": 3.0}
# Fields the script sets on every run: given as extra flags they would be overridden or contradict it.
OWN_FIELDS = {"config", "seed", "max_steps", "logging_steps", "save_strategy", "output_dir"}
RESULTS = ROOT / "benchmarks" / "results"  # per-run records of full runs (tracked)


# ------------------------------------------------------------------------------------------------
# The collapse rule and the statistics (pure functions of metric records)
# ------------------------------------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def paired_differences(values: dict[int, float], baseline: dict[int, float]) -> dict[int, float]:
    """values[seed] - baseline[seed] for every seed; both must hold the same seeds."""
    if set(values) != set(baseline):
        raise ValueError(
            f"paired differences need the same seeds, got {sorted(values)} and {sorted(baseline)}"
        )
    return {seed: values[seed] - baseline[seed] for seed in sorted(values)}


def bootstrap_ci(
    values: list[float], level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampled with replacement)."""
    if not values:
        raise ValueError("bootstrap_ci needs at least one value")
    data = np.asarray(values, dtype=float)
    draws = np.random.default_rng(seed).integers(0, len(data), size=(resamples, len(data)))
    means = data[draws].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def curve_area(points: list[dict[str, float]], metric: str) -> float:
    """Area under a held-out curve ({"step", metric} points by step) by the trapezoid rule, divided
    by its step range: the curve's mean height, in the metric's own units."""
    if len(points) < 2:
        raise ValueError(f"curve_area needs two points or more, got {len(points)}")
    steps = [float(p["step"]) for p in points]
    values = [float(p[metric]) for p in points]
    area = sum(
        (b - a) * (u + v) / 2 for a, b, u, v in zip(steps, steps[1:], values, values[1:], strict=False)
    )
    return area / (steps[-1] - steps[0])


def _value(run: dict[str, Any], metric: str) -> float:
    """A run's held-out accuracy, formatting or curve area, or 1.0 / 0.0 for collapsed or not."""
    return float(run["collapse"] is not None) if metric == "collapsed" else float(run[metric])


def summarise(runs: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Per variant: collapse rate and steps, held-out accuracy and formatting (mean, std), and their
    curve areas where runs have held-out curves; per paired variant: differences against its
    baseline by seed (the seeds both have), their mean and bootstrap interval.
    `runs[variant][seed]` holds "collapse" (Collapse | None), "accuracy" and "formatting", and with
    a held-out curve "accuracy_area" and "formatting_area"."""
    variants = {}
    for variant, by_seed in runs.items():
        collapses = [r["collapse"] for r in by_seed.values()]
        variants[variant] = {
            "collapsed": sum(c is not None for c in collapses),
            "runs": len(collapses),
            "steps": sorted(c.step for c in collapses if c is not None and c.step is not None),
            "reasons": sorted(c.reason for c in collapses if c is not None),
            **{
                m: mean_std([r[m] for r in by_seed.values() if m in r])
                for m in _metrics(by_seed.values())
                if m != "collapsed"
            },
        }
    pairs = {}
    for variant, baseline in PAIRS.items():
        if variant not in runs or baseline not in runs:
            continue
        seeds = sorted(set(runs[variant]) & set(runs[baseline]))
        if not seeds:
            continue
        pairs[variant] = {"baseline": baseline, "seeds": seeds}
        for metric in _metrics([*(runs[variant][s] for s in seeds), *(runs[baseline][s] for s in seeds)]):
            having = [s for s in seeds if _has(runs[variant][s], metric) and _has(runs[baseline][s], metric)]
            if not having:
                continue
            differences = paired_differences(
                {s: _value(runs[variant][s], metric) for s in having},
                {s: _value(runs[baseline][s], metric) for s in having},
            )
            pairs[variant][metric] = {
                "by_seed": differences,
                "mean": statistics.mean(differences.values()),
                "ci": bootstrap_ci(list(differences.values())),
            }
    return {"variants": variants, "pairs": pairs}


def _has(run: dict[str, Any], metric: str) -> bool:
    return metric == "collapsed" or metric in run


def _metrics(runs: Iterable[dict[str, Any]]) -> tuple[str, ...]:
    """The compared metrics: endpoints and collapsed, and curve areas when some run has them (a run
    whose held-out curve is incomplete has none: it counts for the endpoints only)."""
    areas = any("accuracy_area" in r for r in runs)
    return ("accuracy", "formatting", *(("accuracy_area", "formatting_area") if areas else ()), "collapsed")


# ------------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------------


def flag_names(flags: list[str] | tuple[str, ...]) -> set[str]:
    """Field names set by `--name value` / `--name=value` flags."""
    return {f[2:].split("=", 1)[0] for f in flags if f.startswith("--")}


def without_warm_start(flags: list[str]) -> list[str]:
    """`--name value` / `--name=value` flags less those of the warm_start section."""
    kept: list[str] = []
    skip_value = False
    for flag in flags:
        if skip_value:
            skip_value = False
        elif flag.startswith("--warm_start."):
            skip_value = "=" not in flag
        else:
            kept.append(flag)
    return kept


def run_once(run_dir: Path, flags: list[str], threads: int | None) -> dict[str, Any]:
    """`train` that refuses to reuse a finished run made with other flags."""
    record = run_dir / "flags.json"
    if (run_dir / "summary.json").exists() and record.exists() and json.loads(record.read_text()) != flags:
        raise SystemExit(f"{run_dir}: made with other settings; delete it or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(flags))
    return train(run_dir, flags, threads)


def budget_steps(start_metrics: list[dict[str, Any]], budget_s: float) -> int:
    """RL steps that fit in budget_s at the start run's median step time."""
    times = [float(m["step_time"]) for m in start_metrics if "step_time" in m]
    if not times:
        raise SystemExit("the start run logged no step_time: cannot turn --budget_minutes into steps")
    return max(1, int(budget_s / statistics.median(times)))


KEY_PAIR = ("grpo_beta0", "gtpo_paper")  # run on every seed before the other variants start
TRAINING_POINTS = 150  # training series kept per run record: about this many points
TRAINING_KEYS = ("entropy", "completions/mean_length", "completions/clipped_ratio", "accuracy", "formatting")
STOP_FILE = "STOP"  # in --out: no run starts once it exists (running ones finish)


def training_series(metrics: list[dict[str, Any]]) -> dict[str, list[float]]:
    """10-step trailing means of the plotted metrics at every k-th step (k from the run's length,
    so about TRAINING_POINTS points), with their steps under "step"."""
    series: dict[str, list[float]] = {}
    for key in TRAINING_KEYS:
        steps, values = trailing_means(metrics, key)
        stride = max(1, len(steps) // TRAINING_POINTS)
        kept = [i for i in range(len(steps)) if (i + 1) % stride == 0]
        series.setdefault("step", [steps[i] for i in kept])
        series[key] = [round(values[i], 5) for i in kept]
    return series


def from_record(record: dict[str, Any]) -> dict[str, Any]:
    """A run as the tables and plots use it, from its JSON record."""
    stop = record["collapse"]
    return {**record, "collapse": Collapse(stop["reason"], stop["step"]) if stop else None}


def to_record(run: dict[str, Any]) -> dict[str, Any]:
    """A run's JSON record (the inverse of from_record)."""
    return {**run, "collapse": dataclasses.asdict(run["collapse"]) if run["collapse"] else None}


_EVALUATION = threading.Lock()  # held-out evaluations run in this process, one at a time


def held_out(model_dir: Path, run_dir: Path, out: Path, threads: int | None) -> dict[str, float]:
    """The held-out evaluation of `run_dir`'s recipe (summary.json's before/after: same problems,
    greedy, same settings) on the model saved in model_dir; results in out (a rerun reuses them)."""
    import torch

    from gtpo.app.models import load_model_and_tokenizer
    from gtpo.app.pipeline import _evaluate, load_dataset_section
    from gtpo.app.recipe import load_recipe

    recipe = load_recipe(run_dir / "config.yaml")
    with _EVALUATION:
        if threads:
            torch.set_num_threads(threads)
        dataset = load_dataset_section(recipe.evaluation.dataset, "test", recipe.seed + 1)
        model, tokenizer = load_model_and_tokenizer(str(model_dir), seed=recipe.seed)
        values = _evaluate(model, tokenizer, recipe, dataset, out)
    return {"accuracy": float(values["accuracy"]), "formatting": float(values["formatting"])}


@dataclass
class Study:
    model: Model
    cells: list[str]
    variants: list[str]
    out: Path
    extra: list[str]
    steps: int | None  # RL steps of every run; None: the cell's, the model's, or from the budget
    budget_s: float | None
    threads: int | None
    results: Path | None = None  # per-run JSON records (RESULTS/stability_<cell>/...): reused
    held_out_every: int | None = None  # overrides the cells' (a short measurement)

    def base(self, seed: int) -> list[str]:
        return ["--config", str(DEMO_RECIPE), *self.model.flags, "--seed", str(seed), "--logging_steps", "1",
                "--save_strategy", "no", *self.extra]  # fmt: skip

    def every(self, cell: str) -> int | None:
        return self.held_out_every or self.model.cells[cell].held_out_every

    def planned_steps(self, cell: str) -> int | None:
        """RL steps of the cell's runs, or None when they come from the budget."""
        return self.steps or self.model.cells[cell].steps or self.model.default_steps

    def start_flags(self, seed: int, start_flags: tuple[str, ...]) -> list[str]:
        """The flags of a start run: warm start, evaluation before RL, a few RL steps, rl_start/."""
        return [*self.base(seed), *start_flags, "--max_steps", str(self.model.start_steps)]

    def rl_flags(self, cell: str, variant: str, seed: int, rl_start: Path, steps: int) -> list[str]:
        """The flags of one RL run: from a start's rl_start/, so without warm-start settings; with
        a held-out curve, a weights-only checkpoint every `every` steps."""
        flags = without_warm_start([*self.base(seed), *self.model.cells[cell].rl, *ALL_VARIANTS[variant]])
        every = self.every(cell)
        # Every checkpoint is kept (the demo recipe keeps the last 2): each one is a curve point.
        saves = ["--save_strategy", "steps", "--save_steps", str(every), "--save_only_model", "true",
                 "--save_total_limit", str(steps // every if every else 0)]  # fmt: skip
        return [*flags, *(saves if every else []), *from_start(rl_start), "--max_steps", str(steps)]

    def record_path(self, cell: str, variant: str, seed: int) -> Path | None:
        prefix = "stability" if self.model is MODELS["tiny-demo"] else "stability_smollm2"
        return self.results / f"{prefix}_{cell}" / f"{variant}_seed{seed}.json" if self.results else None

    def start(self, key: tuple[int, tuple[str, ...]]) -> dict[str, Any]:
        """The start run of a seed (and warm start), with the held-out scores of its rl_start/."""
        seed, start_flags = key
        name = "_".join([f"seed{seed}", *(f.lstrip("-").replace(".", "_") for f in start_flags)])
        run_dir = self.out / "starts" / name
        result = run_once(run_dir, self.start_flags(seed, start_flags), self.threads)
        rl_start = run_dir / "rl_start"
        saved = held_out(rl_start, run_dir, run_dir / "eval" / "rl_start", self.threads)
        return {**result, "rl_start": rl_start, "rl_start_held_out": saved}

    def run(self, cell: str, variant: str, seed: int, start: dict[str, Any]) -> dict[str, Any]:
        """One RL run from the seed's start: trained (or reused), its held-out curve evaluated, and
        its record written to the results directory."""
        steps = self.planned_steps(cell) or budget_steps(start["metrics"], self.budget_s or 0.0)
        run_dir = self.out / cell / f"{variant}_seed{seed}"
        began = time.monotonic()
        result = run_once(run_dir, self.rl_flags(cell, variant, seed, start["rl_start"], steps), self.threads)
        wall_s = time.monotonic() - began
        before = start["summary"]["before"]
        after = result["summary"]["after"]
        config = yaml.safe_load((run_dir / "config.yaml").read_text())
        times = [float(m["step_time"]) for m in result["metrics"] if "step_time" in m]
        run = {
            "cell": cell,
            "variant": variant,
            "seed": seed,
            "steps": steps,
            "flags": json.loads((run_dir / "flags.json").read_text()),
            "collapse": collapse(result["metrics"], before["formatting"], after["formatting"]),
            "accuracy": after["accuracy"],
            "formatting": after["formatting"],
            "before": {"accuracy": before["accuracy"], "formatting": before["formatting"]},
            "length_limit": config["training"].get("max_completion_length"),
            "wall_s": round(wall_s, 1),
            "step_time_median": statistics.median(times) if times else None,
            "training": training_series(result["metrics"]),
        }
        every = self.every(cell)
        if every:
            curve = [{"step": 0, **start["rl_start_held_out"]}]
            for step in range(every, steps + 1, every):
                checkpoint = run_dir / f"checkpoint-{step}"
                scores = held_out(checkpoint, run_dir, checkpoint / "held_out", self.threads)
                curve.append({"step": step, **scores})
            # The endpoints are the curve's last point: saved weights, evaluated as every point is.
            run.update(
                held_out=curve,
                after_in_memory={"accuracy": after["accuracy"], "formatting": after["formatting"]},
                accuracy=curve[-1]["accuracy"],
                formatting=curve[-1]["formatting"],
                accuracy_area=curve_area(curve, "accuracy"),
                formatting_area=curve_area(curve, "formatting"),
            )
        path = self.record_path(cell, variant, seed)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(to_record(run), indent=1) + "\n")
        return run

    def recorded(self, cell: str, variant: str, seed: int) -> dict[str, Any] | None:
        path = self.record_path(cell, variant, seed)
        return from_record(json.loads(path.read_text())) if path is not None and path.exists() else None

    def jobs(self, seeds: list[int]) -> list[tuple[str, str, int]]:
        """(cell, variant, seed) in the order they run: the key pair on every seed first, seed by
        seed, then the other variants seed by seed (seeds before variants)."""
        keyed = [(c, v, s) for c in self.cells for v in self.variants for s in seeds]
        rank = {v: i for i, v in enumerate(self.variants)}
        return sorted(keyed, key=lambda j: (j[1] not in KEY_PAIR, seeds.index(j[2]), self.cells.index(j[0]),
                                            rank[j[1]]))  # fmt: skip

    def run_all(self, seeds: list[int], jobs: int) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
        """results[cell][variant][seed] of the runs recorded or finished, `jobs` runs at a time in
        the order of jobs(); a seed's start run is made when its first run needs it. Runs not
        started because OUT/STOP appeared, or that failed (reported), are left out."""
        starts: dict[tuple[int, tuple[str, ...]], dict[str, Any]] = {}
        locks = {(s, self.model.cells[c].start): threading.Lock() for s in seeds for c in self.cells}

        def job(cell: str, variant: str, seed: int) -> dict[str, Any] | None:
            done = self.recorded(cell, variant, seed)
            if done is not None or (self.out / STOP_FILE).exists():
                return done
            key = (seed, self.model.cells[cell].start)
            with locks[key]:
                if key not in starts:
                    starts[key] = self.start(key)
            return self.run(cell, variant, seed, starts[key])

        results: dict[str, dict[str, dict[int, dict[str, Any]]]] = {
            c: {v: {} for v in self.variants} for c in self.cells
        }
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(job, *name): name for name in self.jobs(seeds)}
            for future in as_completed(futures):
                cell, variant, seed = futures[future]
                try:
                    run = future.result()
                except (SystemExit, Exception) as error:  # one failed run does not stop the others
                    print(f"{cell} {variant} seed {seed} failed: {error}", file=sys.stderr, flush=True)
                    continue
                if run is not None:
                    results[cell][variant][seed] = run
                    print(f"{cell} {variant} seed {seed}: done", file=sys.stderr, flush=True)
        return {c: {v: dict(sorted(r.items())) for v, r in by.items() if r} for c, by in results.items()}

    def load_all(self, seeds: list[int]) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
        """results[cell][variant][seed] of the recorded runs only (no training)."""
        results = {
            c: {v: {s: r for s in seeds if (r := self.recorded(c, v, s)) is not None} for v in self.variants}
            for c in self.cells
        }
        return {c: {v: r for v, r in by.items() if r} for c, by in results.items()}


def check_runs(study: Study, seeds: list[int]) -> None:
    """Every recipe the study would run, start runs and RL runs with exactly their flags, is valid
    (names, values, sections, GTPOConfig), before anything runs."""
    from gtpo.app.pipeline import training_config
    from gtpo.app.recipe import RecipeError, load_recipe

    placeholder = study.out / "check"
    for cell in study.cells:
        for variant in study.variants:
            runs = {
                "start run": study.start_flags(seeds[0], study.model.cells[cell].start),
                "RL run": study.rl_flags(cell, variant, seeds[0], placeholder / "rl_start", 1),
            }
            for kind, flags in runs.items():
                try:
                    config, overrides = flags[1], flags[2:]  # flags start with --config PATH
                    training_config(load_recipe(config, [*overrides, "--output_dir", str(placeholder)]))
                except (RecipeError, ValueError) as error:
                    hint = (
                        " (the loss-type variants need GTPO on TRL's loss types)"
                        if variant in LOSS_TYPE_VARIANTS
                        else ""
                    )
                    raise SystemExit(f"cell {cell}, variant {variant}, {kind}: {error}{hint}") from None


# ------------------------------------------------------------------------------------------------
# Tables and plots
# ------------------------------------------------------------------------------------------------


def _pm(pair: tuple[float, float]) -> str:
    return f"{pair[0]:.3f} ± {pair[1]:.3f}"


def _row(*cells: object) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


METRIC_NAMES = {
    "accuracy": "accuracy",
    "formatting": "formatting",
    "accuracy_area": "accuracy area",
    "formatting_area": "formatting area",
    "collapsed": "collapsed",
}


def tables(results: dict[str, dict[str, dict[int, dict[str, Any]]]]) -> tuple[str, dict[str, Any]]:
    """Markdown tables per cell and the JSON-ready summaries."""
    lines, summaries = [], {}
    for cell, runs in results.items():
        summary = summaries[cell] = summarise(runs)
        start = {s: r["before"] for by_seed in runs.values() for s, r in by_seed.items()}
        steps = sorted({r["steps"] for by_seed in runs.values() for r in by_seed.values()})
        curves = all("held_out" in r for by_seed in runs.values() for r in by_seed.values())
        lines += [
            f"### {cell}",
            "",
            f"RL steps per run: {', '.join(map(str, steps))}; seeds by variant: "
            + "; ".join(f"{v} {', '.join(map(str, by_seed))}" for v, by_seed in runs.items()),
            "",
            _row("variant", "collapsed", "collapse steps", "reasons", "held-out accuracy", "held-out format",
                 *(["accuracy area", "format area"] if curves else [])),
            _row(*["---"] * (8 if curves else 6)),
            _row("RL start", "", "", "", _pm(mean_std([b["accuracy"] for b in start.values()])),
                 _pm(mean_std([b["formatting"] for b in start.values()])), *(["", ""] if curves else [])),
        ]  # fmt: skip
        for variant, row in summary["variants"].items():
            areas = (
                [_pm(row[m]) if m in row else "-" for m in ("accuracy_area", "formatting_area")]
                if curves
                else []
            )
            lines.append(
                _row(variant, f"{row['collapsed']}/{row['runs']}", ", ".join(map(str, row["steps"])) or "-",
                     ", ".join(row["reasons"]) or "-", _pm(row["accuracy"]), _pm(row["formatting"]), *areas)
            )  # fmt: skip
        if curves:
            lines += ["", *curve_table(runs)]
        if summary["pairs"]:
            metrics = [m for m in METRIC_NAMES if any(m in p for p in summary["pairs"].values())]
            header = _row("variant - baseline", "seeds", *(f"{METRIC_NAMES[m]} [95% CI]" for m in metrics))
            lines += ["", header, _row(*["---"] * (len(metrics) + 2))]
            for variant, pair in summary["pairs"].items():
                lines.append(
                    _row(f"{variant} - {pair['baseline']}", ", ".join(map(str, pair["seeds"])),
                         *(_interval(pair[m], len(pair["seeds"])) if m in pair else "-" for m in metrics))
                )  # fmt: skip
        lines += ["", *seed_table(runs, curves), ""]
    return "\n".join(lines), summaries


def _interval(difference: dict[str, Any], seeds: int) -> str:
    """Mean [interval], and the seeds it is over when fewer than the pair's."""
    low, high = difference["ci"]
    fewer = (
        f" (seeds {', '.join(map(str, difference['by_seed']))})" if len(difference["by_seed"]) < seeds else ""
    )
    return f"{difference['mean']:+.3f} [{low:+.3f}, {high:+.3f}]{fewer}"


def curve_table(runs: dict[str, dict[int, dict[str, Any]]]) -> list[str]:
    """Held-out accuracy / formatting at each evaluated step, mean over seeds, per variant."""
    steps = sorted({p["step"] for by_seed in runs.values() for r in by_seed.values() for p in r["held_out"]})
    lines = [_row("held-out accuracy / format, mean over seeds", *(f"step {s}" for s in steps)),
             _row(*["---"] * (len(steps) + 1))]  # fmt: skip
    for variant, by_seed in runs.items():
        cells = []
        for step in steps:
            points = [p for r in by_seed.values() for p in r["held_out"] if p["step"] == step]
            accuracy = statistics.mean(p["accuracy"] for p in points) if points else math.nan
            formatting = statistics.mean(p["formatting"] for p in points) if points else math.nan
            cells.append(f"{accuracy:.3f} / {formatting:.3f}")
        lines.append(_row(variant, *cells))
    return lines


def seed_table(runs: dict[str, dict[int, dict[str, Any]]], curves: bool) -> list[str]:
    """Every run: its seed, collapse, endpoints (and areas), wall time."""
    areas = ["acc. area", "fmt. area"] if curves else []
    lines = [_row("variant", "seed", "collapse", "accuracy", "format", *areas, "wall min"),
             _row(*["---"] * (6 + len(areas)))]  # fmt: skip
    for variant, by_seed in runs.items():
        for seed, r in by_seed.items():
            stop = r["collapse"]
            verdict = (
                f"{stop.reason} at {stop.step}" if stop and stop.step else (stop.reason if stop else "-")
            )
            areas = (
                [f"{r[m]:.3f}" if m in r else "-" for m in ("accuracy_area", "formatting_area")]
                if curves
                else []
            )
            wall = f"{r['wall_s'] / 60:.1f}" if r.get("wall_s") else "-"
            lines.append(
                _row(variant, seed, verdict, f"{r['accuracy']:.3f}", f"{r['formatting']:.3f}", *areas, wall)
            )
    return lines


PLOTTED = (
    ("completions/mean_length", "mean length"),
    ("formatting", "formatting"),
    ("entropy", "entropy"),
    ("accuracy", "training accuracy"),
)


def plot(cell: str, runs: dict[str, dict[int, dict[str, Any]]], path: Path) -> None:
    """One row per metric, one column per variant, one thin line per seed; x where it collapsed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = (2.6 * len(runs) + 0.6, 8)
    figure, axes = plt.subplots(len(PLOTTED), len(runs), figsize=size, sharex=True, sharey="row")
    axes = np.asarray(axes).reshape(len(PLOTTED), len(runs))
    for column, (variant, by_seed) in enumerate(runs.items()):
        for row, (key, label) in enumerate(PLOTTED):
            axis = axes[row][column]
            for seed, result in by_seed.items():
                steps, values = result["training"]["step"], result["training"][key]
                (line,) = axis.plot(steps, values, linewidth=0.8, alpha=0.8, label=f"seed {seed}")
                stop = result["collapse"]
                if stop is not None and stop.step is not None and steps:
                    at = min(range(len(steps)), key=lambda i: abs(steps[i] - stop.step))
                    axis.plot(steps[at], values[at], "x", color=line.get_color())
            _guides(axis, key, by_seed)
            if row == 0:
                axis.set_title(variant, fontsize=9)
            if column == 0:
                axis.set_ylabel(label, fontsize=8)
            if row == len(PLOTTED) - 1:
                axis.set_xlabel("step", fontsize=8)
            axis.tick_params(labelsize=7)
            axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    figure.suptitle(f"stability, cell {cell} ({WINDOW}-step trailing means)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _guides(axis: Any, key: str, by_seed: dict[int, dict[str, Any]]) -> None:
    """The length limit on the length panel, ln 2 (the paper's gate) on the entropy panel."""
    if key == "completions/mean_length":
        limit = next(iter(by_seed.values()))["length_limit"]
        if limit:
            axis.axhline(limit, color="grey", linestyle=":", linewidth=1)
    if key == "entropy":
        axis.axhline(math.log(2), color="grey", linestyle=":", linewidth=1)


CURVES = (
    ("held_out", "accuracy", "held-out accuracy (greedy)"),
    ("held_out", "formatting", "held-out formatting (greedy)"),
    ("training", "accuracy", "training accuracy"),
    ("training", "entropy", "training entropy"),
    ("training", "completions/mean_length", "mean completion length"),
    ("training", "formatting", "training formatting"),
)


def plot_curves(cell: str, runs: dict[str, dict[int, dict[str, Any]]], path: Path) -> None:
    """Cells with held-out curves: one panel per metric, one colour per variant, a thin line per
    seed and a thick one for the mean over seeds (training metrics: 10-step trailing means)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(2, 3, figsize=(14, 7.5), sharex=True)
    for axis, (source, key, label) in zip(axes.flat, CURVES, strict=True):
        for index, (variant, by_seed) in enumerate(runs.items()):
            colour = f"C{index}"
            lines = []
            for result in by_seed.values():
                if source == "held_out":
                    steps = [p["step"] for p in result["held_out"]]
                    values = [p[key] for p in result["held_out"]]
                else:
                    steps, values = result["training"]["step"], result["training"][key]
                axis.plot(steps, values, color=colour, linewidth=0.6, alpha=0.35)
                lines.append((steps, values))
            common = min(len(s) for s, _ in lines)
            mean = [statistics.mean(v[i] for _, v in lines) for i in range(common)]
            marker = "o" if source == "held_out" else None
            axis.plot(lines[0][0][:common], mean, color=colour, linewidth=2, marker=marker, markersize=3,
                      label=f"{variant} ({len(by_seed)} seeds)")  # fmt: skip
            _guides(axis, key if source == "training" else "", by_seed)
        axis.set_title(label, fontsize=9)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    for axis in axes[-1]:
        axis.set_xlabel("RL step", fontsize=8)
    axes[0][0].legend(fontsize=7)
    figure.suptitle(f"stability, cell {cell}: mean over seeds (thick), each seed (thin)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def _serialisable(summaries: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    keep = ("collapse", "accuracy", "formatting", "accuracy_area", "formatting_area", "steps", "wall_s")
    runs = {
        cell: {
            variant: {
                str(seed): {k: v for k, v in to_record(r).items() if k in keep} for seed, r in by_seed.items()
            }
            for variant, by_seed in by_variant.items()
        }
        for cell, by_variant in results.items()
    }
    return {"summaries": summaries, "runs": runs}


# ------------------------------------------------------------------------------------------------
# Command line
# ------------------------------------------------------------------------------------------------


def parse(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-demo", choices=sorted(MODELS))
    parser.add_argument(
        "--cells", nargs="+", help="stress cells, or 'all' (default: the model's default set)"
    )
    parser.add_argument("--variants", nargs="+", choices=sorted(ALL_VARIANTS))
    parser.add_argument("--loss_types", action="store_true", help="add DAPO, Dr. GRPO and GTPO on each")
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--steps", type=int, help="RL steps per run (tiny-demo: 80, cell long 1500)")
    parser.add_argument("--budget_minutes", type=float, help="smollm2-135m: RL minutes per run (default 30)")
    parser.add_argument("--held_out_every", type=int, help="held-out curve: steps between evaluations")
    parser.add_argument("--quick", action="store_true", help="a small set: ~10 min (demo), ~15 (SmolLM2)")
    parser.add_argument("--out", help="run directory (reused: finished runs are not redone)")
    parser.add_argument(
        "--results",
        help="per-run JSON records, reused: recorded runs are not redone (default: benchmarks/results, "
        "or OUT/results with --quick, --steps or --held_out_every)",
    )
    parser.add_argument("--plots", help="where the figures go (default: benchmarks/, or OUT as --results)")
    parser.add_argument("--report", action="store_true", help="tables and figures from the records only")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one CPU thread each if > 1")
    args, extra = parser.parse_known_args(argv)
    model = MODELS[args.model]
    smollm2 = args.model == "smollm2-135m"
    if args.quick:
        for name, value in (SMOLLM2_QUICK if smollm2 else QUICK).items():
            if getattr(args, name) is None and not (name == "budget_minutes" and args.steps is not None):
                setattr(args, name, value)
    if args.cells in (None, ["all"]):
        args.cells = list(model.cells) if args.cells else list(model.default_cells)
    unknown = [c for c in args.cells if c not in model.cells]
    if unknown:
        parser.error(
            f"--cells: unknown cell {unknown[0]!r} for {args.model}; known: {', '.join(model.cells)}, all"
        )
    own = model.cells[args.cells[0]].variants if len(args.cells) == 1 else None
    if args.variants is None:
        args.variants = list(own or model.default_variants) + (
            list(LOSS_TYPE_VARIANTS) if args.loss_types else []
        )
    elif args.loss_types:
        parser.error("--loss_types adds to the default variants; with --variants, name them there")
    args.seeds = args.seeds if args.seeds is not None else list(model.default_seeds)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds: each seed once, got {args.seeds}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if args.held_out_every is not None and args.held_out_every < 1:
        parser.error(f"--held_out_every must be >= 1, got {args.held_out_every}")
    if args.budget_minutes is not None and (not smollm2 or args.steps is not None):
        parser.error("--budget_minutes: only with --model smollm2-135m and without --steps")
    if args.budget_minutes is not None and not args.budget_minutes > 0:
        parser.error(f"--budget_minutes must be > 0, got {args.budget_minutes}")
    if args.steps is None and args.budget_minutes is None and smollm2:
        args.budget_minutes = 30.0
    for cell in args.cells:
        every = args.held_out_every or model.cells[cell].held_out_every
        steps = args.steps or model.cells[cell].steps or model.default_steps
        if every and steps and steps % every:
            parser.error(
                f"cell {cell}: its {steps} RL steps are not a multiple of the held-out interval {every}"
            )
    clashes = flag_names(extra) & OWN_FIELDS
    set_here = {n for c in args.cells for n in flag_names(model.cells[c].rl + model.cells[c].start)}
    set_here |= {n for v in args.variants for n in flag_names(ALL_VARIANTS[v])}
    if any(args.held_out_every or model.cells[c].held_out_every for c in args.cells):
        set_here |= {"save_steps", "save_only_model", "save_total_limit"}
    clashes |= flag_names(extra) & set_here
    if clashes:
        parser.error(f"--{sorted(clashes)[0]}: set by this script (cells, variants, --seeds, --steps, --out)")
    args.out = Path(args.out or model.default_out)
    # Only a full run writes tracked files: a smaller one keeps its records and figures under --out.
    partial_run = args.quick or args.steps is not None or args.held_out_every is not None
    args.results = Path(args.results) if args.results else (args.out / "results" if partial_run else RESULTS)
    args.plots = Path(args.plots) if args.plots else (args.out if partial_run else Path(__file__).parent)
    return args, extra


def main(argv: list[str] | None = None) -> None:
    args, extra = parse(argv)
    model = MODELS[args.model]
    budget_s = args.budget_minutes * 60 if args.budget_minutes is not None else None
    study = Study(model, args.cells, args.variants, args.out, extra, args.steps, budget_s,
                  threads_per_run(args.jobs), args.results, args.held_out_every)  # fmt: skip
    if args.report:
        results = study.load_all(args.seeds)
    else:
        check_runs(study, args.seeds)
        args.out.mkdir(parents=True, exist_ok=True)
        results = study.run_all(args.seeds, args.jobs)
    results = {cell: runs for cell, runs in results.items() if runs}
    if not results:
        raise SystemExit(f"no finished runs of cells {', '.join(args.cells)} (records in {args.results})")
    text, summaries = tables(results)
    prefix = "stability" if args.model == "tiny-demo" else "stability_smollm2"
    args.plots.mkdir(parents=True, exist_ok=True)
    for cell, runs in results.items():
        curves = all("held_out" in r for by_seed in runs.values() for r in by_seed.values())
        (plot_curves if curves else plot)(cell, runs, args.plots / f"{prefix}_{cell}.png")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stability.md").write_text(text)
    (args.out / "stability.json").write_text(json.dumps(_serialisable(summaries, results), indent=1))
    print(text, flush=True)


if __name__ == "__main__":
    main()
