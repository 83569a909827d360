"""One config value against its rules, each problem in one line: a number against bounds
(">= 1", "> 0", ...; `must be >= 1, got 0`), a value against its choices (with the nearest one).
GTPOConfig's rules (gtpo.config) and the application's options (gtpo.app.options) both use these,
so that Python and the command line word a problem alike."""

from __future__ import annotations

import difflib
import math
import numbers
import operator
from collections.abc import Iterable
from typing import Any

_COMPARISONS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the nearest of `choices`, or ''."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def bound_problem(value: Any, bounds: tuple[str, ...], special: tuple[Any, str] | None = None) -> str | None:
    """What is wrong with number `value` under `bounds` (all must hold, and it must be finite), or
    None; None passes, and so does `special`'s value (`(-1, "to train for num_train_epochs")`)."""
    if value is None or not bounds or (special is not None and value == special[0]):
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f"expected a number, got {value!r}"
    if math.isfinite(value) and all(
        _COMPARISONS[op](value, float(limit)) for op, limit in (bound.split() for bound in bounds)
    ):
        return None
    also = f", or {special[0]!r} {special[1]}" if special is not None else ""
    return f"must be {' and '.join(bounds)}{also}, got {value!r}"


def choice_problem(value: Any, choices: Iterable[Any]) -> str | None:
    """What is wrong with `value` (or an item of a list) that is not one of `choices`, or None."""
    choices = tuple(choices)
    for item in value if isinstance(value, list) else [value]:
        if item is not None and item not in choices:
            hint = did_you_mean(str(item), map(str, choices))
            return f"must be one of {choices}, got {item!r}{hint}"
    return None
