"""Checks around user reward functions, so that a bad reward stops training with one clear line.

TRL calls each reward function once on the whole batch. A function wrapped by
`checked_reward_function`:
  * that raises is called again one completion at a time to find the first completion that
    triggers it; the error names the function, that completion's index in the batch (and the
    start of its text) and the exception;
  * that returns NaN or an infinite value (or one beyond float32, where TRL keeps rewards) stops
    training with the function's name and the completion index, or, with
    `nonfinite_rewards="missing"`, has the value treated as missing, as TRL treats None: left out
    of the sum over reward functions, and a completion that every function misses gets
    advantage 0.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Callable
from typing import Any

import torch

NONFINITE_REWARDS = ("error", "missing")
_FLOAT32_MAX = torch.finfo(torch.float32).max
_SHOWN_CHARS = 60  # how much of a completion's text an error shows


class RewardFunctionError(RuntimeError):
    """A reward function raised, or returned something other than a finite number or None."""


def _describe(completions: list, index: int) -> str:
    completion = completions[index]
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        completion = completion[-1].get("content", "")  # conversational: the last message
    text = str(completion)
    shown = text[:_SHOWN_CHARS] + ("..." if len(text) > _SHOWN_CHARS else "")
    return f"completion {index} ({shown!r})"


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


def _first_failure(func: Callable, kwargs: dict[str, Any], count: int) -> tuple[int, Exception] | None:
    for index in range(count):
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


def checked_reward_function(func: Callable, name: str, nonfinite: str = "error") -> Callable:
    """Wrap a synchronous TRL reward function `func(completions=..., **kwargs) -> list`, named
    `name` in errors; `nonfinite` is "error" or "missing" (see the module docstring)."""
    if nonfinite not in NONFINITE_REWARDS:
        raise ValueError(f"nonfinite must be one of {NONFINITE_REWARDS}, got {nonfinite!r}")

    @functools.wraps(func)
    def checked(**kwargs: Any) -> list:
        completions = kwargs["completions"]
        try:
            rewards = list(func(**kwargs))
        except Exception as error:
            failure = _first_failure(func, kwargs, len(completions))
            if failure is None:
                raise RewardFunctionError(
                    f"reward function {name!r} raised on the batch of {len(completions)} completions "
                    f"(but on none of them alone): {_one_line(error)}"
                ) from error
            index, single = failure
            raise RewardFunctionError(
                f"reward function {name!r} raised on {_describe(completions, index)}: {_one_line(single)}"
            ) from single
        if len(rewards) != len(completions):
            raise RewardFunctionError(
                f"reward function {name!r} returned {len(rewards)} rewards for {len(completions)} completions"
            )
        return [_checked_value(value, name, completions, i, nonfinite) for i, value in enumerate(rewards)]

    return checked
