"""Evaluation as the community reports it: avg@n, unbiased pass@k, maj@k and greedy accuracy, per
benchmark, over one or several seeds, under a named protocol or explicit settings.

Metrics (each with a standard error over problems):
    greedy       accuracy of one greedy completion per problem
    avg@n        accuracy averaged over n sampled completions per problem (pass@1 estimated from n);
                 `avg@n sample std` is the standard deviation of the n per-sample accuracies
    pass@k       unbiased estimator 1 - C(n - c, k) / C(n, k), from n samples of which c are correct
    maj@k        the majority answer of the first k samples (mathematically equal answers vote together)
    formatting   share of completions with an answer in the chosen convention
With several seeds the whole evaluation runs once per seed; each metric is reported as the mean and
standard deviation over seeds.

Files written to the output directory (one `seed_<s>/` directory per seed when there are several):
    samples_<benchmark>.jsonl         one record per sampled completion, written problem by problem,
                                      so an interrupted run resumes where it stopped (finished
                                      problems are read back and skipped; a half-written line is dropped)
    samples_<benchmark>_greedy.jsonl  the greedy pass, when a protocol runs one beside the samples
    results.json                      settings, metrics per seed and over seeds, generation speed
    results.md                        a lighteval-style table: benchmark, metric, value, stderr
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from tqdm.auto import tqdm

from gtpo.app.options import ConfigError, FieldError, option
from gtpo.jsonl import read_jsonl, write_jsonl
from gtpo.tasks.datasets import TASKS, load_task
from gtpo.tasks.prompts import SYSTEM_PROMPTS, with_system_prompt
from gtpo.tasks.rewards import ANSWER_FORMATS, answers_equal, answers_equal_many, final_answer

MAX_DISTINCT_ANSWERS = 32  # majority voting compares at most this many distinct answers pairwise

# Default completion budgets (new tokens) when neither a protocol nor --max_new_tokens sets one.
BENCHMARK_MAX_NEW_TOKENS = {"gsm8k": 1024, "math": 2048, "math500": 2048, "aime24": 4096, "aime25": 4096,
                            "amc23": 4096, "arithmetic": 256}  # fmt: skip
DEFAULT_MAX_NEW_TOKENS = 2048


# ------------------------------------------------------------------------------------------------
# Estimators
# ------------------------------------------------------------------------------------------------


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


def mean_and_stderr(scores: Sequence[float]) -> tuple[float, float]:
    """Mean of per-problem scores and its standard error (sample std / sqrt(count); 0 for one score)."""
    mean = sum(scores) / len(scores)
    stderr = statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else 0.0
    return mean, stderr


def score_sample(text: str, gold: str, answer_format: str = "tags") -> dict[str, Any]:
    """Extracted answer, whether there is one, and correctness of one completion."""
    answer = final_answer(text, answer_format)
    return {"answer": answer, "formatted": answer is not None, "correct": answers_equal(answer, gold)}


def _score_problem(texts: list[str], gold: str, answer_format: str) -> list[dict[str, Any]]:
    answers = [final_answer(text, answer_format) for text in texts]
    verdicts = answers_equal_many([(answer, gold) for answer in answers])
    return [
        {"answer": a, "formatted": a is not None, "correct": v}
        for a, v in zip(answers, verdicts, strict=True)
    ]


def sample_metrics(
    records: dict[str, list[dict[str, Any]]],
    gold: dict[str, str],
    ks: Sequence[int] = (),
    maj_ks: Sequence[int] = (),
    greedy: bool = False,
) -> dict[str, tuple[float, float]]:
    """(value, stderr) per metric for one pass: `records` maps each problem id to its n scored samples
    in order. A greedy pass (n = 1 at temperature 0) gives `greedy`; a sampled one avg@n, its sample
    std (stderr 0), pass@k and maj@k."""
    n = len(next(iter(records.values())))
    correct = {pid: [bool(r["correct"]) for r in rs] for pid, rs in records.items()}
    metrics: dict[str, tuple[float, float]] = {}
    if greedy:
        metrics["greedy"] = mean_and_stderr([float(c[0]) for c in correct.values()])
    else:
        metrics[f"avg@{n}"] = mean_and_stderr([sum(c) / n for c in correct.values()])
        per_sample = [sum(c[j] for c in correct.values()) / len(correct) for j in range(n)]
        metrics[f"avg@{n} sample std"] = (statistics.stdev(per_sample) if n > 1 else 0.0, 0.0)
        for k in ks:
            metrics[f"pass@{k}"] = mean_and_stderr([pass_at_k(n, sum(c), k) for c in correct.values()])
        for k in maj_ks:
            votes = []
            for pid, rs in records.items():
                voted = majority_answer([r["answer"] for r in rs[:k]])
                votes.append(float(voted is not None and answers_equal(voted, gold[pid])))
            metrics[f"maj@{k}"] = mean_and_stderr(votes)
    metrics["formatting"] = mean_and_stderr([sum(r["formatted"] for r in rs) / n for rs in records.values()])
    return metrics


def over_seeds(per_seed: Sequence[dict[str, tuple[float, float]]]) -> dict[str, dict[str, Any]]:
    """Per metric: the mean over seeds (`value`), the sample standard deviation over seeds
    (`seed_std`, 0 for one seed), the mean standard error over problems (`stderr`) and the values."""
    combined = {}
    for metric in per_seed[0]:
        values = [seed[metric][0] for seed in per_seed]
        combined[metric] = {
            "value": sum(values) / len(values),
            "seed_std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "stderr": sum(seed[metric][1] for seed in per_seed) / len(per_seed),
            "per_seed": values,
        }
    return combined


# ------------------------------------------------------------------------------------------------
# Settings: EvalConfig, protocols, per-benchmark plans
# ------------------------------------------------------------------------------------------------


def check_sampling(num_samples: int, temperature: float) -> None:
    """Several samples per problem need sampling: greedy decoding gives one answer."""
    if num_samples > 1 and temperature == 0:
        raise FieldError(
            "num_samples",
            f"{num_samples} samples per problem need temperature > 0 (greedy decoding gives one answer)",
        )


PROTOCOL_NAMES = ("open-r1", "qwen-math")


@dataclass
class EvalConfig:
    """`gtpo eval`: which model and benchmarks, under which protocol or settings, and where the
    results go. Fields left at None take the protocol's value, else the default named in their help."""

    model_name_or_path: str | None = option(
        None, "Hub id, local path, tiny-test, tiny-demo or smollm2-135m.", required=True
    )
    benchmarks: list[str] = option(
        help="Task names, e.g. gsm8k math500 aime24 aime25 amc23.", choices=tuple(TASKS), required=True,
        factory=list,
    )  # fmt: skip
    output_dir: str | None = option(
        None, "Directory for samples, results.json and results.md; a rerun resumes there.", required=True
    )
    dataset_path: list[str] = option(
        help="NAME=PATH: a local JSONL/parquet file for a benchmark (repeatable).", factory=list
    )
    split: str | None = option(None, "Dataset split (default: the task's test split).")
    limit: int | None = option(None, "First N problems of each benchmark.", (">= 1",))
    protocol: str | None = option(
        None,
        "Published settings: open-r1 (T 0.6, top_p 0.95, n 64 for AIME/AMC and 4 otherwise, boxed) or "
        "qwen-math (greedy plus maj@8, boxed). A flag set beside it wins and is recorded.",
        choices=PROTOCOL_NAMES,
    )
    answer_format: str | None = option(
        None, "Answer convention: tags (the paper's, default), boxed or any.", choices=ANSWER_FORMATS
    )
    num_samples: int | None = option(None, "Sampled completions per problem (default 1).", (">= 1",))
    k: list[int] | None = option(None, "pass@k for these k (default 1 when sampling).")
    maj_k: list[int] | None = option(None, "maj@k for these k (default none).")
    greedy: bool | None = option(None, "Also run one greedy completion per problem (default false).")
    temperature: float | None = option(None, "Sampling temperature; 0 is greedy (default 0).", (">= 0",))
    top_p: float | None = option(None, "Nucleus sampling top_p (default 1.0).", ("> 0", "<= 1"))
    max_new_tokens: int | None = option(
        None, "Completion budget (default per benchmark, e.g. 4096 for AIME).", (">= 1",)
    )
    batch_size: int = option(8, "Completions generated per forward batch.", (">= 1",))
    seeds: list[int] = option(help="Run the whole evaluation once per seed.", factory=lambda: [0])

    def __post_init__(self) -> None:
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise FieldError("seeds", f"must be distinct and at least one, got {self.seeds}")
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


