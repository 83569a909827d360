"""A synthetic multi-step arithmetic word-problem task with exact answers, for the offline demo.

    "Mia has 7 apples. She buys 5 more. Then she gives away 3. How many apples does Mia have now?"
    solution "7+5=12, 12-3=9", answer "9"

Problems are drawn from a seeded generator; a problem belongs to the held-out split when a hash
of its text says so, so the train and test splits never share a question.
"""

from __future__ import annotations

import hashlib
import random

from datasets import Dataset

from gtpo.tasks.prompts import make_prompt

NAMES = ("Mia", "Tom", "Ana", "Leo", "Zoe", "Sam", "Ivy", "Max")
ITEMS = ("apples", "books", "coins", "cards", "pens", "shells")
SPLITS = ("train", "test")


def _is_held_out(question: str) -> bool:
    return int(hashlib.sha256(question.encode()).hexdigest(), 16) % 5 == 0  # about 20% of problems


def make_problem(rng: random.Random, max_steps: int = 2) -> tuple[str, str, str]:
    """(question, worked solution, answer) with 1..max_steps additions or subtractions."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    value = rng.randint(2, 9)
    sentences = [f"{name} has {value} {item}."]
    steps = []
    for index in range(rng.randint(1, max_steps)):
        then = "Then " if index else ""
        if value > 1 and rng.random() < 0.5:
            amount = rng.randint(1, min(value - 1, 9))
            sentences.append(f"{then}{name} gives away {amount}.")
            steps.append(f"{value}-{amount}={value - amount}")
            value -= amount
        else:
            amount = rng.randint(1, 9)
            sentences.append(f"{then}{name} gets {amount} more.")
            steps.append(f"{value}+{amount}={value + amount}")
            value += amount
    sentences.append(f"How many {item} does {name} have now?")
    return " ".join(sentences), ", ".join(steps), str(value)


def make_arithmetic_dataset(n: int, split: str = "train", seed: int = 0, max_steps: int = 2) -> Dataset:
    """n distinct problems of one split in the gtpo.tasks schema, plus a `solution` column."""
    if split not in SPLITS:
        raise ValueError(f"arithmetic split must be one of {SPLITS}, got {split!r}")
    if n < 1:
        raise ValueError(f"arithmetic dataset size must be >= 1, got {n}")
    rng = random.Random(seed)
    rows, seen = [], set()
    for _ in range(200 * n):
        question, solution, answer = make_problem(rng, max_steps)
        if question in seen or _is_held_out(question) != (split == "test"):
            continue
        seen.add(question)
        rows.append(
            {
                "prompt": make_prompt(question),
                "answer": answer,
                "id": f"arithmetic-{split}-{len(rows)}",
                "source": "arithmetic",
                "solution": solution,
            }
        )
        if len(rows) == n:
            return Dataset.from_list(rows)
    raise ValueError(f"could not draw {n} distinct {split} problems with max_steps={max_steps}")
