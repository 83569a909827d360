"""A labelled case set for the grader, generated from the real gold answers in ../shared/data.

Each case is (prediction, gold, expected verdict, kind, where). Rewritings a model or a person
produces for the same value must be accepted; near misses (another value, a variable or multiplier
appended, a sign lost, a word misspelt) must be rejected. Everything is derived by rule from the gold
answer, deterministically; nothing here is copied from the data files.

Most predictions are extracted answers. The classes of whole model outputs (model_output_cases:
several boxes, prose without a box) are completions, with the answer_format that extracts their
answer: the case then checks extraction and grading together.
"""

from __future__ import annotations

import json
import math
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
    answer_format: str | None = None  # set: the prediction is a completion, extracted in this format

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
        yield from model_output_cases(gold, where, index)
    yield from _gsm8k_list_cases(path)


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
        yield from model_output_cases(gold, where, index)
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
        yield from model_output_cases(row["answer"], f"math500/{row['unique_id']}", index)


# ------------------------------------------------------------------------------------------------
# What models write around an answer: several boxes, text commands, decimal commas, upright
# constants, answers stated in prose
# ------------------------------------------------------------------------------------------------

TEXT_COMMANDS = (
    "text",
    "textbf",
    "textit",
    "textnormal",
    "textrm",
    "mathrm",
    "mathbf",
    "mbox",
    "operatorname",
)
TEXT_UNITS = ("cm", "kg", "m", "s", "km", "dollars", "hours")
INTEGER = re.compile(r"-?\d+")
DECIMAL = re.compile(r"-?\d+\.\d+")
INFINITE_INTERVAL = re.compile(r"([(\[])\s*(-?\d+)\s*,\s*\\infty\s*\)|\(\s*-\\infty\s*,\s*(-?\d+)\s*([)\]])")


# The classes of whole model outputs, by the prefixes of their case kinds (each needs acceptances
# and near misses; tests/test_grading_cases.py checks it).
MODEL_OUTPUT_CLASSES = {
    "several boxed answers": ("boxes-", "list-"),
    "units and wrappers in any text command": (
        "word-in-",
        "whole-in-",
        "unit-in-",
        "minus-in-",
        "letter-in-",
    ),
    "decimal commas": ("decimal-comma", "zero-group-comma", "integer-decimal-comma", "list-read-as-decimal"),
    "upright constants": ("pi-upright", "pi-as-e", "i-upright", "i-as-e", "e-upright"),
    "answers in prose": ("prose-",),
    "long outputs": ("prose-long-output",),
}


def _other_value(gold: str) -> str | None:
    """A different answer of the same shape: an integer plus one, else the last digit changed that is
    no exponent (not the 2 of a unit's ^2, which the grader drops with the unit)."""
    if INTEGER.fullmatch(gold):
        return str(int(gold) + 1)
    digits = list(re.finditer(r"(?<!\^)\d", gold))
    if not digits:
        return None
    last = digits[-1]
    return gold[: last.start()] + str((int(last.group()) + 1) % 10) + gold[last.end() :]


def _filler(index: int, sentences: int, mention: str | None = None) -> str:
    """Deterministic reasoning with numbers of its own (and `mention` in the middle, if given)."""
    parts = []
    for step in range(sentences):
        a, b = 3 + (index * 7 + step * 11) % 89, 2 + (index * 5 + step * 3) % 47
        parts.append(
            f"Step {step + 1}: with a = {a} and b = {b}, we have a + b = {a + b} and a - b = {a - b}."
        )
        if mention is not None and step == sentences // 2:
            parts.append(f"One candidate is {mention}, but it fails the check.")
    return " ".join(parts)


def model_output_cases(gold: str, where: str, index: int) -> Iterator[Case]:
    """What models write around one gold answer (MODEL_OUTPUT_CLASSES), each class with near misses
    that must stay rejected."""
    yield from _several_boxes_cases(gold, where, index)
    yield from _text_command_cases(gold, where, index)
    yield from _decimal_comma_cases(gold, where, index)
    yield from _constant_cases(gold, where, index)
    yield from _prose_cases(gold, where, index)


