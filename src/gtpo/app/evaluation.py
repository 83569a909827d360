"""Evaluation: n samples per problem, pass@k (unbiased estimator), maj@k (majority over
mathematically equivalent answers), greedy accuracy and formatting rate, for any set of benchmarks.

Files written to the output directory:
    samples_<benchmark>.jsonl  one record per sample, appended and flushed problem by problem, so an
                               interrupted run resumes where it stopped (finished problems are read
                               back and skipped; a half-written last line is dropped)
    results.json               the metrics per benchmark
    results.md                 the same as a Markdown table
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from gtpo.jsonl import read_jsonl, write_jsonl
from gtpo.tasks.rewards import answers_equal, extract_answer, format_score

MAX_DISTINCT_ANSWERS = 32  # majority voting compares at most this many distinct answers pairwise


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct: 1 - C(n - c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def majority_answer(answers: Sequence[str | None]) -> str | None:
    """The answer of the largest class of mathematically equal answers; ties go to the class seen
    first. Missing answers do not vote."""
    classes: list[list[str]] = []
    for answer in answers:
        if answer is None or not answer.strip():
            continue
        for members in classes:
            if members[0] == answer or answers_equal(answer, members[0]):
                members.append(answer)
                break
        else:
            if len(classes) < MAX_DISTINCT_ANSWERS:
                classes.append([answer])
    if not classes:
        return None
    return max(classes, key=len)[0]  # max keeps the first of equal sizes


def score_sample(text: str, gold: str) -> dict[str, Any]:
    """Extracted answer, format and correctness of one completion (the paper's rewards)."""
    formatted = format_score(text) == 10.0
    answer = extract_answer(text)
    return {
        "answer": answer,
        "formatted": formatted,
        "correct": formatted and answers_equal(answer, gold),
    }


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[list[dict[str, str]]],
    num_samples: int,
    temperature: float,
    max_new_tokens: int,
    top_p: float = 1.0,
) -> list[list[str]]:
    """num_samples completions per conversational prompt, with HF generate (greedy at temperature 0)."""
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    sampling = temperature > 0
    output = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        temperature=temperature if sampling else None,
        top_p=top_p if sampling else None,
        top_k=None,
        num_return_sequences=num_samples,
        pad_token_id=tokenizer.pad_token_id,
    )
    completions = tokenizer.batch_decode(output[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return [completions[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]


def _read_finished(path: Path, num_samples: int) -> dict[str, list[dict[str, Any]]]:
    """Records of problems whose samples are all on disk; rewrites the file without partial ones."""
    if not path.exists():
        return {}
    by_problem: dict[str, list[dict[str, Any]]] = {}
    for record in read_jsonl(path):
        by_problem.setdefault(record["id"], []).append(record)
    finished = {k: v for k, v in by_problem.items() if len(v) == num_samples}
    write_jsonl(path, (r for records in finished.values() for r in records))
    return finished


def _metrics(
    records: dict[str, list[dict[str, Any]]], ks: Sequence[int], gold: dict[str, str]
) -> dict[str, Any]:
    n = len(next(iter(records.values())))
    metrics: dict[str, Any] = {"problems": len(records), "samples_per_problem": n}
    correct = {pid: sum(r["correct"] for r in rs) for pid, rs in records.items()}
    metrics["accuracy"] = sum(correct.values()) / (n * len(records))
    metrics["formatting"] = sum(r["formatted"] for rs in records.values() for r in rs) / (n * len(records))
    for k in ks:
        if k > n:
            continue
        metrics[f"pass@{k}"] = sum(pass_at_k(n, c, k) for c in correct.values()) / len(records)
        majority_correct = 0
        for pid, rs in records.items():
            voted = majority_answer([r["answer"] for r in rs[:k] if r["formatted"]])
            majority_correct += voted is not None and answers_equal(voted, gold[pid])
        metrics[f"maj@{k}"] = majority_correct / len(records)
    return metrics


def evaluate(
    model,
    tokenizer,
    benchmarks: dict[str, Dataset],
    output_dir: str | Path,
    num_samples: int = 1,
    ks: Sequence[int] = (1,),
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    batch_size: int = 8,
    seed: int = 0,
    show_progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Evaluate on each benchmark (rows in the gtpo.tasks schema); returns and writes the metrics."""
    if temperature == 0 and num_samples > 1:
        raise ValueError("num_samples > 1 needs temperature > 0 (greedy decoding gives one answer)")
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    results = {}
    for name, dataset in benchmarks.items():
        path = output / f"samples_{name}.jsonl"
        records = _read_finished(path, num_samples)
        todo = [row for row in dataset if row["id"] not in records]
        if len(todo) < len(dataset):
            done = len(dataset) - len(todo)
            print(f"{name}: {done} of {len(dataset)} problems already in {path}, resuming", file=sys.stderr)
        progress = tqdm(
            total=len(dataset), initial=len(dataset) - len(todo), desc=name, disable=not show_progress
        )
        with path.open("a", encoding="utf-8") as file:
            for start in range(0, len(todo), batch_size):
                batch = todo[start : start + batch_size]
                torch.manual_seed(seed + len(records))
                texts = generate(
                    model,
                    tokenizer,
                    [r["prompt"] for r in batch],
                    num_samples,
                    temperature,
                    max_new_tokens,
                    top_p,
                )
                for row, samples in zip(batch, texts, strict=True):
                    problem = [
                        {"id": row["id"], "sample": i, "completion": t, **score_sample(t, row["answer"])}
                        for i, t in enumerate(samples)
                    ]
                    file.write("".join(json.dumps(r) + "\n" for r in problem))
                    file.flush()
                    os.fsync(file.fileno())
                    records[row["id"]] = problem
                progress.update(len(batch))
        progress.close()
        gold = {row["id"]: row["answer"] for row in dataset}
        results[name] = _metrics({pid: records[pid] for pid in gold}, ks, gold)
    model.train(was_training)
    (output / "results.json").write_text(json.dumps(results, indent=2))
    (output / "results.md").write_text(results_table(results))
    return results


def results_table(results: dict[str, dict[str, Any]]) -> str:
    """Markdown table: one row per benchmark, one column per metric."""
    columns = list(dict.fromkeys(key for metrics in results.values() for key in metrics))
    lines = ["| benchmark | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for name, metrics in results.items():
        cells = [
            f"{metrics[c]:.3f}" if isinstance(metrics.get(c), float) else str(metrics.get(c, ""))
            for c in columns
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# `gtpo eval`
# ------------------------------------------------------------------------------------------------


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model_name_or_path", required=True, help="hub id, local path, tiny-demo or smollm2-135m"
    )
    parser.add_argument(
        "--benchmarks", nargs="+", required=True, help="task names, e.g. gsm8k math500 aime24"
    )
    parser.add_argument(
        "--dataset_path", action="append", default=[], metavar="NAME=PATH", help="local file for a benchmark"
    )
    parser.add_argument("--split", default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N problems of each benchmark")
    parser.add_argument("--num_samples", type=int, default=1)
    parser.add_argument("--k", type=int, nargs="+", default=[1])
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top_p", type=float, default=1.0)
    parser.add_argument("--max_new_tokens", type=int, default=512)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", required=True)


def run_eval(args: argparse.Namespace) -> int:
    """Load the model and benchmarks named on the command line, evaluate, print the table.
    Every flag, benchmark file and the model name are checked before the model is loaded."""
    from gtpo.app.models import check_model_name, load_model_and_tokenizer
    from gtpo.tasks.datasets import TASKS, load_task

    paths = {}
    for item in args.dataset_path:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ValueError(f"--dataset_path expects NAME=PATH, got {item!r}")
        paths[name] = path
    unknown = [name for name in [*args.benchmarks, *paths] if name not in TASKS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], TASKS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"--benchmarks: unknown benchmark {unknown[0]!r}{hint}; known: {', '.join(sorted(TASKS))}"
        )
    for flag in ("num_samples", "max_new_tokens", "batch_size", "limit"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise ValueError(f"--{flag} must be >= 1, got {value}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise ValueError(f"--temperature must be >= 0, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise ValueError(f"--top_p must be > 0 and <= 1, got {args.top_p}")
    if args.num_samples > 1 and args.temperature == 0:
        raise ValueError(
            f"--num_samples {args.num_samples} needs --temperature > 0 (greedy gives one answer)"
        )
    bad_k = [k for k in args.k if not 1 <= k <= args.num_samples]
    if bad_k:
        raise ValueError(f"--k {bad_k[0]}: each k must be between 1 and --num_samples ({args.num_samples})")
    check_model_name(args.model_name_or_path)
    benchmarks = {
        name: load_task(name, split=args.split, path=paths.get(name), limit=args.limit)
        for name in args.benchmarks
    }
    model, tokenizer = load_model_and_tokenizer(args.model_name_or_path)
    results = evaluate(
        model,
        tokenizer,
        benchmarks,
        args.output_dir,
        num_samples=args.num_samples,
        ks=args.k,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        seed=args.seed,
    )
    print(results_table(results), end="")
    return 0