@dataclass(frozen=True)
class Protocol:
    """Published evaluation settings, applied to every benchmark unless a flag overrides one."""

    description: str
    temperature: float
    top_p: float
    num_samples: int
    max_new_tokens: int
    answer_format: str
    greedy: bool
    k: tuple[int, ...]
    maj_k: tuple[int, ...]
    num_samples_by_benchmark: dict[str, int] = field(default_factory=dict)


PROTOCOLS: dict[str, Protocol] = {
    "open-r1": Protocol(
        description="open-r1 / lighteval: avg@n at T 0.6, top_p 0.95, 32k tokens, boxed answers; "
        "n 64 for AIME and AMC, 4 for the others",
        temperature=0.6,
        top_p=0.95,
        num_samples=4,
        num_samples_by_benchmark={"aime24": 64, "aime25": 64, "amc23": 64},
        max_new_tokens=32768,
        answer_format="boxed",
        greedy=False,
        k=(1,),
        maj_k=(),
    ),
    "qwen-math": Protocol(
        description="Qwen2.5-Math: greedy accuracy plus maj@8 over 8 samples at T 0.7, top_p 0.8, "
        "2048 tokens, boxed answers",
        temperature=0.7,
        top_p=0.8,
        num_samples=8,
        max_new_tokens=2048,
        answer_format="boxed",
        greedy=True,
        k=(),
        maj_k=(8,),
    ),
}
PROTOCOL_FIELDS = ("answer_format", "num_samples", "k", "maj_k", "greedy", "temperature", "top_p",
                   "max_new_tokens")  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """The exact settings one benchmark is evaluated with. A plan at temperature 0 is one greedy pass;
    otherwise num_samples sampled completions, plus a greedy pass when `greedy`."""

    answer_format: str
    num_samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    k: tuple[int, ...]
    maj_k: tuple[int, ...]
    greedy: bool