def _several_boxes_cases(gold: str, where: str, index: int) -> Iterator[Case]:
    """One value boxed more than once is that value; boxes that disagree are no answer to a one-value
    gold, whichever of them is right and wherever it stands."""
    other = _other_value(gold)
    respelled = f"\\frac{{{2 * int(gold)}}}{{2}}" if INTEGER.fullmatch(gold) else f"\\displaystyle {gold}"
    accept = [
        (f"We get $\\boxed{{{gold}}}$. Checking once more, the answer is $\\boxed{{{gold}}}$.", "boxed",
         "boxes-repeated"),
        (f"So $x = \\boxed{{{gold}}}$, that is, $\\boxed{{{respelled}}}$.", "boxed", "boxes-respelled"),
        (f"<reasoning>r</reasoning>\n<answer>\\boxed{{{gold}}} (\\boxed{{{gold}}})</answer>", "tags",
         "boxes-in-tags"),
    ]  # fmt: skip
    prediction, answer_format, kind = accept[index % len(accept)]
    yield Case(prediction, gold, True, kind, where, answer_format)
    if other is None:
        return
    reject = [
        (f"A first guess is $\\boxed{{{other}}}$; correcting it, we get $\\boxed{{{gold}}}$.", "boxed",
         "boxes-guess-then-answer"),
        (f"The answer is $\\boxed{{{gold}}}$ or $\\boxed{{{other}}}$.", "boxed", "boxes-answer-then-other"),
        (f"<reasoning>r</reasoning>\n<answer>\\boxed{{{gold}}}, \\boxed{{{other}}}</answer>", "tags",
         "boxes-in-tags-disagree"),
        (f"$\\boxed{{{gold}}}$\n\n" + _filler(index, 3) + f" Hence $\\boxed{{{other}}}$.", "any",
         "boxes-far-apart-disagree"),
    ]  # fmt: skip
    prediction, answer_format, kind = reject[index % len(reject)]
    yield Case(prediction, gold, False, kind, where, answer_format)
    items = _list_items(gold)
    if items:
        yield from _list_cases(items, gold, where)


def _list_items(gold: str) -> list[str] | None:
    """The values a gold answer lists ('3, 5, 7', '1,-2', '\\{1\\pm\\sqrt{5},-2\\}'), else None."""
    inner = gold[2:-2] if gold.startswith("\\{") and gold.endswith("\\}") else gold
    if "," not in inner or re.search(r"[()\[\]]|\\!|\{,\}", inner) or re.fullmatch(r"[\d,]+", inner):
        return None
    return [item.strip() for item in inner.split(",")]


def _list_cases(items: list[str], gold: str, where: str) -> Iterator[Case]:
    """A gold that lists values: one box per value, in any order, is that list; a box missing, added
    or changed is not."""
    boxes = [f"\\boxed{{{item}}}" for item in items]
    changed = next(value for item in items if (value := _other_value(item)) not in items)
    yield Case(
        "The solutions are " + " and ".join(boxes) + ".", gold, True, "list-boxed-each", where, "boxed"
    )
    yield Case(", ".join(reversed(boxes)), gold, True, "list-boxed-reversed", where, "boxed")
    yield Case(" ".join(boxes + boxes[:1]), gold, True, "list-boxed-one-twice", where, "boxed")
    yield Case(f"\\boxed{{{', '.join(items)}}}", gold, True, "list-one-box", where, "boxed")
    yield Case(" and ".join(boxes[:-1]), gold, False, "list-boxed-one-missing", where, "boxed")
    yield Case(" and ".join([*boxes, f"\\boxed{{{changed}}}"]), gold, False, "list-boxed-one-extra", where,
               "boxed")  # fmt: skip
    yield Case(" and ".join([*boxes[:-1], f"\\boxed{{{changed}}}"]), gold, False, "list-boxed-one-changed",
               where, "boxed")  # fmt: skip
    yield Case(" and ".join(boxes[:1] * len(boxes)), gold, False, "list-boxed-one-repeated", where, "boxed")


def _gsm8k_list_cases(path: Path) -> Iterator[Case]:
    """Two consecutive GSM8K answers as one gold that lists two values ('18, 3')."""
    golds = [row["answer"].rsplit("####", 1)[1].strip().replace(",", "") for row in _rows(path)]
    for index in range(0, GSM8K_PROBLEMS, 2):
        first, second = golds[index], golds[index + 1]
        if first != second:
            yield from _list_cases([first, second], f"{first}, {second}", f"gsm8k/{index}+{index + 1}")


