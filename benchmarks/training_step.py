"""Training step: GTPOTrainer against TRL's GRPOTrainer with beta 0.04 (reference model loaded)
and with beta 0, on the same model, batch, generation length and seed, in one run; with
--composed, GTPO on TRL's `dapo` and `dr_grpo` losses against TRL's GRPOTrainer with the same loss,
once with aligned steps (GTPO runs one extra no-grad entropy pass) and once with
steps_per_generation 2 > gradient accumulation 1 (TRL runs its old-log-prob pass, which GTPO
reuses: no extra pass).

Each trainer runs in a fresh child process (so its peak resident memory is its own) for
--steps optimisation steps; the first --warmup steps are not timed. Reported: median step time,
peak RSS, and the share of step time spent in generation, in the loss (forward of the policy
and, for GRPO with beta > 0, of the reference inside scoring) and in GTPO's own additions
(conflict detection and token weights, entropy gate and shaping).

    python benchmarks/training_step.py                     # demo model and a ~100M model, CPU
    python benchmarks/training_step.py --sizes demo --steps 8
    python benchmarks/training_step.py --composed --sizes demo --steps 12
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from functools import wraps

VARIANTS = ("gtpo", "grpo_beta0.04", "grpo_beta0")
# Composed variants: "<trainer>:<loss_type>:<steps>", trainer gtpo or trl, steps aligned or reuse.
COMPOSED = tuple(
    f"{trainer}:{loss}:{steps}"
    for loss in ("dapo", "dr_grpo")
    for steps in ("aligned", "reuse")
    for trainer in ("gtpo", "trl")
)


def _timed(store: dict[str, float], key: str, fn):
    @wraps(fn)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            store[key] += time.perf_counter() - start

    return wrapper


def child(variant: str, size: str, steps: int, warmup: int, completion_length: int, seed: int) -> dict:
    """Train one variant and measure it; runs inside the child process."""
    import torch
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from gtpo import algorithm
    from gtpo.app.models import load_model_and_tokenizer
    from gtpo.tasks.arithmetic import make_arithmetic_dataset
    from gtpo.tasks.rewards import correctness_reward, format_reward
    from gtpo.trainer import GTPOConfig, GTPOTrainer

    torch.manual_seed(seed)
    model, tokenizer = load_model_and_tokenizer(f"tiny-{size}", seed=seed)
    # GRPO with beta > 0 loads its reference model from a path, so every variant starts from one.
    model_dir = f"/tmp/gtpo-bench-model-{size}-{seed}"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    common = dict(
        output_dir=f"/tmp/gtpo-bench-{variant}-{size}",
        per_device_train_batch_size=16,
        num_generations=8,
        max_completion_length=completion_length,
        max_steps=steps,
        learning_rate=1e-5,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=not torch.cuda.is_available(),
        bf16=torch.cuda.is_available(),
        seed=seed,
        disable_tqdm=True,
        loss_type="grpo",
    )
    if ":" in variant:  # composed: the same loss type and steps for both trainers
        kind, loss_type, steps_kind = variant.split(":")
        common.update(loss_type=loss_type, gradient_accumulation_steps=1)
        common["steps_per_generation"] = 2 if steps_kind == "reuse" else 1
        config_class, trainer_class = (
            (GTPOConfig, GTPOTrainer) if kind == "gtpo" else (GRPOConfig, GRPOTrainer)
        )
        config = config_class(**common)
    elif variant == "gtpo":
        config, trainer_class = GTPOConfig(**common), GTPOTrainer
    else:
        config, trainer_class = GRPOConfig(**common, beta=float(variant.split("beta")[1])), GRPOTrainer

    seconds: dict[str, float] = defaultdict(float)
    per_step: list[dict[str, float]] = []

    class StepClock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            seconds.clear()
            seconds["start"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            seconds["step"] = time.perf_counter() - seconds["start"]
            per_step.append(dict(seconds))

    trainer = trainer_class(
        model=model_dir,
        reward_funcs=[format_reward, correctness_reward],
        args=config,
        train_dataset=make_arithmetic_dataset(256, "train", seed=seed),
        processing_class=tokenizer,
        callbacks=[StepClock()],
    )
    trainer._generate = _timed(seconds, "generation", trainer._generate)
    trainer._compute_loss = _timed(seconds, "loss", trainer._compute_loss)
    if isinstance(trainer, GTPOTrainer):
        trainer._policy_entropies = _timed(seconds, "entropy_pass", trainer._policy_entropies)
    for name in (
        "conflict_mask",
        "token_weights",
        "official_token_weights",
        "entropy_gate",
        "token_advantages",
        "official_token_advantages",
    ):
        setattr(algorithm, name, _timed(seconds, "gtpo_additions", getattr(algorithm, name)))
    trainer.train()
    timed = per_step[warmup:]
    step = statistics.median(s["step"] for s in timed)
    share = {k: statistics.median(s.get(k, 0.0) / s["step"] for s in timed) for k in ("generation", "loss")}
    for key in ("gtpo_additions", "entropy_pass"):
        share[key] = statistics.median(s.get(key, 0.0) / s["step"] for s in timed)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"variant": variant, "size": size, "step_s": step, "peak_rss_mib": peak_mib, **share}


def _run_child(variant: str, size: str, args: argparse.Namespace) -> dict:
    command = [sys.executable, __file__, "--child", variant, size, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--completion_length", str(args.completion_length),
               "--seed", str(args.seed)]  # fmt: skip
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def _print_row(size: str, name: str, result: dict) -> None:
    print(
        f"{size:>6} {name:>20} | {result['step_s']:>7.3f} {result['peak_rss_mib']:>9.0f} | "
        f"{result['generation']:>5.0%} {result['loss']:>5.0%} {result['gtpo_additions']:>6.1%} "
        f"{result['entropy_pass']:>6.1%}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["demo", "100m"])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--completion_length", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--composed", action="store_true", help="GTPO on DAPO / Dr. GRPO against TRL's")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(*args.child, args.steps, args.warmup, args.completion_length, args.seed)
        print(json.dumps(result))
        return

    print(f"{args.steps} steps, first {args.warmup} untimed; completion length {args.completion_length}")
    header = (
        f"{'model':>6} {'trainer':>20} | {'step s':>7} {'peak MiB':>9} | {'gen':>5} {'loss':>5} "
        f"{'gtpo':>6} {'H pass':>6}"
    )
    print(header)
    print("-" * len(header))
    for size in args.sizes:
        variants = COMPOSED if args.composed else VARIANTS
        results = {}
        for variant in variants:
            results[variant] = _run_child(variant, size, args)
            _print_row(size, variant, results[variant])
        if args.composed:
            pairs = [
                (
                    f"GTPO+{loss} / {loss}, {steps}",
                    results[f"gtpo:{loss}:{steps}"],
                    results[f"trl:{loss}:{steps}"],
                )
                for loss in ("dapo", "dr_grpo")
                for steps in ("aligned", "reuse")
            ]
        else:
            gtpo, ref, plain = (results[v] for v in VARIANTS)
            pairs = [("GTPO / GRPO beta 0.04", gtpo, ref), ("GTPO / GRPO beta 0", gtpo, plain)]
        for name, ours, theirs in pairs:
            time_ratio = ours["step_s"] / theirs["step_s"]
            memory_ratio = ours["peak_rss_mib"] / theirs["peak_rss_mib"]
            print(f"{size:>6} {name}: step time {time_ratio:.2f}x, peak memory {memory_ratio:.2f}x")


if __name__ == "__main__":
    main()
