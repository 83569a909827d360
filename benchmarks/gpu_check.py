"""GPU check: training step time and peak memory of the pairs benchmarks/training_step.py
compares (benchmarks.common.STEP_PAIRS: GTPO / GRPO beta 0.04, and GTPO on TRL's grpo, dapo and
dr_grpo losses against TRL's, with aligned steps and with TRL's old-log-prob pass), the two
trainers of a pair taking their steps in turns; conflict detection against the vocabulary-indexed
method; and a short bf16 GTPO run of tiny-100m. The cheap parts run first, and the pairs in that
order, so a run stopped by its time limit still has them.

Run it through benchmarks/gpu_check.sh, which installs the carried wheels and bounds the time.
Default (GPU): a ~0.5B-parameter Qwen2-architecture model built from a config (vocabulary
151,936, hidden 896, 24 layers, tied head) in bf16, G = 8 completions of exactly 1,024 tokens,
one prompt per step; conflict detection at N = 64, T = 4,096; tiny-100m for a few steps.
--small: the same checks at sizes a CPU finishes in minutes, the step pairs of one loss type only
(peak memory is then the rise of the peak resident set, not GPU memory). Each trainer runs in its
own child process, so peaks are its own.
Writes gpu_check.json and gpu_check.md into --out (rewritten after each part, so a run stopped by
its time limit keeps what it finished) and exits non-zero when a check fails.

    python -m benchmarks.gpu_check --out gpu_check_out              # on the GPU machine
    python -m benchmarks.gpu_check --small --out gpu_check_small    # anywhere, CPU
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.common import (
    STEP_PAIRS,
    WORD_PROMPT,
    LockstepClock,
    child_result,
    cycle_steps,
    interleaved,
    paired_ratios,
    reset_peak_rss,
    run_child,
    spread_reward,
    step_variant,
    vm_kib,
    word_tokenizer,
)


@dataclass(frozen=True)
class Sizes:
    """Everything the check's size depends on."""

    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    group: int
    completion_length: int
    steps: int  # timed generation cycles (one step each, two with "reuse"), after
    warmup: int  # untimed ones
    conflict_grid: str  # a grid of benchmarks/conflict_detection.py
    conflict_vocabs: tuple[int, ...]
    tiny_model: str
    tiny_steps: int
    tiny_length: int
    step_pairs: tuple[str, ...]  # keys of STEP_PAIRS, in the order they run


FULL = Sizes(151_936, 896, 4864, 24, 14, 2, 8, 1024, 3, 1, "issue", (32_000, 151_936), "tiny-100m", 6, 128,
             tuple(STEP_PAIRS))  # fmt: skip
# On CPU each trainer's start costs more than its steps: one loss type's pairs only.
SMALL = Sizes(8192, 64, 256, 2, 4, 2, 4, 64, 2, 1, "small", (32_000,), "tiny-test", 3, 16,
              ("beta0.04", "dapo:aligned", "dapo:reuse"))  # fmt: skip


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _common_config(folder: str, sizes: Sizes, length: int, steps: int) -> dict:
    on_gpu = torch.cuda.is_available()
    return dict(
        output_dir=os.path.join(folder, "run"),
        per_device_train_batch_size=sizes.group,
        num_generations=sizes.group,
        max_completion_length=length,
        generation_kwargs={"min_new_tokens": length},
        max_steps=steps,
        learning_rate=1e-4,
        loss_type="grpo",
        temperature=1.0,
        bf16=True,
        use_cpu=not on_gpu,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
        seed=0,
    )


