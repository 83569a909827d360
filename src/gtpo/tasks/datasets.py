"""The paper's math benchmarks, from the Hugging Face hub or a local JSONL/parquet file, in one schema:

prompt   conversational: the paper's system prompt and the question (gtpo.tasks.prompts)
answer   the gold final answer as a string (GSM8K: after '####', thousands separators removed;
         MATH: the last \\boxed{} of the solution; AMC '27.0' -> '27')
id       the benchmark's id, or the row number
source   the task name
solution GSM8K and MATH only: the worked solution (GSM8K without its '####' line and <<...>>
         calculator notes), which a supervised warm start (gtpo.app.warmstart) can learn from
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset, concatenate_datasets, load_dataset

from gtpo.tasks.grading import last_boxed
from gtpo.tasks.prompts import make_prompt

MATH_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)


class DatasetFormatError(ValueError):
    """A dataset file is malformed; the message names the file, the line and the field."""


def gsm8k_final_answer(solution: str) -> str:
    """The number after '####' in a GSM8K solution, without thousands separators."""
    if "####" not in solution:
        raise ValueError("no '####' line")
    return solution.rsplit("####", 1)[1].strip().replace(",", "")


def gsm8k_worked_solution(solution: str) -> str:
    """A GSM8K solution's reasoning: the lines before '####', calculator notes <<...>> removed."""
    return re.sub(r"<<[^<>]*>>", "", solution.rsplit("####", 1)[0]).strip()


def number_answer(value: Any) -> str:
    """'27.0' or 27.0 -> '27'; other values as strings."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


@dataclass(frozen=True)
class Task:
    """Where a benchmark lives on the hub and how its rows map to the schema."""

    hub_id: str
    hub_configs: tuple[str | None, ...]
    default_split: str
    question_fields: tuple[str, ...]
    answer_field: str
    to_answer: Callable[[Any], str]
    to_solution: Callable[[str], str] | None = None  # worked solution, from the answer field


TASKS: dict[str, Task] = {
    "gsm8k": Task(
        "openai/gsm8k", ("main",), "test", ("question",), "answer", gsm8k_final_answer, gsm8k_worked_solution
    ),
    "math": Task(
        "EleutherAI/hendrycks_math", MATH_SUBJECTS, "test", ("problem",), "solution", last_boxed, str.strip
    ),
    "math500": Task("HuggingFaceH4/MATH-500", (None,), "test", ("problem",), "answer", number_answer),
    "aime24": Task("HuggingFaceH4/aime_2024", (None,), "train", ("problem",), "answer", number_answer),
    "aime25": Task("math-ai/aime25", (None,), "test", ("problem",), "answer", number_answer),
    "amc23": Task("math-ai/amc23", (None,), "test", ("problem", "question"), "answer", number_answer),
}


def _normalise_row(task_name: str, task: Task, row: dict[str, Any], where: str, index: int) -> dict[str, Any]:
    question_field = next((f for f in task.question_fields if f in row), None)
    if question_field is None:
        raise DatasetFormatError(f"{where}: missing field {task.question_fields[0]!r}")
    if task.answer_field not in row:
        raise DatasetFormatError(f"{where}: missing field {task.answer_field!r}")
    question = row[question_field]
    if not isinstance(question, str) or not question.strip():
        raise DatasetFormatError(f"{where}: field {question_field!r} must be a non-empty string")
    try:
        answer = task.to_answer(row[task.answer_field])
    except ValueError as error:
        raise DatasetFormatError(f"{where}: field {task.answer_field!r}: {error}") from None
    row_id = row.get("id", row.get("unique_id", index))
    normalised = {"prompt": make_prompt(question), "answer": answer, "id": str(row_id), "source": task_name}
    if task.to_solution is not None:
        normalised["solution"] = task.to_solution(row[task.answer_field])
    return normalised


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as file:
        for number, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DatasetFormatError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DatasetFormatError(f"{path}:{number}: expected a JSON object")
            yield number, row


def _local_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if not path.is_file():
        raise DatasetFormatError(f"{path}: dataset file not found")
    if path.suffix == ".parquet":
        import pyarrow.parquet

        # Read directly: Dataset.from_parquet would copy the file into the HF datasets cache.
        for index, row in enumerate(pyarrow.parquet.read_table(path).to_pylist()):
            yield index + 1, row
    else:
        yield from _json_lines(path)


def load_task(
    name: str, split: str | None = None, path: str | Path | None = None, limit: int | None = None
) -> Dataset:
    """Load a benchmark by name from the hub (or from a local JSONL/parquet file) in the schema above."""
    if name not in TASKS:
        close = difflib.get_close_matches(name, TASKS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}{hint}")
    task = TASKS[name]
    rows = []
    if path is not None:
        for number, row in _local_rows(Path(path)):
            rows.append(_normalise_row(name, task, row, f"{path}:{number}", number - 1))
            if limit is not None and len(rows) >= limit:
                break
        if not rows:
            raise DatasetFormatError(f"{path}: no rows")
        return Dataset.from_list(rows)

    split = split or task.default_split
    try:
        parts = [load_dataset(task.hub_id, config, split=split) for config in task.hub_configs]
    except (OSError, ValueError) as error:  # no network, unknown split, missing dataset
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"task {name!r}: {task.hub_id}[{split}] could not be loaded from the hub ({reason}); "
            "give a local file as the dataset path"
        ) from None
    hub_rows = concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    for index, row in enumerate(hub_rows):
        rows.append(_normalise_row(name, task, row, f"{task.hub_id}[{split}] row {index + 1}", index))
        if limit is not None and len(rows) >= limit:
            break
    if not rows:
        raise DatasetFormatError(f"{task.hub_id}[{split}]: no rows")
    return Dataset.from_list(rows)
