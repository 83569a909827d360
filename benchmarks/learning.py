"""Learning on the demo task: GTPO (paper and official presets) against TRL's GRPO with beta 0 and
0.04, plus the paper's ablations in small, over several seeds, each with the same recipe, steps
and budget (configs/demo.yaml). Prints a table of held-out accuracy and formatting after training,
whether a run collapsed, and writes curves over steps to benchmarks/learning_main.png and
benchmarks/learning_ablations.png.

A run collapsed when its training accuracy (10-step moving average, each step is one batch of 32
completions) falls below half its best value after reaching it (best >= 0.1), or when its mean
entropy stays above ln 2 for 20 consecutive training steps.

All variants of one seed start from the same warm-started model (the first finished run's
rl_start/), so they differ only in the RL algorithm.

    python benchmarks/learning.py --jobs 2              # all variants, seeds 0 1 2 (~35 min on 2 cores)
    python benchmarks/learning.py --variants gtpo_paper grpo_beta0 --seeds 0
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

VARIANTS = {
    "gtpo_paper": [],
    "gtpo_official": ["--preset", "official"],
    "grpo_beta0": ["--algorithm", "grpo"],
    "grpo_beta0.04": ["--algorithm", "grpo", "--beta", "0.04"],
    "gate_off": ["--entropy_gate", "off"],
    "gamma_0": ["--gamma", "0"],
    "position": ["--conflict_mode", "position"],
}
ROOT = Path(__file__).resolve().parents[1]


def smoothed(values: list[float], window: int = 10) -> list[float]:
    """Trailing moving average (training metrics come from one small batch per step)."""
    return [statistics.mean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def collapsed(metrics: list[dict]) -> bool:
    accuracy = smoothed([m["accuracy"] for m in metrics if "accuracy" in m])
    best, best_at = max(((a, i) for i, a in enumerate(accuracy)), default=(0.0, 0))
    if best >= 0.1 and any(a < best / 2 for a in accuracy[best_at + 1 :]):
        return True
    entropy = [(m["step"], m["entropy"]) for m in metrics if "entropy" in m]
    run_start = None
    for step, value in entropy:
        if value > math.log(2):
            run_start = step if run_start is None else run_start
            if step - run_start + 1 >= 20:
                return True
        else:
            run_start = None
    return False


def run(variant: str, seed: int, out: Path, extra: list[str], threads: int | None) -> dict:
    """One training run (reused if its summary exists); all variants of a seed share a warm start."""
    run_dir = out / f"{variant}_seed{seed}"
    if not (run_dir / "summary.json").exists():
        command = [sys.executable, "-m", "gtpo", "train", "--config", str(ROOT / "configs" / "demo.yaml"),
                   "--seed", str(seed), "--output_dir", str(run_dir), "--logging_steps", "1",
                   *VARIANTS[variant], *extra]  # fmt: skip
        finished = [d for d in sorted(out.glob(f"*_seed{seed}")) if (d / "summary.json").exists()]
        shared_start = [d / "rl_start" for d in finished if (d / "rl_start" / "config.json").exists()]
        if shared_start:  # its evaluation before RL is the seed's first run's
            command += ["--model_name_or_path", str(shared_start[0]), "--warm_start.steps", "0",
                        "--evaluation.before_training", "false"]  # fmt: skip
        env = dict(os.environ, OMP_NUM_THREADS=str(threads)) if threads else None
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise SystemExit(f"{variant} seed {seed} failed:\n{result.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"summary": summary, "metrics": metrics, "collapsed": collapsed(metrics)}


PLOTS = {
    "main": ["gtpo_paper", "gtpo_official", "grpo_beta0", "grpo_beta0.04"],
    "ablations": ["gtpo_paper", "gate_off", "gamma_0", "position"],
}


def plot(results: dict[str, list[dict]], out: Path) -> None:
    """benchmarks/learning_{main,ablations}.png: accuracy, formatting and entropy over steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, variants in PLOTS.items():
        variants = [v for v in variants if v in results]
        if not variants:
            continue
        figure, axes = plt.subplots(1, 3, figsize=(14, 3.6), dpi=110)
        for axis, key in zip(axes, ("accuracy", "formatting", "entropy"), strict=True):
            for variant in variants:
                runs = results[variant]
                steps = [m["step"] for m in runs[0]["metrics"] if key in m]
                values = [statistics.mean(r["metrics"][i][key] for r in runs) for i in range(len(steps))]
                axis.plot(steps, smoothed(values), label=variant)
            if key == "entropy":
                axis.axhline(math.log(2), color="grey", linestyle=":", linewidth=1)
            axis.set_xlabel("step")
            axis.set_title(f"training {key} (mean over seeds, 10-step average)", fontsize=9)
            axis.grid(alpha=0.3)
        axes[0].legend(fontsize=7)
        figure.tight_layout()
        figure.savefig(out / f"learning_{name}.png")
        plt.close(figure)


def run_all(variants: list[str], seeds: list[int], out: Path, extra: list[str], jobs: int) -> dict:
    """Every (variant, seed) run, `jobs` at a time (one thread each when jobs > 1); the other
    variants of a seed start once its first run has saved the shared warm start."""
    threads = 1 if jobs > 1 else None
    results = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        first = {pool.submit(run, variants[0], seed, out, extra, threads): seed for seed in seeds}
        rest = {}
        for future in as_completed(first):
            seed = first[future]
            results[variants[0], seed] = future.result()
            for variant in variants[1:]:
                rest[pool.submit(run, variant, seed, out, extra, threads)] = (variant, seed)
        for future in as_completed(rest):
            results[rest[future]] = future.result()
    for seed in seeds:  # runs from the shared start skip the evaluation before RL: same start, same scores
        of_seed = [r for (_, s), r in results.items() if s == seed]
        before = next(r["summary"]["before"] for r in of_seed if "before" in r["summary"])
        for r in of_seed:
            r["summary"].setdefault("before", before)
    return {variant: [results[variant, seed] for seed in seeds] for variant in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="runs/learning")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, one CPU thread each if > 1")
    args, extra = parser.parse_known_args()
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = run_all(args.variants, args.seeds, out, extra, args.jobs)
    print(f"{'variant':>14} | {'accuracy':>17} | {'formatting':>17} | collapsed")
    for variant, runs in results.items():
        before = statistics.mean(r["summary"]["before"]["accuracy"] for r in runs)
        after = [r["summary"]["after"]["accuracy"] for r in runs]
        fmt_after = [r["summary"]["after"]["formatting"] for r in runs]
        fmt_before = statistics.mean(r["summary"]["before"]["formatting"] for r in runs)
        print(
            f"{variant:>14} | {before:.3f} -> {statistics.mean(after):.3f} | {fmt_before:.3f} -> "
            f"{statistics.mean(fmt_after):.3f} | {sum(r['collapsed'] for r in runs)}/{len(runs)}"
            f"   per seed: {', '.join(f'{a:.3f}' for a in after)}",
            flush=True,
        )
    plot(results, Path(__file__).parent)


if __name__ == "__main__":
    main()
