"""The paper's rewards as TRL reward functions: `(completions, answer, **kwargs) -> list[float]`.

format_reward       10 if a <reasoning>...</reasoning> block is present and the text ends with an
                    <answer>...</answer> block; else 1 when only one of the two blocks is present
                    (1.5 if a stray tag of the other kind also appears); 0 if neither.
correctness_reward  10 if the format reward is 10 and the answer is mathematically equal to the
                    gold one (math-verify), else 0.
lenient_correctness_reward
                    the official code's matcher, for reproduction only: float closeness or the gold
                    string being a substring of the prediction (so gold "2" matches "12").

Completions are untrusted: nothing is evaluated as code in this process. Text is cut to a bounded
size, tags are found with plain string search (no backtracking), and math-verify runs in a
separate worker process that is killed and restarted when a check exceeds its time limit, so a
pathological answer (10^10^10^10, deep nesting) costs at most that limit and scores 0.
"""

from __future__ import annotations

import json
import math
import re
import select
import subprocess
import sys
import threading
from typing import Any

MAX_COMPLETION_CHARS = 32_768  # longer completions are cut before any parsing
MAX_ANSWER_CHARS = 512  # longer answers are not parsed and score 0
CHECK_TIMEOUT_SECONDS = 5.0  # per math-verify comparison, in the worker process
WORKER_START_TIMEOUT_SECONDS = 120.0

REASONING_OPEN, REASONING_CLOSE = "<reasoning>", "</reasoning>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


def completion_text(completion: Any) -> str:
    """The text of a plain-text completion or of a conversational one (its last message)."""
    if isinstance(completion, str):
        text = completion
    elif isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        text = str(completion[-1].get("content", ""))
    else:
        text = str(completion)
    return text[:MAX_COMPLETION_CHARS]


def _has_reasoning_block(text: str) -> bool:
    start = text.find(REASONING_OPEN)
    return start >= 0 and text.find(REASONING_CLOSE, start + len(REASONING_OPEN)) >= 0


def extract_answer(text: str) -> str | None:
    """Content of the <answer>...</answer> block the text ends with (trailing whitespace allowed),
    or None when the text does not end with one."""
    stripped = text.rstrip()
    if not stripped.endswith(ANSWER_CLOSE):
        return None
    body = stripped[: -len(ANSWER_CLOSE)]
    start = body.rfind(ANSWER_OPEN)
    if start < 0:
        return None
    return body[start + len(ANSWER_OPEN) :].strip()


def format_score(text: str) -> float:
    """The paper's format reward of one completion text."""
    has_reasoning = _has_reasoning_block(text)
    has_answer = extract_answer(text) is not None
    if has_reasoning and has_answer:
        return 10.0
    if has_reasoning:
        return 1.5 if (ANSWER_OPEN in text or ANSWER_CLOSE in text) else 1.0
    if has_answer:
        return 1.5 if (REASONING_OPEN in text or REASONING_CLOSE in text) else 1.0
    return 0.0


# ------------------------------------------------------------------------------------------------
# math-verify in a worker process (gtpo.tasks._verify_worker), one JSON line per check
# ------------------------------------------------------------------------------------------------


class _Verifier:
    """One math-verify worker process, restarted after a timeout or a crash."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gtpo.tasks._verify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        if self._read_line(WORKER_START_TIMEOUT_SECONDS) != "ready":
            self._stop()
            raise RuntimeError("the math-verify worker process did not start")

    def _read_line(self, timeout: float) -> str | None:
        ready, _, _ = select.select([self._process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self._process.stdout.readline()
        return line.strip() if line else None

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def equal(self, prediction: str, gold: str, timeout: float = CHECK_TIMEOUT_SECONDS) -> bool:
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            try:
                self._process.stdin.write(json.dumps([prediction, gold]) + "\n")
                self._process.stdin.flush()
                answer = self._read_line(timeout)
            except (OSError, ValueError):
                answer = None
            if answer in ("true", "false"):
                return answer == "true"
            self._stop()  # timed out or crashed: the next check starts a fresh worker
            return False


_VERIFIER = _Verifier()


_NUMBER_WITH_UNIT = re.compile(r"\$?\s*([-+]?\d[\d,]*(?:\.\d+)?)\s*(?:[A-Za-z][A-Za-z .]{0,40})?")


def _normalise(answer: str) -> str:
    """Remove what math-verify misreads: a space after a leading sign, a trailing period, and
    a unit word after a plain number ("18 dollars" -> "18")."""
    answer = re.sub(r"^([-+])\s+", r"\1", answer.strip()).rstrip(".").strip()
    number = _NUMBER_WITH_UNIT.fullmatch(answer)
    return number.group(1) if number else answer


def answers_equal(prediction: str | None, gold: str, timeout: float = CHECK_TIMEOUT_SECONDS) -> bool:
    """Whether an extracted answer equals the gold answer mathematically (bounded in size and time)."""
    if prediction is None or not prediction.strip() or len(prediction) > MAX_ANSWER_CHARS:
        return False
    prediction, gold = _normalise(prediction), _normalise(str(gold))
    if prediction == gold:
        return True
    return _VERIFIER.equal(prediction, gold, timeout)


def lenient_match(prediction: str | None, gold: str) -> bool:
    """The official code's matcher: |pred - gold| <= 0.01 as floats, or gold a substring of pred."""
    if prediction is None:
        return False
    prediction, gold = prediction[:MAX_ANSWER_CHARS], str(gold)
    try:
        if math.isclose(float(prediction), float(gold), rel_tol=1e-9, abs_tol=1e-2):
            return True
    except (ValueError, OverflowError):
        pass
    return gold in prediction


# ------------------------------------------------------------------------------------------------
# TRL reward functions
# ------------------------------------------------------------------------------------------------


def _log_share(kwargs: dict[str, Any], name: str, rewards: list[float]) -> None:
    """Report the share of full rewards through TRL's `log_metric` hook, when the trainer passes it."""
    log_metric = kwargs.get("log_metric")
    if log_metric is not None and rewards:
        log_metric(name, sum(r == 10.0 for r in rewards) / len(rewards))


def format_reward(completions: list, **kwargs) -> list[float]:
    """The paper's format reward: 10, 1.5, 1 or 0 per completion (logs the share formatted)."""
    rewards = [format_score(completion_text(c)) for c in completions]
    _log_share(kwargs, "formatting", rewards)
    return rewards


def correctness_reward(completions: list, answer: list[str], **kwargs) -> list[float]:
    """10 when the format reward is 10 and math-verify finds the answer equal to the gold one
    (logs the share correct)."""
    rewards = []
    for completion, gold in zip(completions, answer, strict=True):
        text = completion_text(completion)
        correct = format_score(text) == 10.0 and answers_equal(extract_answer(text), gold)
        rewards.append(10.0 if correct else 0.0)
    _log_share(kwargs, "accuracy", rewards)
    return rewards


def lenient_correctness_reward(completions: list, answer: list[str], **kwargs) -> list[float]:
    """The official code's correctness reward (lenient matcher), for reproducing published runs."""
    rewards = []
    for completion, gold in zip(completions, answer, strict=True):
        text = completion_text(completion)
        correct = format_score(text) == 10.0 and lenient_match(extract_answer(text), gold)
        rewards.append(10.0 if correct else 0.0)
    return rewards


REWARDS = {
    "format_reward": format_reward,
    "correctness_reward": correctness_reward,
    "lenient_correctness_reward": lenient_correctness_reward,
}
