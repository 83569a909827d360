"""The paper's rewards as TRL reward functions: `(completions, answer, **kwargs) -> list[float]`.

format_reward       10 if a <reasoning>...</reasoning> block is present and the text ends with an
                    <answer>...</answer> block; else 1 when only one of the two blocks is present
                    (1.5 if a stray tag of the other kind also appears); 0 if neither.
correctness_reward  10 if the format reward is 10 and the answer is mathematically equal to the
                    gold one (gtpo.tasks.grading, then math-verify), else 0; with
                    answer_format="boxed" the boxed answer is judged instead (several boxes as a
                    set), with "any" the final answer however it is stated: tags, boxes, prose
                    (also registered as boxed_correctness_reward and any_correctness_reward).
lenient_correctness_reward
                    the official code's matcher, for reproduction only: float closeness or the gold
                    string being a substring of the prediction (so gold "2" matches "12").

Completions are untrusted: nothing is evaluated as code in this process. Text is cut to a bounded
size (MAX_COMPLETION_CHARS, MAX_ANSWER_CHARS per answer or box, MAX_VALUES values), tags are found
with plain string search (no backtracking), prose is read only in its last PROSE_TAIL_CHARS
characters with patterns that have no nested quantifiers, and math-verify runs in a separate
worker process that is killed and restarted when the checks of one answer exceed their time limit
together, so a pathological answer (10^10^10^10, deep nesting) costs at most that limit and scores 0.
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import subprocess
import sys
import threading
import time
from typing import Any

from gtpo.tasks.grading import (
    BOX_OPEN,
    assigned_value,
    based_number,
    boxed_spans,
    decimal_comma_reading,
    list_items,
    normalise_answer,
    plain_numbers_equal,
    word_answer,
)

MAX_COMPLETION_CHARS = 32_768  # longer completions are cut before any parsing
MAX_ANSWER_CHARS = 512  # longer answers are not parsed and score 0
CHECK_TIMEOUT_SECONDS = 5.0  # for the math-verify checks of one answer together, in the worker process
WORKER_START_TIMEOUT_SECONDS = 120.0
VERIFY_BATCH = 64  # requests written to the worker at once
MAX_VALUES = 16  # values several boxes (or the list they are compared with) may state; more score 0
PROSE_TAIL_CHARS = 2_000  # an answer stated in prose is looked for in this many final characters

ANSWER_FORMATS = ("tags", "boxed", "any")
REASONING_OPEN, REASONING_CLOSE = "<reasoning>", "</reasoning>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"

# Answers stated in prose (stated_answer). No pattern has nested quantifiers, and each runs on at
# most PROSE_TAIL_CHARS characters.
ANSWER_PHRASE = re.compile(
    r"\b(?:final\s+answer|answers?)\b\**[ \t]*\**(?:is\b|are\b|was\b|:|=)[\s*:]*"
    r"|\bfinal\s+answer\b\**[ \t]*\**(?=\n)\s*",
    re.IGNORECASE,
)
MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|\$([^$\n]+)\$", re.DOTALL)
SENTENCE_END = re.compile(r"\n|[.!?](?=\s|$)")
RUN_TOKEN = re.compile(r"</?[A-Za-z]+>|\\[A-Za-z]+|\\.|[A-Za-z]+|\d+|.", re.DOTALL)
RUN_CHARS = frozenset("+-*/^_=<>()[]|,.!'%:;$~×÷±∓≤≥≠√π∞·⋅−²³½⅓¼¾°∪∩∈")
# Function names inside a run (other words end it).
RUN_WORDS = frozenset({"sin", "cos", "tan", "cot", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh",
                       "tanh", "log", "ln", "exp", "sqrt", "lim", "gcd", "lcm", "mod", "pi"})  # fmt: skip
# Trimmed off a run's ends ("$": a currency sign or a stray delimiter); an operator only off its end.
RUN_TRIM = (" \t.,;:!?*$=", " \t.,;:!?*$=+-/^_")
ANSWER_LIKE = re.compile(r"\d|\\[A-Za-z]")  # a last expression must hold a digit or a command
WORDS_ANSWER = re.compile(r"[A-Za-z]+(?: [A-Za-z]+){0,2}")  # "Evelyn", "yes", "east"


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
    """The boxed answer of a text, or None when it has no \\boxed{...} (or \\fbox{...}) or its last
    one is never closed: the content of its boxes when they all hold the same text, else the text
    from its first box to the end of its last one, which the grader reads as the set of the boxes'
    values (a solution that boxes each root, or that boxes a guess and then a correction)."""
    spans = boxed_spans(text)
    openers = list(BOX_OPEN.finditer(text))
    if not spans or spans[-1][2] <= openers[-1].start():  # the last opener is not in a closed box
        return None
    contents = {text[start : end - 1].strip() for _, start, end in spans}
    if len(contents) == 1:
        return contents.pop()
    return text[spans[0][0] : spans[-1][2]]


def stated_answer(text: str) -> str | None:
    """The final answer a text states in prose, looking only at its last PROSE_TAIL_CHARS characters:
    after the last "answer is" / "answer:" / "final answer" phrase, the expression that follows it
    (or, when words come first as in "the largest n is 34", the sentence's last expression), or a
    few words ("Evelyn", "the parity is even"); else the text's last expression with a digit or a
    LaTeX command. An expression is a $...$, \\(...\\) or \\[...\\] span or a run of digits,
    operators, single letters, LaTeX commands and braces; a word of two letters or more (except
    function names) ends a run. None when nothing qualifies."""
    tail = text[-PROSE_TAIL_CHARS:]
    phrases = list(ANSWER_PHRASE.finditer(tail))
    if phrases:
        begin = phrases[-1].end()
        sentence = tail[begin : _sentence_end(tail, begin)]
        expressions = _expressions(sentence)
        if expressions:
            first_start, first_end = expressions[0]
            if not any(char.isalnum() for char in sentence[:first_start]):  # right after the phrase
                chosen = (first_start, first_end)
            else:
                chosen = ([e for e in expressions if not _lone_letter(sentence, e)] or expressions)[-1]
            return sentence[chosen[0] : chosen[1]]
        words = sentence.rsplit(" is ", 1)[-1].strip().strip(".!*").strip()  # "the parity is even"
        if words and WORDS_ANSWER.fullmatch(words):
            return words
    answers = [(a, b) for a, b in _expressions(tail) if ANSWER_LIKE.search(tail, a, b)]
    return tail[answers[-1][0] : answers[-1][1]] if answers else None


def _lone_letter(text: str, span: tuple[int, int]) -> bool:
    letters = text[span[0] : span[1]].strip("()")
    return len(letters) == 1 and letters.isalpha()


def _sentence_end(text: str, begin: int) -> int:
    """Where the sentence that starts at `begin` ends: a line break or a . ! ? before a space or the
    end of the text, outside math delimiters; at most MAX_ANSWER_CHARS characters on."""
    limit = min(len(text), begin + MAX_ANSWER_CHARS)
    spans = [m.span() for m in MATH_SPAN.finditer(text, begin, limit)]
    for match in SENTENCE_END.finditer(text, begin, limit):
        if not any(a < match.start() < b for a, b in spans):
            return match.start()
    return limit


def _expressions(text: str) -> list[tuple[int, int]]:
    """(start, end) of each expression in text, in order: the content of each math span, and the
    runs of mathematics between them. A $...$ whose content starts or ends with a space is no span
    ("$5 and $6" holds two prices), as in pandoc; one holding a \\boxed{} (that extract_boxed
    refused: never closed) is no answer."""
    found: list[tuple[int, int]] = []
    position = 0
    for span in MATH_SPAN.finditer(text):
        start, end = span.span(span.lastindex)
        if span.lastindex == 4 and (text[start].isspace() or text[end - 1].isspace()):
            continue
        found += _runs(text, position, span.start())
        found += _trimmed(text, start, end, ("", ""))
        position = span.end()
    found += _runs(text, position, len(text))
    return [(a, b) for a, b in found if not BOX_OPEN.search(text, a, b)]


def _runs(text: str, begin: int, end: int) -> list[tuple[int, int]]:
    """(start, end) of each run of mathematics in text[begin:end]: digits, operators, single letters,
    function names, LaTeX commands and anything inside braces; a line break, a tag or another word
    ends a run."""
    runs: list[tuple[int, int]] = []
    start, depth = None, 0
    for token in RUN_TOKEN.finditer(text, begin, end):
        piece = token.group()
        depth = depth + 1 if piece == "{" else max(depth - 1, 0) if piece == "}" else depth
        mathematical = (
            depth > 0
            or piece in "{}"
            or piece.isdigit()
            or piece[0] == "\\"
            or piece in RUN_CHARS
            or piece.isspace()
            or (piece.isalpha() and (len(piece) == 1 or piece.lower() in RUN_WORDS))
        )
        if piece == "\n" or not mathematical:
            if start is not None:
                runs += _trimmed(text, start, token.start(), RUN_TRIM)
            start, depth = None, 0
        elif start is None and not piece.isspace():
            start = token.start()
    return runs + (_trimmed(text, start, end, RUN_TRIM) if start is not None else [])


def _trimmed(text: str, start: int, end: int, punctuation: tuple[str, str]) -> list[tuple[int, int]]:
    """[(start, end)] of text[start:end] without surrounding spaces and punctuation (what may go off
    its start, and off its end), nor a bracket at either end while the brackets inside do not
    balance; [] when nothing is left."""
    while start < end:
        inner = text[start:end]
        balance = inner.count("(") + inner.count("[") - inner.count(")") - inner.count("]")
        unmatched = "([" if balance > 0 else ")]" if balance < 0 else ""
        if inner[0].isspace() or inner[0] in punctuation[0] or inner[0] in unmatched:
            start += 1
        elif inner[-1].isspace() or inner[-1] in punctuation[1] or inner[-1] in unmatched:
            end -= 1
        else:
            return [(start, end)]
    return []


def final_answer(text: str, answer_format: str = "tags") -> str | None:
    """The answer a completion gives in the chosen convention, or None when it gives none:

    tags   the paper's: the text has the full format (a reasoning block, and ends with an answer
           block), and the answer is that block's content
    boxed  the community's: the boxed answer (extract_boxed: the boxes' content, several boxes as
           one set)
    any    the final answer however it is stated: the tags answer when the format is complete,
           else the boxed answer, else the answer block the text ends with, else the answer stated
           in prose (stated_answer: an "answer is" phrase, else the last expression)
    """
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    if answer_format != "boxed" and format_score(text) == 10.0:
        return extract_answer(text)
    if answer_format == "tags":
        return None
    boxed = extract_boxed(text)
    if boxed is not None or answer_format == "boxed":
        return boxed
    return extract_answer(text) or stated_answer(text)


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

    def verdicts(
        self, requests: list[list[tuple[str, str]]], timeout: float = CHECK_TIMEOUT_SECONDS
    ) -> list[list[bool]]:
        """math-verify's verdict on each (prediction, gold) pair of each request; all of a request's
        pairs are answered together, within one time limit, and are False when it times out (the
        worker is then killed, and the requests after it go to a fresh one)."""
        results: list[list[bool]] = []
        with self._lock:
            while len(results) < len(requests):
                batch = requests[len(results) : len(results) + VERIFY_BATCH]
                if self._process is None or self._process.poll() is not None:
                    self._start()
                try:
                    self._process.stdin.write(b"".join(json.dumps(r).encode() + b"\n" for r in batch))
                    self._process.stdin.flush()
                except (OSError, ValueError):
                    self._stop()
                    results.append([False] * len(batch[0]))
                    continue
                for request in batch:
                    answer = self._read_line(timeout)
                    if answer is None or len(answer) != len(request) or set(answer) - {"0", "1"}:
                        self._stop()  # timed out or crashed: the rest of the batch goes to a fresh worker
                        results.append([False] * len(request))
                        break
                    results.append([verdict == "1" for verdict in answer])
        return results


_VERIFIER = _Verifier()


def _compare(prediction: str, gold: str) -> bool | None:
    """The verdict on two normalised answers when no math-verify check is needed, else None."""
    if prediction == gold:
        return True
    if "=" not in gold:
        prediction = assigned_value(prediction)
    gold_word = word_answer(gold)
    if gold_word is not None:
        return word_answer(prediction) == gold_word
    exact = plain_numbers_equal(prediction, gold)
    if exact is not None:
        return exact
    gold_based = based_number(gold)
    if gold_based is not None:  # the digits must match, and the base where the prediction names one
        digits, base = based_number(prediction) or (prediction.upper(), gold_based[1])
        return (digits, base) == gold_based
    return None


def _boxed_values(answer: str) -> list[str] | None:
    """The normalised values an answer with several \\boxed{} states (each box's list items, distinct),
    or None when it has fewer than two boxes. An empty or over-long box is the value "" (never equal)."""
    spans = boxed_spans(answer)
    if len(spans) < 2:
        return None
    values: list[str] = []
    for _, start, end in spans[: MAX_VALUES + 1]:
        content = answer[start : end - 1]
        items = list_items(normalise_answer(content)) if len(content) <= MAX_ANSWER_CHARS else [""]
        values += [item for item in items if item not in values]
    return values


Plan = tuple[list[list[str]], list[str]]  # the readings of each predicted value, and the gold values


def _plan(prediction: str | None, gold: str) -> Plan | None:
    """What to compare: (the readings of each value the prediction states, each value of the gold),
    all normalised; None when the pair scores 0 unread (no answer, too long, too many values).

    An answer states one value, unless it has several boxes: then it states their values, and the
    other answer is read as the list of values it gives ("2, 5"; one value when it is no list). A
    prediction that is one number with a comma grouping no thousands ("0,25") is read both as a
    list, like the gold, and with a decimal comma (grading.decimal_comma_reading)."""
    if prediction is None or not prediction.strip() or len(prediction) > MAX_COMPLETION_CHARS:
        return None
    gold = str(gold)[:MAX_COMPLETION_CHARS]
    predicted, golds = _boxed_values(prediction), _boxed_values(gold)
    if predicted is None and len(prediction) > MAX_ANSWER_CHARS:
        return None
    if golds is None:
        golds = [normalise_answer(gold[:MAX_ANSWER_CHARS])]
    if predicted is None:
        predicted = [normalise_answer(prediction)]
    if len(predicted) > 1 or len(golds) > 1:  # several boxes on one side: a set of values on both
        predicted = list(dict.fromkeys(item for value in predicted for item in list_items(value)))
        golds = list(dict.fromkeys(item for value in golds for item in list_items(value)))
    if len(predicted) > MAX_VALUES or len(golds) > MAX_VALUES:
        return None
    readings = [[value, *filter(None, [decimal_comma_reading(value)])] for value in predicted]
    return readings, golds


def _either(verdicts: list[bool | None]) -> bool | None:
    """Three-valued or: True if any is True, None if any is undecided, else False."""
    return True if True in verdicts else None if None in verdicts else False


def _verdict(plan: Plan, known: dict[tuple[str, str], bool | None]) -> bool | None:
    """Three-valued: whether every predicted value equals some gold value and every gold value some
    predicted value (a value: any of its readings), from the verdicts known so far on (reading, gold)
    pairs; None while undecided pairs could change it. One value on each side: they are equal."""
    readings, golds = plan
    table = [[_either([known[reading, gold] for reading in value]) for gold in golds] for value in readings]
    covered = [_either(row) for row in table] + [_either(list(column)) for column in zip(*table, strict=True)]
    return False if False in covered else None if None in covered else True


def answers_equal(prediction: str | None, gold: str, timeout: float = CHECK_TIMEOUT_SECONDS) -> bool:
    """Whether an extracted answer equals the gold answer mathematically (bounded in size and time):
    both are normalised (gtpo.tasks.grading), a gold answer that is a word is compared as text,
    several boxed values are compared as a set with the values the gold lists, and anything else
    goes to math-verify in the worker process."""
    return answers_equal_many([(prediction, gold)], timeout)[0]


def answers_equal_many(
    pairs: list[tuple[str | None, str]], timeout: float = CHECK_TIMEOUT_SECONDS
) -> list[bool]:
    """answers_equal for many (prediction, gold) pairs, with one batched round trip to the worker;
    the math-verify checks one pair needs are one request, under one time limit."""
    plans = [_plan(prediction, gold) for prediction, gold in pairs]
    knowns: list[dict[tuple[str, str], bool | None]] = []
    requests: list[list[tuple[str, str]]] = []
    for plan in plans:
        known: dict[tuple[str, str], bool | None] = {}
        if plan is not None:
            readings, golds = plan
            known = {(r, g): _compare(r, g) for value in readings for r in value for g in golds}
            if _verdict(plan, known) is None:
                requests.append([pair for pair, verdict in known.items() if verdict is None])
        knowns.append(known)
    answered = iter(_VERIFIER.verdicts(requests, timeout) if requests else [])
    results = []
    for plan, known in zip(plans, knowns, strict=True):
        if plan is not None and _verdict(plan, known) is None:
            pending = [pair for pair, verdict in known.items() if verdict is None]
            known.update(zip(pending, next(answered), strict=True))
        results.append(plan is not None and bool(_verdict(plan, known)))
    return results


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