def _text_command_cases(gold: str, where: str, index: int) -> Iterator[Case]:
    """Every text-like command is read alike: a unit in any of them is dropped, a whole answer in any
    of them unwrapped, a minus sign in any of them is a minus; a wrong value keeps its unit, and a
    letter in one is a variable."""
    command = TEXT_COMMANDS[index % len(TEXT_COMMANDS)]
    unit = TEXT_UNITS[(index // len(TEXT_COMMANDS)) % len(TEXT_UNITS)]
    word = WORD.fullmatch(gold)
    if word:
        yield Case(f"\\{command}{{{word.group(1)}}}", gold, True, f"word-in-{command}", where)
        return
    if not (INTEGER.fullmatch(gold) or DECIMAL.fullmatch(gold) or FRACTION.fullmatch(gold)):
        return
    if (index // len(TEXT_COMMANDS)) % 2:
        yield Case(f"\\{command}{{{gold}}}", gold, True, f"whole-in-{command}", where)
    else:
        yield Case(f"{gold}\\{command}{{ {unit}}}", gold, True, f"unit-in-{command}", where)
    if gold.startswith("-"):
        yield Case(f"\\{command}{{-}}{gold[1:]}", gold, True, f"minus-in-{command}", where)
    if (index // len(TEXT_COMMANDS)) % 2 and gold not in ("0", "-0"):
        yield Case(f"{gold}\\{command}{{n}}", gold, False, f"letter-in-{command}", where)
    else:
        other = _other_value(gold)
        yield Case(f"{other}\\{command}{{ {unit}}}", gold, False, f"unit-in-{command}-other-value", where)


def _decimal_comma_cases(gold: str, where: str, index: int) -> Iterator[Case]:
    """A decimal comma is a decimal point, never a digit separator that vanishes; a zero first group
    ('0,250') groups no thousands; a list of numbers is no decimal."""
    decimal = gold if DECIMAL.fullmatch(gold) else None
    fraction = FRACTION.fullmatch(gold)
    if (
        fraction
        and int(fraction.group(3))
        and 10**6 % (Fraction(int(fraction.group(2)), int(fraction.group(3)))).denominator == 0
    ):
        value = Fraction(int(fraction.group(2)), int(fraction.group(3)))
        decimal = ("-" if fraction.group(1) else "") + str(float(value)) if value.denominator > 1 else None
    if decimal is not None:
        whole, digits = decimal.split(".")
        # Exactly three digits after a comma group thousands (the documented reading): 15,975 is 15975.
        thousands = len(digits) == 3 and whole.lstrip("-") != "0"
        kind = "decimal-comma-three-digits-read-as-thousands" if thousands else "decimal-comma"
        yield Case(f"{whole},{digits}", gold, not thousands, kind, where)
        yield Case(f"{whole}{{,}}{digits}", gold, not thousands, kind + "-latex", where)
        joined = (whole.lstrip("-").lstrip("0") + digits).lstrip("0")
        yield Case(
            ("-" if whole.startswith("-") else "") + joined, gold, False, "decimal-comma-digits-joined", where
        )
        yield Case(f"{whole}{digits[:1]},{digits[1:] or '0'}", gold, False, "decimal-comma-moved", where)
    if INTEGER.fullmatch(gold) and 0 < int(gold) < 1000 and index % 3 == 0:
        yield Case(f"0,{int(gold):03d}", gold, False, "zero-group-comma", where)
        yield Case(f"0{{,}}{int(gold):03d}", gold, False, "zero-group-comma-latex", where)
        digit = 6 if gold == "5" else 5  # neither 0 (v,0 is v) nor v itself (the list v, v is v)
        yield Case(f"{gold},{digit}", gold, False, "integer-decimal-comma", where)
    pair = re.fullmatch(r"(-?\d+),(\d+)", gold)
    if pair:
        yield Case(f"{pair.group(1)}.{pair.group(2)}", gold, False, "list-read-as-decimal", where)


def _constant_cases(gold: str, where: str, index: int) -> Iterator[Case]:
    """e, i and pi set upright (\\mathrm) are the constants; another constant in their place is not."""
    command = ("mathrm", "text", "textrm", "operatorname")[index % 4]
    if "\\pi" in gold:
        yield Case(gold.replace("\\pi", f"\\{command}{{\\pi}}"), gold, True, "pi-upright", where)
        yield Case(gold.replace("\\pi", "\\mathrm{e}"), gold, False, "pi-as-e", where)
    if re.fullmatch(r"-?\d*\s*[+-]\s*\d*i", gold.replace(" ", "")):
        yield Case(gold.replace("i", f"\\{command}{{i}}"), gold, True, "i-upright", where)
        yield Case(gold.replace("i", "\\mathrm{e}"), gold, False, "i-as-e", where)
    if INTEGER.fullmatch(gold) and 1 <= int(gold) <= 9:  # the gold as a power of e, and its value
        power = f"e^{{{gold}}}"
        value = f"{math.exp(int(gold)):.6f}"
        yield Case(f"\\{command}{{e}}^{{{gold}}}", power, True, "e-upright", where)
        yield Case(
            f"\\{command}{{e}}^{{{int(gold) + 1}}}",
            power,
            False,
            "e-upright-other-power",
            where,
        )
        yield Case(f"\\{command}{{e}}^{{{gold}}}", value, True, "e-upright-value", where)
        yield Case(f"\\{command}{{e}}^{{{gold}}} + 1", value, False, "e-upright-value-plus-one", where)


def _prose_cases(gold: str, where: str, index: int) -> Iterator[Case]:
    """answer_format "any" on answers stated in prose (no box, no tags): the final statement counts,
    not a number from the middle of the reasoning, also at the end of a long output."""
    stated = gold if "$" in gold or WORD.fullmatch(gold) else f"${gold}$"
    if WORD.fullmatch(gold):
        stated = WORD.fullmatch(gold).group(1)
    other = _other_value(gold)
    wrong = None if other is None else (other if "$" in other else f"${other}$")
    accept = [
        (f"Final Answer: the required value is {stated}.", "prose-final-answer-words"),
        (_filler(index, 2) + f" Adding these up, the answer is {stated}.", "prose-answer-is"),
        (_filler(index, 1) + f"\n\n**Answer:** {stated}", "prose-bold-answer"),
        (
            f"Final Answer: The final answer is $\\boxed{{{gold}}}$. I hope it is correct.",
            "prose-minerva-boxed",
        ),
        (f"Final Answer: The final answer is {stated}. I hope it is correct.", "prose-minerva"),
        (_filler(index, 40) + f" The answer is {stated}.", "prose-long-output"),
    ]
    if wrong is not None:
        accept += [
            (f"So the answer is {wrong}. Wait, that drops a term; redoing it, the answer is {stated}.",
             "prose-correction"),
            (f"The answer is {stated}. Check: " + _filler(index, 1), "prose-answer-then-check"),
        ]  # fmt: skip
    assignable = not (WORD.fullmatch(gold) or CHOICE.fullmatch(gold) or "=" in gold)
    if assignable:
        accept.append((_filler(index, 2) + f" Therefore $x = {gold}$.", "prose-last-expression"))
    for offset in range(2):
        prediction, kind = accept[(index * 2 + offset) % len(accept)]
        yield Case(prediction, gold, True, kind, where, "any")
    if wrong is not None:
        reject = [
            (_filler(index, 2) + f" Adding these up, the answer is {wrong}.", "prose-wrong-answer"),
            (_filler(index, 4, mention=stated) + f" So the answer is {wrong}.", "prose-gold-in-the-middle"),
            (f"The answer is {stated}. Wait, that drops a term; redoing it, the answer is {wrong}.",
             "prose-corrected-away"),
            (_filler(index, 40, mention=stated) + f" The answer is {wrong}.", "prose-long-output-wrong"),
            (f"Final Answer: the required value is {wrong}.", "prose-final-answer-words-wrong"),
        ]  # fmt: skip
        if assignable:
            reject.append((_filler(index, 2, mention=stated) + f" Therefore $x = {other}$.",
                           "prose-last-expression-wrong"))  # fmt: skip
        for offset in range(2):
            prediction, kind = reject[(index * 2 + offset) % len(reject)]
            yield Case(prediction, gold, False, kind, where, "any")
    interval = INFINITE_INTERVAL.fullmatch(gold)
    if interval:
        opening, low, high, closing = interval.groups()
        relation, near = ((">", "\\geq") if opening == "(" else ("\\geq", ">")) if low else (
            ("<", "\\leq") if closing == ")" else ("\\leq", "<"))  # fmt: skip
        bound = low or high
        yield Case(
            f"So $x {relation} {bound}$ is the solution.", gold, True, "prose-inequality", where, "any"
        )
        near_miss = f"So $x {near} {bound}$ is the solution."
        yield Case(near_miss, gold, False, "prose-inequality-other-end", where, "any")


def all_cases(data: Path) -> list[Case]:
    """Every case, from the five benchmark files in `data`."""
    cases = [*gsm8k_cases(data / "gsm8k_test.jsonl"), *math500_cases(data / "math500.jsonl")]
    for name in ("aime24", "aime25", "amc23"):
        cases += _competition_cases(data / f"{name}.jsonl", name)
    return cases
