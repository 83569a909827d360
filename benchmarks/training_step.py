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

    python -m benchmarks.training_step                     # demo model and a ~100M model, CPU
    python -m benchmarks.training_step --sizes demo --steps 8
    python -m benchmarks.training_step --composed --sizes demo --steps 12
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile

from benchmarks.common import VARIANTS, StepClock, Variant, child_result

STEP_VARIANTS = ("gtpo_paper", "grpo_beta0.04", "grpo_beta0")
# Composed variants: "<trainer>:<loss_type>:<steps>", trainer gtpo or trl, steps aligned or reuse.
COMPOSED = tuple(
    f"{trainer}:{loss}:{steps}"
    for loss in ("dapo", "dr_grpo")
    for steps in ("aligned", "reuse")
    for trainer in ("gtpo", "trl")
)
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
    if ":" in variant:  # composed: the same loss type and steps for both trainers
        kind, loss_type, steps_kind = variant.split(":")
        fields.update(loss_type=loss_type, gradient_accumulation_steps=1)
        fields["steps_per_generation"] = 2 if steps_kind == "reuse" else 1
        chosen = Variant("gtpo") if kind == "gtpo" else Variant("grpo")
    else:
        chosen = VARIANTS[variant]

    clock = StepClock()
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
    settings = ["--steps", str(args.steps), "--warmup", str(args.warmup),
                "--completion_length", str(args.completion_length), "--seed", str(args.seed)]  # fmt: skip
    for size in args.sizes:
        variants = COMPOSED if args.composed else STEP_VARIANTS
        results = {}
        for variant in variants:
            results[variant] = child_result("training_step", [variant, size, *settings])
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
            gtpo, ref, plain = (results[v] for v in STEP_VARIANTS)
            pairs = [("GTPO / GRPO beta 0.04", gtpo, ref), ("GTPO / GRPO beta 0", gtpo, plain)]
        for name, ours, theirs in pairs:
            time_ratio = ours["step_s"] / theirs["step_s"]
            memory_ratio = ours["peak_rss_mib"] / theirs["peak_rss_mib"]
            print(f"{size:>6} {name}: step time {time_ratio:.2f}x, peak memory {memory_ratio:.2f}x")


if __name__ == "__main__":
    main()
