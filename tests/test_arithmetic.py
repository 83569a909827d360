"""gtpo.tasks.arithmetic: the synthetic word-problem task of the offline demo."""

import random
import re

import pytest

from gtpo.tasks.arithmetic import make_arithmetic_dataset, make_problem
from gtpo.tasks.prompts import make_prompt


def recompute(question: str) -> int:
    """The answer of a question, read back from its sentences."""
    value = int(re.search(r"has (\d+) ", question).group(1))
    for verb, amount in re.findall(r"(gets|gives away) (\d+)", question):
        value += int(amount) if verb == "gets" else -int(amount)
    return value


def test_schema_and_prompt():
    dataset = make_arithmetic_dataset(20, split="train", seed=3)
    assert dataset.column_names == ["prompt", "answer", "id", "source", "solution"]
    assert len(set(dataset["id"])) == 20
    for row in dataset:
        assert row["source"] == "arithmetic"
        assert row["prompt"] == make_prompt(row["prompt"][-1]["content"])
        assert isinstance(row["answer"], str)


@pytest.mark.parametrize("max_steps", [1, 2, 3])
def test_answers_and_solutions_are_exact(max_steps):
    for split in ("train", "test"):
        for row in make_arithmetic_dataset(200, split=split, seed=1, max_steps=max_steps):
            question = row["prompt"][-1]["content"]
            assert int(row["answer"]) == recompute(question) >= 0
            steps = row["solution"].split(", ")
            assert 1 <= len(steps) <= max_steps
            carried = None
            for step in steps:
                a, op, b, result = re.fullmatch(r"(\d+)([+-])(\d+)=(\d+)", step).groups()
                assert int(a) + (int(b) if op == "+" else -int(b)) == int(result)
                assert carried in (None, a)
                carried = result
            assert carried == row["answer"]


def test_deterministic_from_the_seed():
    first = make_arithmetic_dataset(50, seed=7).to_list()
    assert first == make_arithmetic_dataset(50, seed=7).to_list()
    assert first != make_arithmetic_dataset(50, seed=8).to_list()


def test_splits_do_not_overlap_and_questions_are_distinct():
    def questions(split: str, seed: int) -> list[str]:
        return [row["prompt"][-1]["content"] for row in make_arithmetic_dataset(1000, split=split, seed=seed)]

    train = questions("train", 0) + questions("train", 5)
    test = questions("test", 1) + questions("test", 6)
    assert len(set(questions("train", 0))) == 1000
    assert not set(train) & set(test)


def test_problem_steps_and_small_numbers():
    rng = random.Random(0)
    counts = set()
    for _ in range(500):
        question, solution, answer = make_problem(rng, max_steps=3)
        counts.add(solution.count("="))
        assert 0 <= int(answer) == recompute(question) <= 40
    assert counts == {1, 2, 3}


def test_bad_arguments():
    with pytest.raises(ValueError, match="split must be one of"):
        make_arithmetic_dataset(5, split="validation")
    with pytest.raises(ValueError, match=">= 1"):
        make_arithmetic_dataset(0)