def _set_fields(config: EvalConfig) -> dict[str, Any]:
    """The protocol-settable fields the user set explicitly."""
    return {name: getattr(config, name) for name in PROTOCOL_FIELDS if getattr(config, name) is not None}


def plan_for(config: EvalConfig, benchmark: str) -> Plan:
    """The settings for one benchmark: explicit flags win over the protocol, which wins over defaults.
    Raises a one-line ValueError for a combination that cannot run as asked."""
    protocol = PROTOCOLS.get(config.protocol) if config.protocol else None
    given = _set_fields(config)

    def pick(name: str, protocol_value: Any, default: Any) -> Any:
        return given.get(name, protocol_value if protocol else default)

    num_samples = pick(
        "num_samples", protocol and protocol.num_samples_by_benchmark.get(benchmark, protocol.num_samples), 1
    )
    temperature = pick("temperature", protocol and protocol.temperature, 0.0)
    budget = BENCHMARK_MAX_NEW_TOKENS.get(benchmark, DEFAULT_MAX_NEW_TOKENS)
    plan = Plan(
        answer_format=pick("answer_format", protocol and protocol.answer_format, "tags"),
        num_samples=num_samples,
        temperature=temperature,
        top_p=pick("top_p", protocol and protocol.top_p, 1.0),
        max_new_tokens=pick("max_new_tokens", protocol and protocol.max_new_tokens, budget),
        k=tuple(pick("k", protocol and protocol.k, (1,) if temperature > 0 else ())),
        maj_k=tuple(pick("maj_k", protocol and protocol.maj_k, ())),
        greedy=pick("greedy", protocol and protocol.greedy, False),
    )
    if plan.temperature == 0:
        check_sampling(plan.num_samples, plan.temperature)
        greedy_ignores = {
            "seeds": config.seeds != [0],
            "top_p": "top_p" in given,
            "k": "k" in given and bool(plan.k),
        }
        for name, ignored in greedy_ignores.items():
            if ignored:
                raise FieldError(name, "set, but greedy decoding (temperature 0) does not use it")
    for flag, values in (("k", plan.k), ("maj_k", plan.maj_k)):
        for k in values:
            if not 1 <= k <= plan.num_samples:
                where = f" (num_samples for {benchmark})" if protocol else ""
                raise FieldError(flag, f"must be >= 1 and <= {plan.num_samples}{where}, got {k}")
    return plan