def save_step_model(folder: str, sizes: Sizes) -> int:
    """The step benchmark's model (Qwen2 architecture from a config, bf16) and tokenizer; its size."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tokenizer = word_tokenizer(sizes.vocab)
    config = Qwen2Config(
        vocab_size=sizes.vocab,
        hidden_size=sizes.hidden,
        intermediate_size=sizes.intermediate,
        num_hidden_layers=sizes.layers,
        num_attention_heads=sizes.heads,
        num_key_value_heads=sizes.kv_heads,
        max_position_embeddings=sizes.completion_length + 64,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(0)
    with _device():
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())


def step_child(variant: str, model_dir: str, sizes: Sizes) -> dict:
    """In a child process: train `variant` for sizes.warmup + sizes.steps generation cycles; step
    times (per cycle, as benchmarks.common.StepClock.per_cycle) and peak memory."""
    from datasets import Dataset

    torch.manual_seed(0)
    clock = LockstepClock()
    with tempfile.TemporaryDirectory() as folder:
        cycle = cycle_steps(variant)
        fields = _common_config(folder, sizes, sizes.completion_length, (sizes.warmup + sizes.steps) * cycle)
        fields["model_init_kwargs"] = {"dtype": "bfloat16"}  # TRL would load the saved bf16 weights in fp32
        chosen, variant_fields = step_variant(variant)
        config, trainer_class = chosen.trainer(**{**fields, **variant_fields})
        on_gpu = torch.cuda.is_available()
        if on_gpu:
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            base = reset_peak_rss() * 1024
        trainer = trainer_class(
            model=model_dir,
            reward_funcs=spread_reward,
            args=config,
            train_dataset=Dataset.from_list([{"prompt": WORD_PROMPT}] * 64),
            processing_class=word_tokenizer(sizes.vocab),
            callbacks=[clock],
        )
        clock.time_trl(trainer)
        trainer.train()
        peak = torch.cuda.max_memory_allocated() if on_gpu else vm_kib("VmHWM") * 1024
    losses = _losses(trainer)
    key = "completions/min_length"  # logged by steps that generate (every other one with reuse)
    lengths = [entry[key] for entry in trainer.state.log_history if key in entry]
    return {
        "variant": variant,
        "step_s": clock.median("step", sizes.warmup, cycle=cycle),
        "cycle_s": clock.per_cycle("step", sizes.warmup, cycle=cycle),
        "generation_s": clock.median("generation", sizes.warmup, cycle=cycle),
        "peak_mib": (peak - base) / 2**20,
        "losses": losses,
        "min_completion_length": min(lengths),
    }


def _losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def _child_env() -> dict[str, str]:
    """A check's child process environment (on CPU, with memory.py's allocator setting)."""
    env = {"TOKENIZERS_PARALLELISM": "false"}
    if not torch.cuda.is_available():
        env.update(MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1")
    return env


def run_step_child(args: list[str]) -> dict:
    """The tiny-model check in its own process."""
    return child_result("gpu_check", args, _child_env())


def step_pair(key: str, model_dir: str, sizes: Sizes, small: list[str]) -> dict:
    """One pair of benchmarks.common.STEP_PAIRS, its two trainers in child processes taking their
    steps in turns (benchmarks.common.interleaved); both results and the ratios."""
    name, ours, theirs = STEP_PAIRS[key]
    runs = {variant: ["step", variant, model_dir, *small] for variant in (ours, theirs)}
    total = (sizes.warmup + sizes.steps) * cycle_steps(ours)
    results = interleaved("gpu_check", runs, total, _child_env())
    return {
        "name": name,
        "ours": results[ours],
        "theirs": results[theirs],
        "step_ratio": paired_ratios(results[ours]["cycle_s"], results[theirs]["cycle_s"])[1],
        "memory_ratio": results[ours]["peak_mib"] / results[theirs]["peak_mib"],
    }


def conflict_check(sizes: Sizes) -> list[dict]:
    """benchmarks/conflict_detection.py at the check's sizes (on the GPU, or CPU in children)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "conflicts.json"
        vocabs = [str(v) for v in sizes.conflict_vocabs]
        command = [sys.executable, "-m", "benchmarks.conflict_detection", "--grid", sizes.conflict_grid,
                   "--vocabs", *vocabs, "--json", str(path)]  # fmt: skip
        run_child(command, "conflict detection")
        return json.loads(path.read_text())


def tiny_child(sizes: Sizes) -> dict:
    """In a child process: a few GTPO steps of the built-in tiny model with bf16 weights; losses and
    how many parameter tensors moved."""
    from datasets import Dataset

    from gtpo import GTPOConfig, GTPOTrainer
    from gtpo.app.models import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(sizes.tiny_model)
    model = model.to(_device(), torch.bfloat16)
    before = [p.detach().float().clone() for p in model.parameters()]
    prompts = [{"prompt": [{"role": "user", "content": f"What is {i} + {2 * i}?"}]} for i in range(32)]
    with tempfile.TemporaryDirectory() as folder:
        config = GTPOConfig(**{**_common_config(folder, sizes, sizes.tiny_length, sizes.tiny_steps),
                               "generation_kwargs": None, "learning_rate": 1e-3})  # fmt: skip
        trainer = GTPOTrainer(
            model=model,
            reward_funcs=spread_reward_chat,
            args=config,
            train_dataset=Dataset.from_list(prompts),
            processing_class=tokenizer,
        )
        trainer.train()
    after = [p.detach().float() for p in trainer.model.parameters()]
    moved = sum(not torch.equal(a, b.to(a.device)) for a, b in zip(after, before, strict=True))
    losses = _losses(trainer)
    return {
        "model": sizes.tiny_model,
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": str(next(trainer.model.parameters()).dtype),
        "steps": trainer.state.global_step,
        "losses": losses,
        "all_finite": all(math.isfinite(loss) for loss in losses),
        "moved_tensors": moved,
        "tensors": len(after),
    }


def spread_reward_chat(completions, **kwargs) -> list[float]:
    """spread_reward for conversational completions."""
    return spread_reward([completion[0]["content"] for completion in completions])


