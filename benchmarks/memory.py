"""Peak memory of one training step: GTPO against GRPO (beta 0 and 0.04) and a full-logits GRPO,
as vocabulary and completion length grow, measured side by side in one run.

The model is a 2-layer Llama built from a config with hidden size 64 and a tied LM head, so the
LM head (vocabulary x 64) and the per-token log-probs over the vocabulary dominate memory. Each
step trains on one prompt with G = 2 completions forced to exactly the completion length
(`min_new_tokens`), in fp32 on one CPU thread. Variants, all through the trainers' public API:

  gtpo_paper    GTPOTrainer (paper preset)
  grpo_beta0    TRL's GRPOTrainer, beta 0 (no reference model)
  grpo_beta0.04 TRL's GRPOTrainer, beta 0.04 (reference model loaded and run)
  full_logits   GRPOTrainer, beta 0, whose log-probs and entropies come from the model's full
                (B, T, V) logits instead of TRL's tiled fused LM head

Each measurement runs in a fresh child process with a fixed glibc mmap threshold, so large freed
buffers leave the resident set at once. Memory is the rise of the peak resident set (Linux VmHWM,
reset just before the trainer is built) over the resident set at that moment: it counts the
policy (and reference) weights as loaded by the trainer, the optimizer state, generation, and the
loss's forward and backward. A full-logits cell whose logits would need more than --max_gib
(five fp32 copies of G x (prompt + T) x V: what the measured cells took) is skipped and reported.

    python -m benchmarks.memory                        # vocab 32k and 152k, T = 512 ... 4096
    python -m benchmarks.memory --quick                # vocab 32k, T = 512 and 1024
    python -m benchmarks.memory --plot benchmarks/memory.png --json memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks.common import (
    VARIANTS,
    WORD_PROMPT,
    child_result,
    reset_peak_rss,
    spread_reward,
    vm_kib,
    word_tokenizer,
)

MEMORY_VARIANTS = ("gtpo_paper", "grpo_beta0", "grpo_beta0.04", "full_logits")
HIDDEN = 64
GROUP = 2
# Large freed buffers leave the resident set at once; one thread, as on a shared machine.
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}


def logits_gib(vocab: int, length: int) -> float:
    """What five fp32 copies of the full (G, prompt + T, V) logits take, in GiB."""
    tokens = GROUP * (length + len(WORD_PROMPT.split()) + 1)
    return 5 * tokens * vocab * 4 / 2**30


def save_model(folder: str, vocab: int, length: int, seed: int) -> None:
    """A 2-layer Llama with hidden size 64 and vocabulary `vocab`, saved with its tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = word_tokenizer(vocab)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=HIDDEN,
        intermediate_size=4 * HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=length + 64,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def full_logits_trainer_class():
    """GRPOTrainer whose per-token log-probs and entropies come from the full (B, T, V) logits."""
    import torch
    from trl import GRPOTrainer

    class FullLogitsGRPOTrainer(GRPOTrainer):
        def _get_per_token_logps_and_entropies(
            self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
            compute_entropy=False, compute_aux_loss=False, **unused,
        ):  # fmt: skip
            with self.accelerator.autocast():
                output = model(
                    input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=logits_to_keep + 1
                )
            logits = output.logits[:, :-1].float() / self.temperature  # (B, T, V)
            log_probs = torch.log_softmax(logits, dim=-1)  # (B, T, V)
            targets = input_ids[:, -logits_to_keep:]
            logps = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
            entropies = None
            if compute_entropy:
                with torch.no_grad():
                    entropies = -(log_probs.exp() * log_probs).sum(-1)
            return logps, entropies, None

    return FullLogitsGRPOTrainer


def child(variant: str, vocab: int, length: int, seed: int) -> dict:
    """One training step of `variant`; runs inside the child process and returns its measurements."""
    import torch

    torch.set_num_threads(1)
    from datasets import Dataset

    lengths: list[int] = []

    def reward(completions, completion_ids, **kwargs) -> list[float]:
        lengths.extend(len(ids) for ids in completion_ids)
        return spread_reward(completions)

    with tempfile.TemporaryDirectory() as folder:
        model_dir = os.path.join(folder, "model")
        save_model(model_dir, vocab, length, seed)
        tokenizer = word_tokenizer(vocab)
        dataset = Dataset.from_list([{"prompt": WORD_PROMPT}] * 4)
        fields = dict(
            output_dir=os.path.join(folder, "run"),
            per_device_train_batch_size=GROUP,
            num_generations=GROUP,
            max_completion_length=length,
            generation_kwargs={"min_new_tokens": length},
            max_steps=1,
            learning_rate=1e-5,
            loss_type="grpo",
            temperature=1.0,
            bf16=False,
            use_cpu=True,
            save_strategy="no",
            report_to="none",
            logging_steps=1,
            disable_tqdm=True,
            seed=seed,
        )
        if variant == "full_logits":
            config, _ = VARIANTS["grpo_beta0"].trainer(**fields)
            trainer_class = full_logits_trainer_class()
        else:
            config, trainer_class = VARIANTS[variant].trainer(**fields)

        base = reset_peak_rss()
        trainer = trainer_class(
            model=model_dir,
            reward_funcs=reward,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
        )
        trainer.train()
        peak_mib = (vm_kib("VmHWM") - base) / 1024
    if lengths != [length] * GROUP:
        raise RuntimeError(f"{variant}: completions of {lengths} tokens, expected {GROUP} x {length}")
    loss = trainer.state.log_history[0].get("loss")
    return {"variant": variant, "vocab": vocab, "length": length, "peak_mib": peak_mib, "loss": loss}


