"""Checks around user reward functions and the dataset they score, so that a bad reward (or a
dataset without prompts) stops training with one clear line.

TRL calls each reward function once on the whole batch. A function wrapped by
`checked_reward_function`:
  * that raises is called again one completion at a time, on at most the first `MAX_RECALLS`
    completions (a judge or sandbox reward is costly), to find the first one that triggers it;
    the error names the function, that completion's index in the batch (and the start of its
    text) and the exception, or, when none of them raises alone, the batch and the exception;
  * that returns something other than a list of rewards (None, a number, a string, a mapping)
    stops training with the function's name and what it returned;
  * that returns NaN or an infinite value (or one beyond float32, where TRL keeps rewards) stops
    training with the function's name and the completion index, or, with
    `nonfinite_rewards="missing"`, has the value treated as missing, as TRL treats None: left out
    of the sum over reward functions, and a completion that every function misses gets TRL's
    advantage A_i = 0. GTPO still trains it on the entropy shaping alone: its advantage is
    -gamma * <H>_i (as for every completion of a group whose rewards are all equal); gamma=0
    leaves it out of the update.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

import torch

NONFINITE_REWARDS = ("error", "missing")
MAX_RECALLS = 4  # completions a reward function that raised is called on alone, at most
_FLOAT32_MAX = torch.finfo(torch.float32).max
_SHOWN_CHARS = 60  # how much of a completion's text (or of a returned value) an error shows


class RewardFunctionError(RuntimeError):
    """A reward function raised, or returned something other than a finite number or None."""


def _shown(text: str) -> str:
    return text[:_SHOWN_CHARS] + ("..." if len(text) > _SHOWN_CHARS else "")


def _describe(completions: list, index: int) -> str:
    completion = completions[index]
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        completion = completion[-1].get("content", "")  # conversational: the last message
    return f"completion {index} ({_shown(str(completion))!r})"


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _one_completion(kwargs: dict[str, Any], index: int, count: int) -> dict[str, Any]:
    """A reward call's keyword arguments cut down to one completion: every list with one entry
    per completion (prompts, completions, completion_ids, dataset columns) keeps entry `index`."""
    return {
        key: value[index : index + 1] if isinstance(value, list) and len(value) == count else value
        for key, value in kwargs.items()
    }


def _first_failure(
    func: Callable, kwargs: dict[str, Any], count: int, max_recalls: int
) -> tuple[int, Exception] | None:
    for index in range(min(count, max_recalls)):
        try:
            func(**_one_completion(kwargs, index, count))
        except Exception as error:
            return index, error
    return None


def _checked_value(value: Any, name: str, completions: list, index: int, nonfinite: str) -> Any:
    if value is None:
        return None
    number = value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value
    if not isinstance(number, numbers.Real):
        raise RewardFunctionError(
            f"reward function {name!r} returned {value!r} for {_describe(completions, index)}; "
            "a reward is a number or None"
        )
    if math.isfinite(number) and abs(number) <= _FLOAT32_MAX:
        return number
    if nonfinite == "missing":
        return None
    raise RewardFunctionError(
        f"reward function {name!r} returned {number!r} for {_describe(completions, index)}; rewards "
        "must be finite (nonfinite_rewards='missing' scores such a completion as missing instead)"
    )


def _reward_list(returned: Any, name: str, count: int) -> list:
    """What a reward function returned, as a list; RewardFunctionError when it is not one."""
    if not isinstance(returned, (str, bytes, Mapping)):
        try:
            return list(returned)
        except TypeError:  # None, a number, a 0-d tensor
            pass
    raise RewardFunctionError(
        f"reward function {name!r} returned {_shown(repr(returned))}, not a list of {count} rewards "
        "(one number or None per completion)"
    )


def checked_reward_function(
    func: Callable, name: str, nonfinite: str = "error", max_recalls: int = MAX_RECALLS
) -> Callable:
    """Wrap a synchronous TRL reward function `func(completions=..., **kwargs) -> list`, named
    `name` in errors; `nonfinite` is "error" or "missing", and after a raise `func` is called on
    at most `max_recalls` completions alone (see the module docstring)."""
    if nonfinite not in NONFINITE_REWARDS:
        raise ValueError(f"nonfinite must be one of {NONFINITE_REWARDS}, got {nonfinite!r}")

    @functools.wraps(func)
    def checked(**kwargs: Any) -> list:
        completions = kwargs["completions"]
        try:
            returned = func(**kwargs)
        except Exception as error:
            failure = _first_failure(func, kwargs, len(completions), max_recalls)
            if failure is None:
                tried = min(len(completions), max_recalls)
                alone = "none of them" if tried == len(completions) else f"none of the first {tried}"
                raise RewardFunctionError(
                    f"reward function {name!r} raised on the batch of {len(completions)} completions "
                    f"(but on {alone if tried else 'no completion tried'} alone): {_one_line(error)}"
                ) from error
            index, single = failure
            raise RewardFunctionError(
                f"reward function {name!r} raised on {_describe(completions, index)}: {_one_line(single)}"
            ) from single
        rewards = _reward_list(returned, name, len(completions))
        if len(rewards) != len(completions):
            raise RewardFunctionError(
                f"reward function {name!r} returned {len(rewards)} rewards for {len(completions)} completions"
            )
        return [_checked_value(value, name, completions, i, nonfinite) for i, value in enumerate(rewards)]

    return checked


def check_prompt_column(dataset: Any, name: str = "train_dataset") -> None:
    """Raise ValueError, in one line naming `name` and the columns it has, when `dataset` (a
    datasets Dataset) has no `prompt` column: TRL's GRPOTrainer generates from that column and
    would fail at its first step with a bare KeyError."""
    columns = getattr(dataset, "column_names", None)
    if isinstance(columns, dict):  # a DatasetDict
        raise ValueError(f"{name} is a DatasetDict (splits: {', '.join(columns)}); pass one split")
    if columns is not None and "prompt" not in columns:
        raise ValueError(
            f"{name} has no 'prompt' column (columns: {', '.join(columns) or 'none'}); the trainer "
            "generates from it: map your question column to 'prompt' (text or chat messages)"
        )