def machine() -> dict:
    import transformers
    import trl

    info = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "device": "cpu",
    }
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    info = report["machine"]
    lines = [f"# GPU check ({report['mode']})", "", ", ".join(f"{k} {v}" for k, v in info.items()), ""]
    if "step" in report:
        step = report["step"]
        lines += [
            f"## Training step: {step['parameters'] / 1e6:.0f}M parameters, vocabulary {step['vocab']:,}, "
            f"G = {step['group']}, {step['completion_length']} tokens, bf16, "
            f"medians of {step['timed_cycles']} generation cycles (step time: of the cycle-by-cycle ratios)",
            "",
            "| pair | GTPO step s | theirs step s | GTPO peak MiB | theirs peak MiB | step time | memory |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for pair in step["pairs"].values():
            ours, theirs = pair["ours"], pair["theirs"]
            lines.append(
                f"| {pair['name']} | {ours['step_s']:.2f} | {theirs['step_s']:.2f} | {ours['peak_mib']:,.0f} "
                f"| {theirs['peak_mib']:,.0f} | {pair['step_ratio']:.2f}x | {pair['memory_ratio']:.2f}x |"
            )
        lines.append("")
    if "conflict" in report:
        lines += [
            "## Conflict detection",
            "",
            "| N | T | vocab | agree | ours | vocabulary-indexed | speed-up | memory |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for row in report["conflict"]:
            lines.append(
                f"| {row['n']} | {row['t']} | {row['vocab']:,} | {row['agree']} "
                f"| {row['ours_s'] * 1e3:.2f} ms, "
                f"{row['ours_mib']:.1f} MiB | {row['vocab_indexed_s'] * 1e3:.1f} ms, "
                f"{row['vocab_indexed_mib']:,.0f} MiB | {row['vocab_indexed_s'] / row['ours_s']:,.0f}x | "
                f"{row['vocab_indexed_mib'] / max(row['ours_mib'], 1e-3):,.0f}x |"
            )
        lines.append("")
    if "tiny" in report:
        tiny = report["tiny"]
        lines += [
            f"## Short GTPO run: {tiny['model']} "
            f"({tiny['parameters'] / 1e6:.2f}M parameters, {tiny['dtype']})",
            "",
            f"{tiny['steps']} steps; losses {', '.join(f'{x:.4g}' for x in tiny['losses'])}; all finite: "
            f"{tiny['all_finite']}; parameter tensors moved: {tiny['moved_tensors']} of {tiny['tensors']}",
            "",
        ]
    if report.get("failures"):
        lines += ["## Failed checks", "", *(f"- {failure}" for failure in report["failures"]), ""]
    return "\n".join(lines)


def write(report: dict, out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(report, indent=1) + "\n")
    (out / "gpu_check.md").write_text(markdown(report))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="CPU-sized checks (minutes)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_check_out"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # step VARIANT MODEL_DIR | tiny
    args = parser.parse_args()
    sizes = SMALL if args.small else FULL
    if args.child:
        kind, *rest = args.child
        result = step_child(rest[0], rest[1], sizes) if kind == "step" else tiny_child(sizes)
        print(json.dumps(result))
        return
    if not args.small and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device; use --small on a machine without a GPU")
    args.out.mkdir(parents=True, exist_ok=True)
    small = ["--small"] if args.small else []
    report: dict = {
        "mode": "small (CPU sizes)" if args.small else "full",
        "machine": machine(),
        "failures": [],
    }
    failures = report["failures"]
    print(json.dumps(report["machine"]), flush=True)

    report["conflict"] = conflict_check(sizes)
    for row in report["conflict"]:
        print(
            f"conflict vocab {row['vocab']}: {row['vocab_indexed_s'] / row['ours_s']:.0f}x faster", flush=True
        )
        if not row["agree"]:
            failures.append(f"conflict masks disagree at vocab {row['vocab']}")
    write(report, args.out)

    report["tiny"] = tiny = run_step_child(["tiny", *small])
    print(f"{tiny['model']}: losses {tiny['losses']}, {tiny['moved_tensors']} tensors moved", flush=True)
    if not tiny["all_finite"] or tiny["steps"] != sizes.tiny_steps:
        failures.append(f"{tiny['model']}: {tiny['steps']} steps, losses {tiny['losses']}")
    if tiny["moved_tensors"] == 0:
        failures.append(f"{tiny['model']}: no parameter moved")
    write(report, args.out)
    with tempfile.TemporaryDirectory() as folder:
        parameters = save_step_model(folder, sizes)
        report["step"] = step = {"parameters": parameters, "vocab": sizes.vocab, "group": sizes.group,
                                 "completion_length": sizes.completion_length,
                                 "timed_cycles": sizes.steps, "pairs": {}}  # fmt: skip
        for key in sizes.step_pairs:  # the most telling first: a run stopped by its time limit keeps them
            pair = step["pairs"][key] = step_pair(key, folder, sizes, small)
            print(f"step {pair['name']}: {pair['step_ratio']:.2f}x time, {pair['memory_ratio']:.2f}x memory")
            for result in (pair["ours"], pair["theirs"]):
                if not all(math.isfinite(loss) for loss in result["losses"]):
                    failures.append(f"{result['variant']}: non-finite loss {result['losses']}")
                if result["min_completion_length"] != sizes.completion_length:
                    failures.append(
                        f"{result['variant']}: a completion shorter than {sizes.completion_length} tokens"
                    )
            write(report, args.out)

    print(markdown(report))
    if failures:
        raise SystemExit(f"gpu_check: {len(failures)} check(s) failed")


if __name__ == "__main__":
    main()