# ------------------------------------------------------------------------------------------------
# Generation
# ------------------------------------------------------------------------------------------------


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[list[dict[str, str]]],
    num_samples: int,
    temperature: float,
    max_new_tokens: int,
    top_p: float = 1.0,
    token_counts: list[int] | None = None,
) -> list[list[str]]:
    """num_samples completions per conversational prompt, with HF generate (greedy at temperature 0).
    When `token_counts` is given, the number of tokens generated for each completion (up to and
    including its end-of-sequence token) is appended to it."""
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
    generated = output[:, inputs["input_ids"].shape[1] :]
    if token_counts is not None:
        ended = generated == tokenizer.eos_token_id
        first_end = torch.where(ended.any(dim=1), ended.int().argmax(dim=1) + 1, generated.shape[1])
        token_counts.extend(first_end.tolist())
    completions = tokenizer.batch_decode(generated, skip_special_tokens=True)
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


@dataclass
class _Pass:
    """One generation pass over a benchmark: n completions per problem at one temperature."""

    name: str
    path: Path
    num_samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    answer_format: str


def _check_settings(spec: _Pass, seed: int) -> None:
    """Record the settings beside the samples file; refuse to add to samples made with others."""
    path = spec.path.with_name(spec.path.name.removesuffix(".jsonl") + ".settings.json")
    settings = {**dataclasses.asdict(spec), "seed": seed}
    del settings["name"], settings["path"]
    if path.exists() and spec.path.exists():
        stored = json.loads(path.read_text())
        changed = [key for key in settings if stored.get(key) != settings[key]]
        if changed:
            key = changed[0]
            raise ValueError(
                f"{spec.path}: its samples were made with {key} {stored.get(key)!r}, this run asks for "
                f"{settings[key]!r}; use another --output_dir, or the same settings to resume"
            )
    path.write_text(json.dumps(settings))


def _run_pass(
    model, tokenizer, dataset: Dataset, spec: _Pass, batch_size: int, seed: int, show_progress: bool
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """Generate and score the problems not yet on disk; returns every problem's records and the speed.

    Completions are generated `batch_size` at a time, prompts sorted by length (longest first) so
    that a batch holds prompts of similar length; a problem's records are written, flushed and
    synced as soon as its last sample is done."""
    _check_settings(spec, seed)
    records = _read_finished(spec.path, spec.num_samples)
    rows = [row for row in dataset if row["id"] not in records]
    if len(rows) < len(dataset):
        done = len(dataset) - len(rows)
        print(
            f"{spec.name}: {done} of {len(dataset)} problems already in {spec.path}, resuming",
            file=sys.stderr,
        )
    system_prompt = SYSTEM_PROMPTS["boxed" if spec.answer_format == "boxed" else "tags"]
    prompts = {row["id"]: with_system_prompt(row["prompt"], system_prompt) for row in rows}
    lengths = {
        pid: len(tokenizer(tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True),
                           add_special_tokens=False)["input_ids"])
        for pid, p in prompts.items()
    }  # fmt: skip
    rows.sort(key=lambda row: -lengths[row["id"]])
    jobs = [row for row in rows for _ in range(spec.num_samples)]
    pending: dict[str, list[str]] = {}
    token_counts: list[int] = []
    seconds = 0.0
    progress = tqdm(total=len(dataset), initial=len(records), desc=spec.name, disable=not show_progress)
    with spec.path.open("a", encoding="utf-8") as file:
        for start in range(0, len(jobs), batch_size):
            batch = jobs[start : start + batch_size]
            torch.manual_seed(seed * 1_000_003 + len(records) * spec.num_samples + start)
            began = time.perf_counter()
            texts = generate(
                model,
                tokenizer,
                [prompts[row["id"]] for row in batch],
                1,
                spec.temperature,
                spec.max_new_tokens,
                spec.top_p,
                token_counts=token_counts,
            )
            seconds += time.perf_counter() - began
            for row, (text,) in zip(batch, texts, strict=True):
                samples = pending.setdefault(row["id"], [])
                samples.append(text)
                if len(samples) < spec.num_samples:
                    continue
                scored = _score_problem(samples, row["answer"], spec.answer_format)
                problem = [
                    {"id": row["id"], "sample": i, "completion": t, **s}
                    for i, (t, s) in enumerate(zip(samples, scored, strict=True))
                ]
                file.write("".join(json.dumps(r) + "\n" for r in problem))
                file.flush()
                os.fsync(file.fileno())
                records[row["id"]] = problem
                del pending[row["id"]]
                progress.update(1)
    progress.close()
    tokens = sum(token_counts)
    speed = {
        "generated_tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds else 0.0,
    }
    return records, speed


