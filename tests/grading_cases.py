"""A labelled case set for the grader, generated from the real gold answers in ../shared/data.

Each case is (prediction, gold, expected verdict, kind, where). Rewritings a model or a person
produces for the same value must be accepted; near misses (another value, a variable or multiplier
appended, a sign lost, a word misspelt) must be rejected. Everything is derived by rule from the gold
answer, deterministically; nothing here is copied from the data files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

GSM8K_PROBLEMS = 100  # of 1,319: the rewritings of integer answers repeat, a sample covers them
COUNT_NOUNS = ("apples", "dollars", "people", "minutes", "eggs", "miles", "cookies", "hours")


@dataclass(frozen=True)
class Case:
    prediction: str
    gold: str
    expected: bool
    kind: str
    where: str

    @property
    def key(self) -> str:
        return f"{self.where}:{self.kind}"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8") if line.strip()]


def _grouped(number: int, separator: str) -> str:
    return f"{number:,}".replace(",", separator)


def _integer_cases(value: int, gold: str, where: str, index: int) -> Iterator[Case]:
    """Rewritings and near misses of an integer answer: every class that applies to this value
    (separators, minus spellings), plus a rotating share of the generic ones, so that each generic
    kind meets many different golds without every gold meeting every kind."""
    noun = COUNT_NOUNS[index % len(COUNT_NOUNS)]
    generic = [
        (f"\\boxed{{{value}}}", True, "boxed"),
        (f"${value}$", True, "math-delimiters"),
        (f"{value}.", True, "trailing-period"),
        (f"{value}.00", True, "decimal-zeros"),
        (f"x = {value}", True, "variable-prefix"),
        (f"\\text{{{value}}}", True, "text-wrapper"),
        (f"{value} {noun}", True, "counted-noun"),
        (f"{value}\\text{{ {noun}}}", True, "counted-noun-text"),
        (f"{value}\\,\\text{{cm}}^2", True, "unit-squared"),
        (f"{value} km/h", True, "unit-compound"),
        (f"{value}\\text{{ m}}", True, "one-letter-unit-text"),
        (str(value + 1), False, "off-by-one"),
        (f"{value} \\text{{ and }} {value + 1}", False, "two-answers"),
    ]
    if value >= 0:
        generic += [(f"\\${value}", True, "dollar-sign"), (f"${value}", True, "bare-dollar")]
    if value != 0:  # a variable times zero is zero
        generic += [
            (str(value * 10), False, "times-ten"),
            (str(-value), False, "sign-flipped"),
            (f"{value}k", False, "multiplier-k"),
            (f"{value}x", False, "variable-x"),
            (f"{value}i", False, "imaginary-i"),
            (f"{value}n", False, "variable-n"),
            (f"{value} m", False, "variable-after-space"),
            (f"{value} \\pi", False, "constant-appended"),
            (f"{value} dozen", False, "multiplier-word"),
        ]
    for offset in range(6):
        prediction, expected, kind = generic[(index * 5 + offset) % len(generic)]
        yield Case(prediction, gold, expected, kind, where)
    if abs(value) >= 1000:
        for name, separator in (
            ("comma", ","),
            ("brace-comma", "{,}"),
            ("thin-space", "\\,"),
            ("comma-negative-space", ",\\!"),
            ("backslash-space", "\\ "),
            ("unicode-thin-space", "\u2009"),
            ("no-break-space", "\u00a0"),
        ):
            yield Case(_grouped(value, separator), gold, True, f"thousands-{name}", where)
        yield Case(_grouped(value, ",") + ".5", gold, False, "thousands-with-fraction", where)
    if value < 0:
        for name, minus in (("en-dash", "\u2013"), ("em-dash", "\u2014"), ("u2212", "\u2212"),
                            ("latex-minus", "\\minus "), ("text-minus", "\\text{-}")):  # fmt: skip
            yield Case(minus + str(-value), gold, True, f"minus-{name}", where)
    if value % 12 == 0 and value > 0:
        yield Case(f"{value // 12} dozen", gold, True, "dozen", where)
    if value % 1000 == 0 and value > 0:
        yield Case(f"{value // 1000} thousand", gold, True, "thousand", where)


def gsm8k_cases(path: Path) -> Iterator[Case]:
    for index, row in enumerate(_rows(path)[:GSM8K_PROBLEMS]):
        gold = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        value = int(gold)
        where = f"gsm8k/{index}"
        yield from _integer_cases(value, gold, where, index)


def _competition_cases(path: Path, name: str) -> Iterator[Case]:
    for index, row in enumerate(_rows(path)):
        answer = float(row["answer"])
        where = f"{name}/{index}"
        if not answer.is_integer():
            gold = str(row["answer"])
            yield Case(str(Fraction(gold)), gold, True, "fraction-of-decimal", where)
            yield Case(str(answer + 1), gold, False, "off-by-one", where)
            continue
        value = int(answer)
        gold = str(value)
        yield from _integer_cases(value, gold, where, index)
        if name.startswith("aime") and value < 100:
            yield Case(f"{value:03d}", gold, True, "leading-zeros", where)
        if name == "amc23":
            yield Case(f"{value}.0", gold, True, "float-form", where)
            yield Case(f"\\frac{{{2 * value}}}{{2}}", gold, True, "unreduced-fraction", where)


FRACTION = re.compile(r"(-?)\\[dt]?frac\s*\{?(\d+)\}?\s*\{?(\d+)\}?")
DEGREES = re.compile(r"(\d+)\^\\circ")
WORD = re.compile(r"\\text\{([A-Za-z]+)\}")
CHOICE = re.compile(r"\\text\{\(([A-E])\)\}")


def _math500_cases(gold: str, where: str, index: int) -> Iterator[Case]:
    """Rewritings that keep any MATH answer's value, then near misses, then per-shape ones."""
    if re.fullmatch(r"-?\d+", gold):
        yield from _integer_cases(int(gold), gold, where, index)
        return
    wrappings = [
        (f"\\boxed{{{gold}}}", "boxed"),
        (f"${gold}$", "math-delimiters"),
        (f"{gold}.", "trailing-period"),
        (f"\\displaystyle {gold}", "displaystyle"),
        (f"\\[ {gold} \\]", "display-delimiters"),
    ]
    for offset in range(2):
        prediction, kind = wrappings[(index * 2 + offset) % len(wrappings)]
        yield Case(prediction, gold, True, kind, where)
    if "\\frac" in gold:
        yield Case(
            gold.replace("\\frac", "\\dfrac" if index % 2 else "\\tfrac"), gold, True, "dfrac-tfrac", where
        )
    if gold.startswith("-"):
        yield Case("\u2212" + gold[1:], gold, True, "minus-u2212", where)
        yield Case("\u2013" + gold[1:], gold, True, "minus-en-dash", where)
        yield Case("\\minus " + gold[1:], gold, True, "minus-latex", where)
        yield Case(gold[1:], gold, False, "sign-dropped", where)
    elif not WORD.fullmatch(gold) and not CHOICE.fullmatch(gold) and gold not in ("0",):
        yield Case(f"-{gold}", gold, False, "sign-added", where)
    if gold.startswith("(") and gold.endswith((")", "]")) and "\\cup" not in gold:
        yield Case(f"\\left{gold[0]}{gold[1:-1]}\\right{gold[-1]}", gold, True, "left-right", where)
    digits = list(re.finditer(r"\d", gold))
    if digits:
        last = digits[-1]
        changed = gold[: last.start()] + str((int(last.group()) + 1) % 10) + gold[last.end() :]
        yield Case(changed, gold, False, "last-digit-changed", where)
    fraction = FRACTION.fullmatch(gold)
    if fraction:
        sign, top, bottom = fraction.group(1), int(fraction.group(2)), int(fraction.group(3))
        yield Case(f"{sign}{top}/{bottom}", gold, True, "slash-fraction", where)
        value = Fraction(top, bottom) * (-1 if sign else 1)
        if 10**6 % value.denominator == 0:
            yield Case(str(float(value)), gold, True, "decimal-of-fraction", where)
        yield Case(f"{sign}\\frac{{{bottom}}}{{{top}}}", gold, top == bottom, "inverted-fraction", where)
    degrees = DEGREES.fullmatch(gold)
    if degrees:
        number = degrees.group(1)
        for kind, text in (("degree-sign", f"{number}°"), ("degree-command", f"{number}\\degree"),
                           ("degree-braced", f"{number}^{{\\circ}}"), ("degree-word", f"{number} degrees"),
                           ("degree-dropped", number)):  # fmt: skip
            yield Case(text, gold, True, kind, where)
        yield Case(f"{int(number) + 1}°", gold, False, "degree-off-by-one", where)
    word = WORD.fullmatch(gold)
    if word:
        text = word.group(1)
        yield Case(text, gold, True, "word-unwrapped", where)
        yield Case(f"\\textbf{{{text.capitalize()}}}", gold, True, "word-bold", where)
        if len(set(text)) > 2:
            yield Case(text[::-1], gold, False, "word-reversed", where)
            yield Case(text[1:] + text[0], gold, False, "word-rotated", where)
    choice = CHOICE.fullmatch(gold)
    if choice:
        letter = choice.group(1)
        yield Case(letter, gold, True, "choice-letter", where)
        yield Case(f"({letter})", gold, True, "choice-parenthesised", where)
        other = "A" if letter != "A" else "B"
        yield Case(f"({other})", gold, False, "choice-other", where)
    if re.search(r"\d,\\!\s*\d{3}", gold):
        plain = re.sub(r",\\!\s*", "", gold)
        yield Case(plain, gold, True, "separator-dropped", where)
        yield Case(plain.replace("\\$", ""), gold, True, "separator-and-currency-dropped", where)
    if re.search(r"\d[a-z]", gold) and "\\" not in gold:
        yield Case(re.sub(r"(\d)([a-z])", r"\1", gold, count=1), gold, False, "variable-dropped", where)
    if re.fullmatch(r"-?\d*\s*[+-]\s*\d*i", gold.replace(" ", "")):
        yield Case(gold.replace("i", "j"), gold, False, "other-letter-for-i", where)
        yield Case(gold.replace("-", "+") if "-" in gold else gold.replace("+", "-"), gold, False,
                   "conjugate", where)  # fmt: skip
    yield from _unicode_cases(gold, where)


