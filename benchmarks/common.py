"""What the benchmarks share: the child-process runner, the variants they compare, the step clock,
the collapse rule, and the small models, rewards and memory readings several of them use.

The benchmarks run as modules from the repository root (`python -m benchmarks.NAME`); each
measurement runs in a fresh child process, so its time and peak memory are its own.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from transformers import TrainerCallback

ROOT = Path(__file__).resolve().parents[1]
DEMO_RECIPE = ROOT / "configs" / "demo.yaml"
K = TypeVar("K", bound=Hashable)

# ------------------------------------------------------------------------------------------------
# Child processes
# ------------------------------------------------------------------------------------------------


def run_child(command: list[str], what: str, env: dict[str, str] | None = None) -> str:
    """Run `command` (the repository on its import path, `env` added to the environment); its
    stdout, or SystemExit naming `what` with the end of its stderr."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    child_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    result = subprocess.run(command, capture_output=True, text=True, env=child_env)
    if result.returncode != 0:
        raise SystemExit(f"{what} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def child_result(module: str, args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """`python -m benchmarks.MODULE --child ARGS...` in a fresh process: the JSON object its last
    line of output holds."""
    command = [sys.executable, "-m", f"benchmarks.{module}", "--child", *args]
    output = run_child(command, f"{module} {' '.join(args)}", env)
    return json.loads(output.strip().splitlines()[-1])


def train(run_dir: Path, flags: list[str], threads: int | None) -> dict[str, Any]:
    """One `gtpo train --output_dir run_dir FLAGS...` in a child process (`threads` CPU threads), or
    the finished run already there; returns its summary.json and metrics.jsonl records."""
    if not (run_dir / "summary.json").exists():
        command = [sys.executable, "-m", "gtpo", "train", "--output_dir", str(run_dir), *flags]
        run_child(command, str(run_dir), {"OMP_NUM_THREADS": str(threads)} if threads else None)
    from gtpo.jsonl import read_jsonl

    summary = json.loads((run_dir / "summary.json").read_text())
    return {"summary": summary, "metrics": read_jsonl(run_dir / "metrics.jsonl")}


def threads_per_run(jobs: int) -> int | None:
    """One CPU thread per run when several run at a time; torch's default otherwise."""
    return 1 if jobs > 1 else None


def from_start(rl_start: Path) -> list[str]:
    """`gtpo train` flags that start RL from a saved warm-started policy (another run's rl_start/),
    without repeating the warm start or the evaluation before RL (same start, same scores)."""
    return ["--model_name_or_path", str(rl_start), "--warm_start.steps", "0",
            "--evaluation.before_training", "false"]  # fmt: skip


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


# ------------------------------------------------------------------------------------------------
# Variants
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    """A trainer the benchmarks compare: GTPO with a preset, or TRL's GRPOTrainer with KL weight
    `beta` (and GTPO's default loss_type, grpo, as `gtpo train --algorithm grpo` gives it)."""

    algorithm: str  # "gtpo" or "grpo"
    preset: str = "paper"
    beta: float = 0.0

    def flags(self) -> tuple[str, ...]:
        """The `gtpo train` flags that select it."""
        if self.algorithm == "gtpo":
            return ("--preset", self.preset)
        beta = ("--beta", str(self.beta)) if self.beta else ()
        return ("--algorithm", "grpo", "--loss_type", "grpo", *beta)

    def trainer(self, **fields: Any) -> tuple[Any, type]:
        """Its config (with `fields`) and trainer class, for benchmarks that build trainers."""
        from trl import GRPOConfig, GRPOTrainer

        from gtpo import GTPOConfig, GTPOTrainer

        if self.algorithm == "gtpo":
            return GTPOConfig(**{"preset": self.preset, **fields}), GTPOTrainer
        return GRPOConfig(**{"loss_type": GTPOConfig.loss_type, **fields, "beta": self.beta}), GRPOTrainer


VARIANTS = {
    "gtpo_paper": Variant("gtpo"),
    "gtpo_official": Variant("gtpo", preset="official"),
    "grpo_beta0": Variant("grpo"),
    "grpo_beta0.04": Variant("grpo", beta=0.04),
}


# The step benchmarks' pairs, in the order they run: key -> (name, GTPO's variant, TRL's variant).
# Besides VARIANTS, a variant is "<gtpo|trl>:<loss_type>:<aligned|reuse>" (step_variant).
COMPOSED_LOSSES = ("grpo", "dapo", "dr_grpo")
STEP_PAIRS: dict[str, tuple[str, str, str]] = {
    "beta0.04": ("GTPO / GRPO beta 0.04", "gtpo_paper", "grpo_beta0.04"),
    **{
        f"{loss}:{steps}": (f"GTPO+{loss} / {loss}, {steps}", f"gtpo:{loss}:{steps}", f"trl:{loss}:{steps}")
        for steps in ("aligned", "reuse")
        for loss in COMPOSED_LOSSES
    },
}


def step_variant(name: str) -> tuple[Variant, dict[str, Any]]:
    """A step benchmark's variant and the config fields it sets: one of VARIANTS, or
    "<gtpo|trl>:<loss_type>:<steps>", GTPO's paper preset or TRL's GRPOTrainer (beta 0) on TRL's
    loss `loss_type`, with gradient accumulation 1 and steps "aligned" (one generation per step: TRL
    runs no old-log-prob pass) or "reuse" (steps_per_generation 2: TRL runs that pass)."""
    if ":" not in name:
        return VARIANTS[name], {}
    trainer, loss_type, steps = name.split(":")
    fields = dict(loss_type=loss_type, gradient_accumulation_steps=1)
    fields["steps_per_generation"] = 2 if steps == "reuse" else 1
    return Variant("gtpo") if trainer == "gtpo" else Variant("grpo"), fields


def cycle_steps(variant: str) -> int:
    """How many optimisation steps a step benchmark's variant takes per generation: 1 at TRL's
    defaults (steps_per_generation = gradient accumulation), 2 for the "reuse" variants."""
    fields = step_variant(variant)[1]
    accumulation = fields.get("gradient_accumulation_steps", 1)
    return math.lcm(fields.get("steps_per_generation", accumulation), accumulation) // accumulation


# ------------------------------------------------------------------------------------------------
# The step clock
# ------------------------------------------------------------------------------------------------


def synchronize() -> None:
    """Wait for queued CUDA work, so wall times cover it (no-op without CUDA)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


# TRL has no public timing point inside a step: the clock wraps these private GRPOTrainer methods
# (benchmarks only; tests/test_benchmarks.py checks that they exist).
TRL_TIMED = {"_generate": "generation", "_compute_loss": "loss"}


class StepClock(TrainerCallback):
    """Wall time of every optimisation step and of named parts of it (`time`), CUDA synchronised.
    `steps` holds one {"step": s, part: s, ...} record per step."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self._parts: dict[str, float] = defaultdict(float)
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        synchronize()
        self._parts = defaultdict(float)
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        synchronize()
        self.steps.append({**self._parts, "step": time.perf_counter() - self._start})

    def time(self, owner: Any, name: str, part: str) -> None:
        """Replace owner.NAME by a wrapper whose wall time counts towards `part` of the step."""
        function = getattr(owner, name)

        @wraps(function)
        def timed(*args, **kwargs):
            synchronize()
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                synchronize()
                self._parts[part] += time.perf_counter() - start

        setattr(owner, name, timed)

    def time_trl(self, trainer: Any) -> None:
        """Time TRL's generation and loss in `trainer` (parts "generation" and "loss")."""
        for name, part in TRL_TIMED.items():
            self.time(trainer, name, part)

    def per_cycle(self, part: str, warmup: int, share: bool = False, cycle: int = 1) -> list[float]:
        """A part's seconds per step (or share of the time) in each whole cycle of `cycle` steps after
        the first `warmup` cycles. A cycle is one generation's steps: with steps_per_generation 2 and
        no accumulation, TRL generates on every other step, and single steps of the two kinds would
        mix in one median (which then falls in the gap between them)."""
        count = len(self.steps) // cycle - warmup
        if count <= 0:
            raise SystemExit(
                f"{len(self.steps)} steps ran, no whole {cycle}-step cycle after the {warmup} warm-up cycles"
            )
        chunks = [self.steps[(warmup + k) * cycle : (warmup + k + 1) * cycle] for k in range(count)]
        parts = [sum(s.get(part, 0.0) for s in chunk) for chunk in chunks]
        if share:
            return [value / sum(s["step"] for s in chunk) for value, chunk in zip(parts, chunks, strict=True)]
        return [value / cycle for value in parts]

    def median(self, part: str, warmup: int, share: bool = False, cycle: int = 1) -> float:
        """Median of `per_cycle` (a part's seconds per step, or its share, in each timed cycle)."""
        return statistics.median(self.per_cycle(part, warmup, share, cycle))


def paired_ratios(ours: list[float], theirs: list[float]) -> tuple[float, float, float]:
    """Quartiles (first, median, third) of the cycle-by-cycle ratios ours[k] / theirs[k] of two
    runs that took their steps in turns (`interleaved`): cycle k of each trained on the same batch,
    one right after the other, so what the two share (the batch's lengths, the machine's load at
    the time) cancels out of each ratio."""
    q1, median, q3 = statistics.quantiles([a / b for a, b in zip(ours, theirs, strict=True)], n=4)
    return q1, median, q3


STEP_MARK = "@@step "  # how a LockstepClock's child reports a finished step on its stdout


class LockstepClock(StepClock):
    """A StepClock for a child that takes its steps in turns with other children (`interleaved`):
    before each step it waits for a line from the parent on stdin; after it, it reports the step's
    record on stdout."""

    def on_step_begin(self, args, state, control, **kwargs):
        if not sys.stdin.readline():
            raise SystemExit("lockstep: the parent stopped sending steps")
        super().on_step_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        super().on_step_end(args, state, control, **kwargs)
        print(STEP_MARK + json.dumps(self.steps[-1]), flush=True)


def interleaved(
    module: str, runs: dict[str, list[str]], steps: int, env: dict[str, str] | None = None
) -> dict[str, dict[str, Any]]:
    """`python -m benchmarks.MODULE --child ARGS...` for each run (name -> ARGS), all started at once,
    whose trainers (with a LockstepClock) take their `steps` optimisation steps in turns, one step at
    a time, always in the same order (A B A B ...): the load of a shared machine falls on every run
    alike, each run's peak memory stays its own, and every step follows another run's step, so no
    run's steps find the CPU caches warm from its own previous step. (Reversing the order every
    round, A B B A, gave each run every other step warm: with TRL generating on every other step,
    one run's generating steps were all warm, the other's all cold.) Returns each run's JSON
    result (its last line of output), or SystemExit naming the run that failed."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    child_env = {**os.environ, "PYTHONPATH": path, **(env or {})}
    with tempfile.TemporaryDirectory() as folder:
        children: dict[str, tuple[subprocess.Popen, Path]] = {}
        try:
            for index, (name, args) in enumerate(runs.items()):
                log = Path(folder) / f"{index}.err"
                with log.open("w") as stderr:
                    command = [sys.executable, "-m", f"benchmarks.{module}", "--child", *args]
                    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                             stderr=stderr, text=True, env=child_env)  # fmt: skip
                children[name] = (child, log)
            for _ in range(steps):
                for name in runs:
                    _one_step(name, *children[name])
            results = {}
            for name, (child, log) in children.items():
                child.stdin.close()
                output = child.stdout.read()  # through the buffer that _one_step's reads filled
                if child.wait() != 0 or not output.strip():
                    raise SystemExit(f"{name} failed:\n{log.read_text()[-3000:]}")
                results[name] = json.loads(output.strip().splitlines()[-1])
            return results
        finally:
            for child, _ in children.values():
                if child.poll() is None:
                    child.kill()
                    child.wait()


def _one_step(name: str, child: subprocess.Popen, log: Path) -> None:
    """Let `child` take one step and wait until it reports it."""
    try:
        child.stdin.write("go\n")
        child.stdin.flush()
    except BrokenPipeError:
        child.wait()
    while line := child.stdout.readline():
        if line.startswith(STEP_MARK):
            return
    child.wait()
    raise SystemExit(f"{name} ended before its step (exit {child.returncode}):\n{log.read_text()[-3000:]}")


# ------------------------------------------------------------------------------------------------
# The collapse rule
# ------------------------------------------------------------------------------------------------

# Each training metric is read from metrics.jsonl (one record per RL step) as a WINDOW-step trailing
# mean, from the WINDOW-th step on (so one lucky first batch is no "best"); a run collapsed at the
# first step of the first stretch of CONSECUTIVE steps on which one of these holds:
#   length:     completions/clipped_ratio > CLIPPED_MAX (most completions stop at the length limit);
#   formatting: formatting < FORMAT_FLOOR, once it has been >= FORMAT_FLOOR in an earlier step;
#   accuracy:   accuracy < ACCURACY_FRACTION x its best so far, once that best is >= ACCURACY_MIN_BEST.
# A run none of these fired on still collapsed ("held-out formatting", no step) if its greedy held-out
# formatting after RL is below HELD_OUT_FORMAT_FRACTION x its value before RL. Entropy is no part of
# the rule: GTPO's gate acts on that very quantity, so a rule on it would favour GTPO by construction.
# Changing any of these changes every study that uses it.
WINDOW = 10
CONSECUTIVE = 10
CLIPPED_MAX = 0.5
FORMAT_FLOOR = 0.5
ACCURACY_FRACTION = 0.5
ACCURACY_MIN_BEST = 0.1
HELD_OUT_FORMAT_FRACTION = 0.5


@dataclass(frozen=True)
class Collapse:
    reason: str  # "length", "formatting", "accuracy" or "held-out formatting"
    step: int | None  # first step of the stretch that fired; None for "held-out formatting"


def smoothed(values: list[float], window: int = WINDOW) -> list[float]:
    """Trailing moving average (training metrics come from one small batch per step)."""
    return [statistics.mean(values[max(0, i - window + 1) : i + 1]) for i in range(len(values))]


def first_stretch(steps: list[int], flags: list[bool], length: int = CONSECUTIVE) -> int | None:
    """The step that begins the first run of `length` consecutive true flags, or None."""
    count = 0
    for index, flag in enumerate(flags):
        count = count + 1 if flag else 0
        if count == length:
            return steps[index - length + 1]
    return None


def trailing_means(
    metrics: list[dict[str, Any]], key: str, full: bool = False
) -> tuple[list[int], list[float]]:
    """Steps and WINDOW-step trailing means of one metric; with `full`, only means of WINDOW steps."""
    records = [m for m in metrics if key in m and "step" in m]
    first = WINDOW - 1 if full else 0
    steps = [int(m["step"]) for m in records]
    return steps[first:], smoothed([float(m[key]) for m in records], WINDOW)[first:]


def collapse(
    metrics: list[dict[str, Any]],
    before_formatting: float | None = None,
    after_formatting: float | None = None,
) -> Collapse | None:
    """Whether and where a run collapsed, by the rule above (earliest criterion wins; on a tie:
    length, formatting, accuracy)."""
    steps, clipped = trailing_means(metrics, "completions/clipped_ratio", full=True)
    length = first_stretch(steps, [c > CLIPPED_MAX for c in clipped])
    steps, formatting = trailing_means(metrics, "formatting", full=True)
    held = [any(f >= FORMAT_FLOOR for f in formatting[:i]) for i in range(len(formatting))]
    lost = first_stretch(steps, [h and f < FORMAT_FLOOR for h, f in zip(held, formatting, strict=True)])
    steps, accuracy = trailing_means(metrics, "accuracy", full=True)
    best = list(itertools.accumulate(accuracy, max))
    fell = [b >= ACCURACY_MIN_BEST and a < ACCURACY_FRACTION * b for a, b in zip(accuracy, best, strict=True)]
    fired = [("length", length), ("formatting", lost), ("accuracy", first_stretch(steps, fell))]
    found = [(step, order, reason) for order, (reason, step) in enumerate(fired) if step is not None]
    if found:
        step, _, reason = min(found)
        return Collapse(reason, step)
    if (
        before_formatting is not None
        and after_formatting is not None
        and after_formatting < HELD_OUT_FORMAT_FRACTION * before_formatting
    ):
        return Collapse("held-out formatting", None)
    return None


# ------------------------------------------------------------------------------------------------
# Models, rewards and memory readings built here (no hub)
# ------------------------------------------------------------------------------------------------

SPECIAL_TOKENS = ("<pad>", "<eos>")
WORD_PROMPT = " ".join(f"t{i}" for i in range(10, 18))  # 8 tokens of word_tokenizer


def word_tokenizer(vocab: int):
    """A whitespace tokenizer with exactly `vocab` tokens: <pad>, <eos>, t2 ... t{vocab-1}."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    words.update({f"t{index}": index for index in range(len(SPECIAL_TOKENS), vocab)})
    backend = Tokenizer(models.WordLevel(vocab=words, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>")


def spread_reward(completions, **kwargs) -> list[float]:
    """A reward that differs between completions, so advantages (and GTPO's conflicts) are non-zero."""
    return [float(sum(len(word) for word in text.split()) % 7) for text in completions]


def vm_kib(field: str) -> int:
    """A field of /proc/self/status (VmRSS, VmHWM, ...) in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the peak resident set (VmHWM) to the current one; the current one in KiB."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return vm_kib("VmRSS")
