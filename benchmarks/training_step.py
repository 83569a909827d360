"""Training step: GTPOTrainer against TRL's GRPOTrainer with beta 0.04 (reference model loaded)
and with beta 0, on the same model, batch, generation length and seed, in one run; with
--composed, GTPO on TRL's `grpo`, `dapo` and `dr_grpo` losses against TRL's GRPOTrainer with the
same loss, once with aligned steps (TRL runs no old-log-prob pass; GTPO takes its entropies from
the loss's own forward pass after the first batch) and once with steps_per_generation 2 > gradient
accumulation 1 ("reuse": TRL runs its old-log-prob pass, which GTPO asks for entropies), plus
GTPO against GRPO beta 0.04.

The trainers compared run at the same time, each in a fresh child process (so its peak resident
memory is its own), and take their --steps optimisation steps in turns, one step at a time
(benchmarks.common.interleaved), so a shared machine's load falls on both alike; the first
--warmup steps are not timed; each trainer has --threads CPU threads (default 1: on a shared
machine, more threads than free cores slow every process down unevenly). Reported: median step
time, peak RSS, and the share of step time spent in generation, in the loss (forward of the
policy and, for GRPO with beta > 0, of the reference inside scoring), in GTPO's own additions
(conflict detection and token weights, entropy gate and shaping) and in GTPO's own no-grad
entropy pass (the first batch's, for H_ini).

    python -m benchmarks.training_step                     # demo model and a ~100M model, CPU
    python -m benchmarks.training_step --sizes demo --steps 8
    python -m benchmarks.training_step --composed --sizes demo 100m --steps 11 --warmup 1
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile

from benchmarks.common import STEP_PAIRS, LockstepClock, interleaved, step_variant

STEP_VARIANTS = ("gtpo_paper", "grpo_beta0.04", "grpo_beta0")
GTPO_ADDITIONS = (
    "conflict_mask",
    "token_weights",
    "official_token_weights",
    "entropy_gate",
    "token_advantages",
    "official_token_advantages",
)


def child(variant: str, size: str, steps: int, warmup: int, completion_length: int, seed: int) -> dict:
    """Train one variant and measure it; runs inside the child process."""
    import torch

    from gtpo import algorithm
    from gtpo.app.models import load_model_and_tokenizer
    from gtpo.tasks.arithmetic import make_arithmetic_dataset
    from gtpo.tasks.rewards import correctness_reward, format_reward
    from gtpo.trainer import GTPOTrainer

    torch.manual_seed(seed)
    model, tokenizer = load_model_and_tokenizer(f"tiny-{size}", seed=seed)
    fields = dict(
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
    chosen, variant_fields = step_variant(variant)
    fields.update(variant_fields)

    clock = LockstepClock()
    with tempfile.TemporaryDirectory() as folder:
        # GRPO with beta > 0 loads its reference model from a path, so every variant starts from one.
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        config, trainer_class = chosen.trainer(output_dir=f"{folder}/run", **fields)
        trainer = trainer_class(
            model=folder,
            reward_funcs=[format_reward, correctness_reward],
            args=config,
            train_dataset=make_arithmetic_dataset(256, "train", seed=seed),
            processing_class=tokenizer,
            callbacks=[clock],
        )
        clock.time_trl(trainer)
        if isinstance(trainer, GTPOTrainer):
            clock.time(trainer, "_policy_entropies", "entropy_pass")
        for name in GTPO_ADDITIONS:
            clock.time(algorithm, name, "gtpo_additions")
        trainer.train()
    shares = {
        p: clock.median(p, warmup, share=True)
        for p in ("generation", "loss", "gtpo_additions", "entropy_pass")
    }
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    step_s = clock.median("step", warmup)
    return {"variant": variant, "size": size, "step_s": step_s, "peak_rss_mib": peak_mib, **shares}


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
    parser.add_argument(
        "--composed", action="store_true", help="GTPO on TRL's grpo / dapo / dr_grpo against TRL's"
    )
    parser.add_argument(
        "--pairs", nargs="+", choices=list(STEP_PAIRS), default=list(STEP_PAIRS),
        help="with --composed: the pairs to run, in this order (default: all)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="CPU threads of each trainer (default 1)")
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = child(*args.child, args.steps, args.warmup, args.completion_length, args.seed)
        print(json.dumps(result))
        return

    print(
        f"{args.steps} steps taken in turns, first {args.warmup} untimed; completion length "
        f"{args.completion_length}; {args.threads} CPU thread(s) per trainer"
    )
    header = (
        f"{'model':>6} {'trainer':>20} | {'step s':>7} {'peak MiB':>9} | {'gen':>5} {'loss':>5} "
        f"{'gtpo':>6} {'H pass':>6}"
    )
    print(header)
    print("-" * len(header))
    settings = ["--steps", str(args.steps), "--warmup", str(args.warmup),
                "--completion_length", str(args.completion_length), "--seed", str(args.seed)]  # fmt: skip
    if args.composed:
        chosen = [STEP_PAIRS[key] for key in args.pairs]
        groups = [((ours, theirs), [(name, ours, theirs)]) for name, ours, theirs in chosen]
    else:
        gtpo, ref, plain = STEP_VARIANTS
        groups = [
            (STEP_VARIANTS, [("GTPO / GRPO beta 0.04", gtpo, ref), ("GTPO / GRPO beta 0", gtpo, plain)])
        ]
    ratios = []
    for size in args.sizes:
        for variants, pairs in groups:
            runs = {variant: [variant, size, *settings] for variant in variants}
            results = interleaved("training_step", runs, args.steps, {"OMP_NUM_THREADS": str(args.threads)})
            for variant in variants:
                _print_row(size, variant, results[variant])
            for name, ours, theirs in pairs:
                time_ratio = results[ours]["step_s"] / results[theirs]["step_s"]
                memory_ratio = results[ours]["peak_rss_mib"] / results[theirs]["peak_rss_mib"]
                ratios.append(
                    f"{size:>6} {name}: step time {time_ratio:.2f}x, peak memory {memory_ratio:.2f}x"
                )
                print(ratios[-1], flush=True)
    print("\n".join(["", "Ratios (ours / theirs, medians of the timed steps):", *ratios]))


if __name__ == "__main__":
    main()
