"""The paper's rewards as TRL reward functions: `(completions, answer, **kwargs) -> list[float]`.

format_reward       10 if a <reasoning>...</reasoning> block is present and the text ends with an
                    <answer>...</answer> block; else 1 when only one of the two blocks is present
                    (1.5 if a stray tag of the other kind also appears); 0 if neither.
correctness_reward  10 if the format reward is 10 and the answer is mathematically equal to the
                    gold one (gtpo.tasks.grading, then math-verify), else 0; with
                    answer_format="boxed" the last \\boxed{} is judged instead, with "any" either
                    (also registered as boxed_correctness_reward and any_correctness_reward).
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
import os
import select
import subprocess
import sys
import threading
import time
from typing import Any

from gtpo.tasks.grading import based_number, last_boxed, normalise_answer, plain_numbers_equal, word_answer

MAX_COMPLETION_CHARS = 32_768  # longer completions are cut before any parsing
MAX_ANSWER_CHARS = 512  # longer answers are not parsed and score 0
CHECK_TIMEOUT_SECONDS = 5.0  # per math-verify comparison, in the worker process
WORKER_START_TIMEOUT_SECONDS = 120.0
VERIFY_BATCH = 64  # checks written to the worker at once

ANSWER_FORMATS = ("tags", "boxed", "any")
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


def extract_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} (or \\fbox{...}) in the text, or None when there is none."""
    try:
        return last_boxed(text)
    except ValueError:
        return None


def final_answer(text: str, answer_format: str = "tags") -> str | None:
    """The answer a completion gives in the chosen convention, or None when it gives none:

    tags   the paper's: the text has the full format (a reasoning block, and ends with an answer
           block), and the answer is that block's content
    boxed  the community's: the content of the last \\boxed{}
    any    the tags answer when the format is complete, else the last \\boxed{}
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    if answer_format != "boxed" and format_score(text) == 10.0:
        return extract_answer(text)
    return extract_boxed(text) if answer_format != "tags" else None


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
    """One math-verify worker process, restarted after a timeout or a crash. Checks are sent in
    batches and answered in order; each answer must arrive within the time limit of the one before."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None
        self._buffer = b""

    def _start(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "gtpo.tasks._verify_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        self._buffer = b""
        if self._read_line(WORKER_START_TIMEOUT_SECONDS) != "ready":
            self._stop()
            raise RuntimeError("the math-verify worker process did not start")

    def _read_line(self, timeout: float) -> str | None:
        """The worker's next line, or None when none comes within `timeout` seconds or it died."""
        deadline = time.monotonic() + timeout
        fd = self._process.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                return None
            data = os.read(fd, 65536)
            if not data:
                return None
            self._buffer += data
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode().strip()

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        self._process = None

    def equal_many(self, pairs: list[tuple[str, str]], timeout: float = CHECK_TIMEOUT_SECONDS) -> list[bool]:
        """math-verify's verdict on each (prediction, gold) pair; False for a check that times out
        (the worker is then killed, and the checks after it go to a fresh one)."""
        results: list[bool] = []
        with self._lock:
            while len(results) < len(pairs):
                batch = pairs[len(results) : len(results) + VERIFY_BATCH]
                if self._process is None or self._process.poll() is not None:
                    self._start()
                try:
                    self._process.stdin.write(b"".join(json.dumps(p).encode() + b"\n" for p in batch))
                    self._process.stdin.flush()
                except (OSError, ValueError):
                    self._stop()
                    results.append(False)
                    continue
                for _ in batch:
                    answer = self._read_line(timeout)
                    if answer not in ("true", "false"):
                        self._stop()  # timed out or crashed: the rest of the batch goes to a fresh worker
                        results.append(False)
                        break
                    results.append(answer == "true")
        return results


_VERIFIER = _Verifier()


def _grade_locally(prediction: str | None, gold: str) -> tuple[bool | None, str, str]:
    """(verdict, prediction, gold): the verdict when no math-verify check is needed, else None with
    both answers normalised for it."""
    if prediction is None or not prediction.strip() or len(prediction) > MAX_ANSWER_CHARS:
        return False, "", ""
    prediction, gold = normalise_answer(prediction), normalise_answer(str(gold)[:MAX_ANSWER_CHARS])
    if prediction == gold:
        return True, prediction, gold
    gold_word = word_answer(gold)
    if gold_word is not None:
        return word_answer(prediction) == gold_word, prediction, gold
    exact = plain_numbers_equal(prediction, gold)
    if exact is not None:
        return exact, prediction, gold
    gold_based = based_number(gold)
    if gold_based is not None:  # the digits must match, and the base where the prediction names one
        digits, base = based_number(prediction) or (prediction.upper(), gold_based[1])
        return (digits, base) == gold_based, prediction, gold
    return None, prediction, gold


def answers_equal(prediction: str | None, gold: str, timeout: float = CHECK_TIMEOUT_SECONDS) -> bool:
    """Whether an extracted answer equals the gold answer mathematically (bounded in size and time):
    both are normalised (gtpo.tasks.grading), a gold answer that is a word is compared as text, and
    anything else goes to math-verify in the worker process."""
    return answers_equal_many([(prediction, gold)], timeout)[0]


def answers_equal_many(
    pairs: list[tuple[str | None, str]], timeout: float = CHECK_TIMEOUT_SECONDS
) -> list[bool]:
    """answers_equal for many (prediction, gold) pairs, with one batched round trip to the worker."""
    graded = [_grade_locally(prediction, gold) for prediction, gold in pairs]
    checks = [(p, g) for verdict, p, g in graded if verdict is None]
    verified = iter(_VERIFIER.equal_many(checks, timeout) if checks else [])
    return [next(verified) if verdict is None else verdict for verdict, _, _ in graded]


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


def correctness_reward(
    completions: list, answer: list[str], answer_format: str = "tags", **kwargs
) -> list[float]:
    """10 when the completion's answer (final_answer: the paper's tags by default,
    `answer_format="boxed"` or `"any"` otherwise) equals the gold one, else 0 (logs the share correct)."""
    predictions = [final_answer(completion_text(c), answer_format) for c in completions]
    verdicts = answers_equal_many(list(zip(predictions, answer, strict=True)))
    rewards = [10.0 if correct else 0.0 for correct in verdicts]
    _log_share(kwargs, "accuracy", rewards)
    return rewards


def boxed_correctness_reward(completions: list, answer: list[str], **kwargs) -> list[float]:
    """correctness_reward on the last \\boxed{} answer (the community's convention)."""
    kwargs.pop("answer_format", None)
    return correctness_reward(completions, answer, answer_format="boxed", **kwargs)


def any_correctness_reward(completions: list, answer: list[str], **kwargs) -> list[float]:
    """correctness_reward on the tags answer when the format is complete, else the last \\boxed{}."""
    kwargs.pop("answer_format", None)
    return correctness_reward(completions, answer, answer_format="any", **kwargs)


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
    "boxed_correctness_reward": boxed_correctness_reward,
    "any_correctness_reward": any_correctness_reward,
    "lenient_correctness_reward": lenient_correctness_reward,
}