def evaluate_seed(
    model,
    tokenizer,
    benchmarks: dict[str, Dataset],
    plans: dict[str, Plan],
    output_dir: Path,
    batch_size: int = 8,
    seed: int = 0,
    show_progress: bool = True,
) -> tuple[dict[str, dict[str, tuple[float, float]]], dict[str, dict[str, float]]]:
    """One seed's evaluation of every benchmark under its plan: (value, stderr) per metric per
    benchmark, and generation speed per benchmark."""
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics, speeds = {}, {}
    for name, dataset in benchmarks.items():
        plan = plans[name]
        gold = {row["id"]: row["answer"] for row in dataset}
        passes = []
        common = {"max_new_tokens": plan.max_new_tokens, "answer_format": plan.answer_format}
        if plan.temperature == 0 or plan.greedy:
            suffix = "_greedy" if plan.temperature > 0 else ""
            path = output_dir / f"samples_{name}{suffix}.jsonl"
            passes.append((_Pass(f"{name}{suffix}", path, 1, 0.0, 1.0, **common), True))
        if plan.temperature > 0:
            path = output_dir / f"samples_{name}.jsonl"
            passes.append(
                (_Pass(name, path, plan.num_samples, plan.temperature, plan.top_p, **common), False)
            )
        metrics[name], speed = {}, {"generated_tokens": 0, "seconds": 0.0}
        for spec, greedy in passes:
            records, pass_speed = _run_pass(model, tokenizer, dataset, spec, batch_size, seed, show_progress)
            found = sample_metrics({pid: records[pid] for pid in gold}, gold, plan.k, plan.maj_k, greedy)
            if greedy and len(passes) > 1:
                found["greedy formatting"] = found.pop("formatting")
            metrics[name].update(found)
            speed["generated_tokens"] += pass_speed["generated_tokens"]
            speed["seconds"] += pass_speed["seconds"]
        speed["tokens_per_second"] = speed["generated_tokens"] / speed["seconds"] if speed["seconds"] else 0.0
        speeds[name] = speed
    return metrics, speeds


def run_evaluation(
    model,
    tokenizer,
    benchmarks: dict[str, Dataset],
    plans: dict[str, Plan],
    output_dir: str | Path,
    seeds: Sequence[int] = (0,),
    batch_size: int = 8,
    protocol: str | None = None,
    overrides: dict[str, Any] | None = None,
    show_progress: bool = True,
) -> dict[str, Any]:
    """Evaluate once per seed (in output_dir, or output_dir/seed_<s> when there are several), then
    combine the seeds; writes and returns results.json's content and writes results.md."""
    output = Path(output_dir)
    was_training = model.training
    model.eval()
    per_seed, speeds = [], []
    for seed in seeds:
        seed_dir = output if len(seeds) == 1 else output / f"seed_{seed}"
        metrics, speed = evaluate_seed(
            model, tokenizer, benchmarks, plans, seed_dir, batch_size, seed, show_progress
        )
        per_seed.append(metrics)
        speeds.append(speed)
    model.train(was_training)
    results = {
        "settings": {
            "protocol": protocol,
            "protocol_description": PROTOCOLS[protocol].description if protocol else None,
            "overrides": overrides or {},
            "seeds": list(seeds),
            "batch_size": batch_size,
            "benchmarks": {name: dataclasses.asdict(plans[name]) for name in benchmarks},
        },
        "results": {
            name: {
                "problems": len(benchmarks[name]),
                "metrics": over_seeds([seed_metrics[name] for seed_metrics in per_seed]),
            }
            for name in benchmarks
        },
        "speed": {name: [speed[name] for speed in speeds] for name in benchmarks},
    }
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(results, indent=2))
    (output / "results.md").write_text(results_table(results))
    return results


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
    answer_format: str = "tags",
) -> dict[str, dict[str, Any]]:
    """One seed, the same settings for every benchmark (rows in the gtpo.tasks schema): writes the
    results files and returns each benchmark's metric values, with `accuracy` (the mean correctness
    over samples: greedy accuracy at temperature 0, else avg@n) and pass@k and maj@k for each k."""
    check_sampling(num_samples, temperature)
    sampled = temperature > 0
    plan = Plan(answer_format, num_samples, temperature, top_p if sampled else 1.0, max_new_tokens,
                tuple(ks) if sampled else (), tuple(ks) if sampled else (), False)  # fmt: skip
    results = run_evaluation(
        model, tokenizer, benchmarks, dict.fromkeys(benchmarks, plan), output_dir, (seed,), batch_size,
        show_progress=show_progress,
    )  # fmt: skip
    return flat_metrics(results)