def plot(rows: list[dict], path: Path) -> None:
    """Peak memory against completion length, one panel per vocabulary, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    vocabs = sorted({row["vocab"] for row in rows})
    figure, axes = plt.subplots(1, len(vocabs), figsize=(5.5 * len(vocabs), 4), squeeze=False)
    for axis, vocab in zip(axes[0], vocabs, strict=True):
        for variant in MEMORY_VARIANTS:
            points = [
                (r["length"], r["peak_mib"])
                for r in rows
                if r["vocab"] == vocab and r["variant"] == variant and r["peak_mib"] is not None
            ]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", label=variant)
        axis.set_xscale("log", base=2)
        axis.set_title(f"vocabulary {vocab:,}")
        axis.set_xlabel("completion length T (G = 2)")
        axis.set_ylabel("peak RSS rise of one step (MiB)")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="vocabulary 32k, lengths 512 and 1024 only")
    parser.add_argument("--vocabs", type=int, nargs="+", default=[32_000, 152_000])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    parser.add_argument("--max_gib", type=float, default=5.0, help="skip full-logits cells above this")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, help="write the plot here (PNG)")
    parser.add_argument("--json", type=Path, help="write every measurement here")
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "VOCAB", "LENGTH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        variant, vocab, length = args.child
        print(json.dumps(child(variant, int(vocab), int(length), args.seed)))
        return
    vocabs, lengths = ([32_000], [512, 1024]) if args.quick else (args.vocabs, args.lengths)
    for name, values in (("--vocabs", vocabs), ("--lengths", lengths)):
        if any(value < 16 for value in values):
            raise SystemExit(f"{name}: every value must be at least 16, got {values}")

    print(f"peak RSS rise of one training step (MiB), G = {GROUP}, hidden {HIDDEN}, fp32, one thread")
    header = (
        f"{'vocab':>7} {'T':>5} | {'GTPO':>7} {'GRPO b0':>8} {'GRPO b.04':>9} {'full':>7} | "
        f"{'GTPO/b0':>7} {'GTPO/b.04':>9} {'full/b0':>7} {'ok':>3}"
    )
    print(header)
    print("-" * len(header))
    rows: list[dict] = []
    worst = 0.0
    for vocab in vocabs:
        for length in lengths:
            peaks: dict[str, float | None] = {}
            for variant in MEMORY_VARIANTS:
                if variant == "full_logits" and logits_gib(vocab, length) > args.max_gib:
                    peaks[variant] = None
                    rows.append({"variant": variant, "vocab": vocab, "length": length, "peak_mib": None,
                                 "skipped": f"needs about {logits_gib(vocab, length):.1f} GiB"})  # fmt: skip
                    continue
                cell = [variant, str(vocab), str(length), "--seed", str(args.seed)]
                result = child_result("memory", cell, CHILD_ENV)
                rows.append(result)
                peaks[variant] = result["peak_mib"]
            ratio = peaks["gtpo_paper"] / peaks["grpo_beta0"]
            worst = max(worst, ratio)
            full = peaks["full_logits"]
            full_text = f"{full:>7.0f}" if full is not None else f"{'skip':>7}"
            full_ratio = f"{full / peaks['grpo_beta0']:>6.2f}x" if full is not None else f"{'-':>7}"
            print(
                f"{vocab:>7} {length:>5} | {peaks['gtpo_paper']:>7.0f} {peaks['grpo_beta0']:>8.0f} "
                f"{peaks['grpo_beta0.04']:>9.0f} {full_text} | {ratio:>6.3f}x "
                f"{peaks['gtpo_paper'] / peaks['grpo_beta0.04']:>8.3f}x {full_ratio} "
                f"{'yes' if ratio <= 1.05 else 'NO':>3}",
                flush=True,
            )
    skipped = [r for r in rows if r.get("skipped")]
    for row in skipped:
        print(f"full_logits vocab={row['vocab']} T={row['length']} skipped: {row['skipped']} > --max_gib")
    verdict = "holds" if worst <= 1.05 else "FAILS"
    print(f"GTPO peak within 1.05x of GRPO beta 0 at every size: {verdict} (largest ratio {worst:.3f}x)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    if args.plot:
        plot(rows, args.plot)
    if worst > 1.05:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
