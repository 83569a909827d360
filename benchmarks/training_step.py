"""Training step: GTPOTrainer against TRL's GRPOTrainer with beta 0.04 (reference model loaded)
and with beta 0, on the same model, batch, generation length and seed, in one run; with
--composed, GTPO on TRL's `grpo`, `dapo` and `dr_grpo` losses against TRL's GRPOTrainer with the
same loss, once with aligned steps (TRL runs no old-log-prob pass; GTPO takes its entropies from
the loss's own forward pass after the first batch) and once with steps_per_generation 2 > gradient
accumulation 1 ("reuse": TRL runs its old-log-prob pass, which GTPO asks for entropies), plus
GTPO against GRPO beta 0.04.

The trainers compared run at the same time, each in a fresh child process (so its peak resident
memory is its own), and take their optimisation steps in turns, one step at a time
(benchmarks.common.interleaved), so a shared machine's load falls on both alike; the first
--warmup cycles are not timed; each trainer has --threads CPU threads (default 1: on a shared
machine, more threads than free cores slow every process down unevenly). --steps and --warmup
count generation cycles: one step each, or two with "reuse", where TRL generates on every other
step (a step's time is then its cycle's time per step, so the median does not fall between the
two kinds of step). Reported: median step time and its quartiles over the timed cycles, peak RSS,
and the share of step time spent in generation, in the loss (forward of the
policy and, for GRPO with beta > 0, of the reference inside scoring), in GTPO's own additions
(conflict detection and token weights, entropy gate and shaping) and in GTPO's own no-grad
entropy pass (the first batch's, for H_ini).

    python -m benchmarks.training_step                     # demo model and a ~100M model, CPU
    python -m benchmarks.training_step --sizes demo --steps 8
    python -m benchmarks.training_step --composed --sizes demo 100m --steps 10 --warmup 1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile

from benchmarks.common import STEP_PAIRS, LockstepClock, cycle_steps, interleaved, paired_ratios, step_variant

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
    """Train one variant for warmup + steps generation cycles and measure it; runs inside the child
    process."""
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
    cycle = cycle_steps(variant)
    fields["max_steps"] = (warmup + steps) * cycle

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
        p: clock.median(p, warmup, share=True, cycle=cycle)
        for p in ("generation", "loss", "gtpo_additions", "entropy_pass")
    }
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cycle_s = clock.per_cycle("step", warmup, cycle=cycle)
    q1, step_s, q3 = statistics.quantiles(cycle_s, n=4)
    # The median over single steps, as this benchmark took it before it timed whole cycles.
    single_step_s = statistics.median(s["step"] for s in clock.steps[warmup * cycle :])
    return {"variant": variant, "size": size, "step_s": step_s, "step_q1_s": q1, "step_q3_s": q3,
            "cycle_s": cycle_s, "single_step_s": single_step_s, "peak_rss_mib": peak_mib,
            **shares}  # fmt: skip


def _print_row(size: str, name: str, result: dict) -> None:
    quartiles = f"{result['step_q1_s']:.3f}-{result['step_q3_s']:.3f}"
    print(
        f"{size:>6} {name:>20} | {result['step_s']:>7.3f} {quartiles:>13} {result['peak_rss_mib']:>9.0f} | "
        f"{result['generation']:>5.0%} {result['loss']:>5.0%} {result['gtpo_additions']:>6.1%} "
        f"{result['entropy_pass']:>6.1%}",
        flush=True,
    )


def _ratios(ours: dict, theirs: dict, cycles: bool) -> str:
    """Step time ours / theirs: the median of the cycle-by-cycle ratios (cycle k of one trainer
    against cycle k of the other: the same batch, taken one right after the other), with its
    quartiles; the ratio of the two medians; and the ratio of the peak memories."""
    q1, median, q3 = paired_ratios(ours["cycle_s"], theirs["cycle_s"])
    line = (
        f"step time {median:.3f}x (quartiles {q1:.3f}-{q3:.3f}; ratio of medians "
        f"{ours['step_s'] / theirs['step_s']:.3f}x"
    )
    if cycles:
        line += f", of medians over single steps {ours['single_step_s'] / theirs['single_step_s']:.3f}x"
    return line + f"), peak memory {ours['peak_rss_mib'] / theirs['peak_rss_mib']:.3f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["demo", "100m"])
    parser.add_argument("--steps", type=int, default=10, help="timed generation cycles (at least 2)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed generation cycles first")
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
    if args.steps < 2 or args.warmup < 0:
        parser.error(f"--steps must be >= 2 and --warmup >= 0, got {args.steps} and {args.warmup}")
    if args.child:
        result = child(*args.child, args.steps, args.warmup, args.completion_length, args.seed)
        print(json.dumps(result))
        return

    print(
        f"{args.warmup} untimed then {args.steps} timed generation cycles (1 step, 2 with reuse), steps "
        f"taken in turns; completion length {args.completion_length}; {args.threads} CPU thread(s) each"
    )
    header = (
        f"{'model':>6} {'trainer':>20} | {'step s':>7} {'quartiles':>13} {'peak MiB':>9} | "
        f"{'gen':>5} {'loss':>5} {'gtpo':>6} {'H pass':>6}"
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
            (cycle,) = {cycle_steps(variant) for variant in variants}
            total = (args.warmup + args.steps) * cycle
            results = interleaved("training_step", runs, total, {"OMP_NUM_THREADS": str(args.threads)})
            for variant in variants:
                _print_row(size, variant, results[variant])
            for name, ours, theirs in pairs:
                ratios.append(f"{size:>6} {name}: " + _ratios(results[ours], results[theirs], cycle > 1))
                print(ratios[-1], flush=True)
    print("\n".join(["", "Ratios (ours / theirs):", *ratios]))


if __name__ == "__main__":
    main()