def _unicode_cases(gold: str, where: str) -> Iterator[Case]:
    """The same answer typed with unicode symbols instead of LaTeX commands."""
    if gold in ("\\frac{1}{2}", "\\frac12", "\\frac{1}{4}", "\\frac14", "\\frac{3}{4}", "\\frac 34"):
        symbol = {"2": "½", "4": "¼"}[gold[-2] if gold.endswith("}") else gold[-1]]
        symbol = "¾" if "3" in gold else symbol
        yield Case(symbol, gold, True, "unicode-fraction", where)
    if re.search(r"(?<![\\^_{])\b[a-z]\^[23]", gold) and "\\" not in gold:
        typed = re.sub(r"([a-z])\^([23])", lambda m: m.group(1) + "²³"[int(m.group(2)) - 2], gold)
        yield Case(typed, gold, True, "unicode-superscript", where)
        yield Case(typed.replace("²", "³", 1) if "²" in typed else typed.replace("³", "²", 1), gold, False,
                   "unicode-superscript-changed", where)  # fmt: skip
    if "\\pi" in gold:
        yield Case(gold.replace("\\pi", "π"), gold, True, "unicode-pi", where)
    if "\\infty" in gold:
        yield Case(gold.replace("\\infty", "∞"), gold, True, "unicode-infinity", where)
    root = re.fullmatch(r"(\d*)\s*\\sqrt\{?(\d+)\}?", gold)
    if root:
        yield Case(f"{root.group(1)}√{root.group(2)}", gold, True, "unicode-root", where)
        yield Case(f"{root.group(1)}√{int(root.group(2)) + 1}", gold, False, "unicode-root-changed", where)
    if gold.startswith("(") and ", " not in gold and "," in gold and "\\" not in gold:
        yield Case(gold.replace(",", ", "), gold, True, "tuple-spaced", where)
        parts = gold[1:-1].split(",")
        if len(parts) == 2 and parts[0] != parts[1]:
            yield Case(f"{gold[0]}{parts[1]},{parts[0]}{gold[-1]}", gold, False, "tuple-swapped", where)


def math500_cases(path: Path) -> Iterator[Case]:
    for index, row in enumerate(_rows(path)):
        yield from _math500_cases(row["answer"], f"math500/{row['unique_id']}", index)


def all_cases(data: Path) -> list[Case]:
    """Every case, from the five benchmark files in `data`."""
    cases = [*gsm8k_cases(data / "gsm8k_test.jsonl"), *math500_cases(data / "math500.jsonl")]
    for name in ("aime24", "aime25", "amc23"):
        cases += _competition_cases(data / f"{name}.jsonl", name)
    return cases
