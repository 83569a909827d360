"""Learning on the demo task: GTPO (paper and official presets) against TRL's GRPO with beta 0 and
0.04, plus the paper's ablations in small, over several seeds, each with the same recipe, steps
and budget (configs/demo.yaml). Prints a table of held-out accuracy and formatting after training and
whether a run collapsed, and writes curves over steps to learning_main.png and
learning_ablations.png in --plots (default: --out).

Whether a run collapsed is decided by the benchmarks' one collapse rule, `collapse()` in
benchmarks/common.py (the one benchmarks/stability.py applies; entropy is no part of it).

All variants of one seed start from the same warm-started model (the first finished run's
rl_start/), so they differ only in the RL algorithm.

    python -m benchmarks.learning --jobs 2 --out runs/learning --plots benchmarks   # README figures
    python -m benchmarks.learning --variants gtpo_paper grpo_beta0 --seeds 0 --max_steps 10
"""

from __future__ import annotations

import argparse
import math
import statistics
from functools import partial
from pathlib import Path

from benchmarks.common import (
    DEMO_RECIPE,
    VARIANTS,
    after_first,
    collapse,
    from_start,
    smoothed,
    threads_per_run,
    train,
)

# The shared variants and the paper's ablations (GTPO paper preset with one part switched off).
LEARNING_VARIANTS = {
    **{name: list(variant.flags()) for name, variant in VARIANTS.items()},
    "gate_off": ["--entropy_gate", "off"],
    "gamma_0": ["--gamma", "0"],
    "position": ["--conflict_mode", "position"],
}


def run(variant: str, seed: int, out: Path, extra: list[str], threads: int | None) -> dict:
    """One training run (reused if its summary exists); all variants of a seed share a warm start."""
    run_dir = out / f"{variant}_seed{seed}"
    flags = ["--config", str(DEMO_RECIPE), "--seed", str(seed), "--logging_steps", "1"]
    flags += [*LEARNING_VARIANTS[variant], *extra]
    finished = [d for d in sorted(out.glob(f"*_seed{seed}")) if (d / "summary.json").exists()]
    shared_start = [d / "rl_start" for d in finished if (d / "rl_start" / "config.json").exists()]
    if shared_start and not (run_dir / "summary.json").exists():
        flags += from_start(shared_start[0])
    return train(run_dir, flags, threads)


PLOTS = {
    "main": ["gtpo_paper", "gtpo_official", "grpo_beta0", "grpo_beta0.04"],
    "ablations": ["gtpo_paper", "gate_off", "gamma_0", "position"],
}


def plot(results: dict[str, list[dict]], out: Path) -> None:
    """out/learning_{main,ablations}.png: accuracy, formatting and entropy over steps."""
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
    """Every (variant, seed) run, `jobs` at a time (one thread each when jobs > 1), with whether it
    collapsed; the other variants of a seed start once its first run has saved the shared warm start."""
    threads = threads_per_run(jobs)
    firsts, rest = after_first(
        seeds,
        lambda seed: run(variants[0], seed, out, extra, threads),
        lambda seed, _: {(v, seed): partial(run, v, seed, out, extra, threads) for v in variants[1:]},
        jobs,
    )
    results = {**{(variants[0], seed): r for seed, r in firsts.items()}, **rest}
    for seed in seeds:  # runs from the shared start skip the evaluation before RL: same start, same scores
        of_seed = [r for (_, s), r in results.items() if s == seed]
        before = next(r["summary"]["before"] for r in of_seed if "before" in r["summary"])
        for r in of_seed:
            r["summary"].setdefault("before", before)
            formatting = r["summary"]["before"]["formatting"], r["summary"]["after"]["formatting"]
            r["collapse"] = collapse(r["metrics"], *formatting)
    return {variant: [results[variant, seed] for seed in seeds] for variant in variants}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variants", nargs="+", default=list(LEARNING_VARIANTS), choices=sorted(LEARNING_VARIANTS)
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", default="runs/learning", help="run directory (finished runs are reused)")
    parser.add_argument("--plots", type=Path, help="where the figures go (default: --out)")
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
            f"{statistics.mean(fmt_after):.3f} | {sum(r['collapse'] is not None for r in runs)}/{len(runs)}"
            f"   per seed: {', '.join(f'{a:.3f}' for a in after)}",
            flush=True,
        )
    plots = args.plots or out
    plots.mkdir(parents=True, exist_ok=True)
    plot(results, plots)


if __name__ == "__main__":
    main()
