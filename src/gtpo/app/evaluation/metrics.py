"""The estimators: a completion's score, then per pass greedy accuracy, avg@n, unbiased pass@k and
maj@k (each with its standard error over problems), and the mean and spread over seeds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from gtpo.tasks.rewards import answers_equal, answers_equal_many, final_answer

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


def mean_and_stderr(scores: Sequence[float]) -> tuple[float, float]:
    """Mean of per-problem scores and its standard error (sample std / sqrt(count); 0 for one score)."""
    mean = sum(scores) / len(scores)
    stderr = statistics.stdev(scores) / math.sqrt(len(scores)) if len(scores) > 1 else 0.0
    return mean, stderr


def score_sample(text: str, gold: str, answer_format: str = "tags") -> dict[str, Any]:
    """Extracted answer, whether there is one, and correctness of one completion."""
    answer = final_answer(text, answer_format)
    return {"answer": answer, "formatted": answer is not None, "correct": answers_equal(answer, gold)}


def score_problem(texts: list[str], gold: str, answer_format: str) -> list[dict[str, Any]]:
    """score_sample for each completion of one problem, the answers checked in one batch."""
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