def flat_metrics(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per benchmark, the metric values of a results.json (its mean over seeds), with `problems`,
    `samples_per_problem` and `accuracy`: greedy accuracy at temperature 0, else avg@n."""
    flat = {}
    for name, result in results["results"].items():
        plan = results["settings"]["benchmarks"][name]
        n = plan["num_samples"] if plan["temperature"] > 0 else 1
        values = {metric: entry["value"] for metric, entry in result["metrics"].items()}
        values["accuracy"] = values[f"avg@{n}"] if plan["temperature"] > 0 else values["greedy"]
        flat[name] = {"problems": result["problems"], "samples_per_problem": n, **values}
    return flat


def _shown(value: Any) -> str:
    """A setting as it is typed on the command line ('8 16' for a list)."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def results_table(results: dict[str, Any]) -> str:
    """lighteval-style Markdown: one row per benchmark and metric (value, stderr), with the settings.
    With several seeds the value is the mean over seeds ± their standard deviation."""
    settings = results["settings"]
    seeds = settings["seeds"]
    title = f"protocol {settings['protocol']}" if settings["protocol"] else "explicit settings"
    lines = [f"gtpo eval: {title}, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}", ""]
    if settings["overrides"]:
        lines[0] += (
            " (overridden: " + ", ".join(f"{k}={_shown(v)}" for k, v in settings["overrides"].items()) + ")"
        )
    value_header = "value (mean ± std over seeds)" if len(seeds) > 1 else "value"
    lines += [f"| benchmark | metric | {value_header} | stderr |", "|---|---|---|---|"]
    for name, result in results["results"].items():
        for metric, entry in result["metrics"].items():
            value = f"{entry['value']:.4f}"
            if len(seeds) > 1:
                value += f" ± {entry['seed_std']:.4f}"
            lines.append(f"| {name} | {metric} | {value} | {entry['stderr']:.4f} |")
    columns = ["problems", "answer_format", "num_samples", "temperature", "top_p", "max_new_tokens", "greedy"]
    lines += ["", "| benchmark | " + " | ".join(columns) + " | tokens/s |", "|---" * (len(columns) + 2) + "|"]
    for name, plan in settings["benchmarks"].items():
        speeds = results["speed"][name]
        rate = sum(s["tokens_per_second"] for s in speeds) / len(speeds)
        cells = [results["results"][name]["problems"], *(plan[c] for c in columns[1:]), f"{rate:.1f}"]
        lines.append(f"| {name} | " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------
# `gtpo eval`
# ------------------------------------------------------------------------------------------------


def run_eval(config: EvalConfig) -> int:
    """Load the model and benchmarks, evaluate, print the table. The settings, the model name and
    every benchmark file are checked before the model is loaded."""
    from gtpo.app.models import check_model_name, load_model_and_tokenizer

    paths = config.paths()
    try:
        plans = {name: plan_for(config, name) for name in config.benchmarks}
    except FieldError as error:
        raise ConfigError(f"--{error.path}: {error.problem}") from None
    overrides = _set_fields(config) if config.protocol else {}
    for name, value in overrides.items():
        print(
            f"protocol {config.protocol}: --{name} {_shown(value)} overrides the protocol's value",
            file=sys.stderr,
        )
    check_model_name(config.model_name_or_path)
    benchmarks = {
        name: load_task(name, split=config.split, path=paths.get(name), limit=config.limit)
        for name in config.benchmarks
    }
    model, tokenizer = load_model_and_tokenizer(config.model_name_or_path)
    results = run_evaluation(
        model, tokenizer, benchmarks, plans, config.output_dir, config.seeds, config.batch_size,
        protocol=config.protocol, overrides=overrides,
    )  # fmt: skip
    print(results_table(results), end="")
    return 0
