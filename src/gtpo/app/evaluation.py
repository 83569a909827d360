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

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from gtpo.app.options import FieldError, check_value, option
from gtpo.jsonl import read_jsonl, write_jsonl
from gtpo.tasks.datasets import TASKS, load_task
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
    check_sampling(num_samples, temperature)
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


def check_sampling(num_samples: int, temperature: float) -> None:
    """Several samples per problem need sampling: greedy decoding gives one answer."""
    if num_samples > 1 and temperature == 0:
        raise FieldError(
            "num_samples",
            f"{num_samples} samples per problem need temperature > 0 (greedy decoding gives one answer)",
        )


@dataclass
class EvalConfig:
    """`gtpo eval`: which model, which benchmarks, how many samples, and where the results go."""

    model_name_or_path: str | None = option(
        None, "Hub id, local path, tiny-demo or smollm2-135m.", required=True
    )
    benchmarks: list[str] = option(
        help="Task names, e.g. gsm8k math500 aime24.", choices=tuple(TASKS), required=True, factory=list
    )
    dataset_path: list[str] = option(
        help="NAME=PATH: a local file for a benchmark (repeatable).", factory=list
    )
    split: str | None = option(None, "Split to read (default: each task's test split).")
    limit: int | None = option(None, "First N problems of each benchmark.", (">= 1",))
    num_samples: int = option(1, "Samples per problem.", (">= 1",))
    k: list[int] = option(help="The k of pass@k and maj@k (each <= num_samples).", factory=lambda: [1])
    temperature: float = option(0.0, "Sampling temperature; 0 is greedy.", (">= 0",))
    top_p: float = option(1.0, "Nucleus sampling (with temperature > 0).", ("> 0", "<= 1"))
    max_new_tokens: int = option(512, "Tokens generated per sample at most.", (">= 1",))
    batch_size: int = option(8, "Problems per generation batch.", (">= 1",))
    seed: int = option(0, "Seed of the sampling (with temperature > 0).")
    output_dir: str | None = option(
        None, "Where samples and results go; a rerun resumes there.", required=True
    )

    def __post_init__(self) -> None:
        check_sampling(self.num_samples, self.temperature)
        for k in self.k:
            check_value(k, "k", (">= 1", f"<= {self.num_samples}"))
        if self.temperature == 0:
            for name, default in (("top_p", 1.0), ("seed", 0)):
                if getattr(self, name) != default:
                    raise FieldError(name, "set, but greedy decoding (temperature 0) does not use it")
        for name in self.paths():
            if name not in self.benchmarks:
                raise FieldError("dataset_path", f"{name!r} is not one of the benchmarks {self.benchmarks}")

    def paths(self) -> dict[str, str]:
        """The local file of each benchmark given one (--dataset_path NAME=PATH)."""
        paths = {}
        for item in self.dataset_path:
            name, sep, path = item.partition("=")
            if not sep or not path or not name:
                raise FieldError("dataset_path", f"expects NAME=PATH, got {item!r}")
            paths[name] = path
        return paths


def run_eval(config: EvalConfig) -> int:
    """Load the model and benchmarks, evaluate, print the table. The model name and every
    benchmark file are checked before the model is loaded."""
    from gtpo.app.models import check_model_name, load_model_and_tokenizer

    check_model_name(config.model_name_or_path)
    paths = config.paths()
    benchmarks = {
        name: load_task(name, split=config.split, path=paths.get(name), limit=config.limit)
        for name in config.benchmarks
    }
    model, tokenizer = load_model_and_tokenizer(config.model_name_or_path)
    results = evaluate(
        model,
        tokenizer,
        benchmarks,
        config.output_dir,
        num_samples=config.num_samples,
        ks=config.k,
        temperature=config.temperature,
        top_p=config.top_p,
        max_new_tokens=config.max_new_tokens,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    print(results_table(results), end="")
    return 0
