"""Answer normalisation before math-verify, by class of rewriting rather than by example.

math-verify reads LaTeX well but misreads how people and models write numbers around it. Before a
prediction and a gold answer are compared, each is rewritten here (plain text, no evaluation):

signs        every minus spelling (hyphen-like dashes, U+2212, en and em dash, `\\minus`,
             `\\text{-}`, `\\textendash`) becomes "-"
degrees      "°", `\\degree`, `^{\\circ}` become `^\\circ` (a following C or F is dropped)
separators   thousands separators between digit groups of three: `,` (when the answer is one
             number), `{,}`, `,\\!`, `\\,`, `\\!`, `\\ `, `\\;`, `\\:`, `~`, thin and no-break spaces
unicode      fractions (½), superscripts (x²), √ π ∞ × · ÷ ± ≤ ≥, full-width digits
text         the commands that set their argument as text (TEXT_COMMAND: `\\text`, `\\textbf`,
             `\\textit`, `\\textnormal`, `\\textrm`, `\\mathrm`, `\\mathbf`, `\\mbox`,
             `\\operatorname`, ...) are one class wherever one of them is read: as a wrapper, a unit,
             a minus sign, or a constant (`\\mathrm{e}`, `\\mathrm{i}`, `\\mathrm{\\pi}` are e, i, pi)
wrappers     a whole answer in `\\boxed{}`, `$..$`, `\\(..\\)`, `\\[..\\]` or a text command is
             unwrapped, nested ones too; `\\displaystyle`, a trailing period and a currency sign
             ($, \\$, €, £) are dropped
units        a trailing word is dropped only if it is a unit (a list of real units, also inside a
             text command and with ^2 / ^3, "per", "square", "cubic") or an English word naming
             what is counted ("18 apples"). One letter is a variable ("2k", "3i", "5 x"), never a
             unit, unless LaTeX marks it as text (`5\\text{ m}`); a multiplier word is part of
             the value ("1.5 million" is 1500000, "5 dozen" is 60).
commas       a comma is never deleted between digits unless it groups thousands: the first group
             1-3 digits not starting with 0, every later group exactly three ("1,250", not "0,250").
             LaTeX's number commas `{,}` and `,\\!` are a decimal point otherwise ("0{,}25" is
             0.25); a plain comma otherwise stays, and math-verify reads a list ("-2,1" is two
             roots). decimal_comma_reading gives the other reading of such an answer ("0,25" as
             0.25), which the grader tries for predictions only.

Helpers for the comparison itself: a gold answer that is a word (MATH's `\\text{Evelyn}`) is
compared as text, since math-verify reads a word as a product of one-letter symbols and accepts
its anagrams (word_answer); two plain decimals are compared exactly, since math-verify rounds to
6 places (plain_numbers_equal); a number in a base keeps its base (based_number).

A prediction `x = 5` is compared by these rules as its value (assigned_value). Helpers for
answers that state several values: boxed_spans finds every outermost `\\boxed{}` of a
text, and list_items splits a list ("2, 5", "\\{1, 2\\}"; not a tuple or an interval) into its
values, so that the grader can compare several boxes with the values the gold lists.

No pattern here has nested quantifiers, so the cost is at most quadratic in the input, and callers
cut answers to a bounded length (gtpo.tasks.rewards.MAX_ANSWER_CHARS) first.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

# The commands that set their argument as text (or upright, bold, as an operator name), up to its
# opening brace: the one definition behind wrappers, units, minus signs and constants.
TEXT_COMMAND = (
    r"\\(?:text(?:bf|it|normal|rm|sf|tt|up|md|sl)?|math(?:rm|bf|it|sf|tt|normal|bfit)|mbox|hbox"
    r"|operatorname\*?)\s*\{"
)
DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
MINUS_COMMANDS = re.compile(rf"\\(?:minus|textminus|textendash|textemdash)\b\s*|{TEXT_COMMAND}\s*-\s*\}}")
# e, i and pi set upright (ISO style) are the constants, not a text "e".
TEXT_CONSTANT = re.compile(rf"{TEXT_COMMAND}\s*([ei]|\\pi)\s*\}}")
UNICODE_SYMBOLS = {
    "×": r"\times ",
    "·": r"\cdot ",
    "⋅": r"\cdot ",
    "÷": r"\div ",
    "±": r"\pm ",
    "∓": r"\mp ",
    "≤": r"\le ",
    "≥": r"\ge ",
    "≠": r"\ne ",
    "π": r"\pi ",
    "∞": r"\infty ",
    "∪": r"\cup ",
    "∩": r"\cap ",
    "＋": "+",
}
VULGAR_FRACTIONS = {
    "½": (1, 2), "⅓": (1, 3), "⅔": (2, 3), "¼": (1, 4), "¾": (3, 4), "⅕": (1, 5), "⅖": (2, 5),
    "⅗": (3, 5), "⅘": (4, 5), "⅙": (1, 6), "⅚": (5, 6), "⅐": (1, 7), "⅛": (1, 8), "⅜": (3, 8),
    "⅝": (5, 8), "⅞": (7, 8), "⅑": (1, 9), "⅒": (1, 10),
}  # fmt: skip
SQUARE_ROOT = re.compile(r"√\s*(\d+(?:\.\d+)?|[A-Za-z])")
MATH_DELIMITERS = re.compile(r"\\\[(.*)\\\]|\\\((.*)\\\)|\$\$([^$]*)\$\$|\$([^$]*)\$", re.DOTALL)
STYLE_COMMANDS = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle)\b")
SUPERSCRIPTS = dict(zip("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+", strict=True))
SUPERSCRIPT_RUN = re.compile("[" + "".join(SUPERSCRIPTS) + "]+")
FRACTION_CHARS = re.compile(r"(\d?)\s*([" + "".join(VULGAR_FRACTIONS) + r"])")

DEGREE = re.compile(r"\s*(?:°|\\degree\b|\^\s*\{\s*\\circ\s*\}|\^\s*\\circ\b)(?:\s*[CF]\b)?")

SEPARATOR = r"(?:\{,\}|,\\!\s*|\\,|\\!|\\ |\\;|\\:|~|[\u2009\u202f\u00a0\u2007])"
# Thousands: a first group of 1-3 digits that does not start with 0, then groups of exactly three.
GROUPED_DIGITS = re.compile(rf"(?<![\d.])[1-9]\d{{0,2}}(?:{SEPARATOR}\d{{3}})+(?![\d])")
SEPARATOR_RE = re.compile(SEPARATOR)
# LaTeX's number commas that group no thousands are a decimal comma ("0{,}25", "3,\!5").
NUMBER_COMMA = re.compile(r"(?<=\d)(?:\{,\}|,\\!\s*)(?=\d)")
# A comma or a plain space separates thousands only when the answer is that one number ("1,-2" and
# "(1,234)" are pairs).
GROUPED_NUMBER = re.compile(r"[-+]?[1-9]\d{0,2}(?:(?:,\d{3})+|(?: \d{3})+)(?:\.\d+)?")
# One number with one comma that groups no thousands: a decimal comma, or a list of two numbers.
COMMA_NUMBER = re.compile(r"[-+]?\d+,\d+")
PLAIN_PI = re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])")

BOX_OPEN = re.compile(r"\\(?:boxed|fbox)\s*\{")
WRAPPER_OPEN = re.compile(rf"\\(?:boxed|fbox)\s*\{{|{TEXT_COMMAND}")
MAX_WRAPPERS = 4  # nested whole-answer wrappers removed ("$\boxed{\text{5}}$")
LEADING_CURRENCY = re.compile(r"^([-+]?)\s*(?:\\\$|\$(?=\s*[\d.])|[€£¥]|(?:US)?\$)\s*")
TRAILING_CURRENCY = re.compile(r"\s*[€£¥]$")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Real units, singular forms (plurals are recognised from these); lower-case.
UNITS = _words(
    """mm cm km m in inch ft foot feet yd yard mi mile meter metre centimeter centimetre millimeter
    millimetre kilometer kilometre nm micrometer mg g gram kg kilogram lb lbs pound oz ounce ton tonne
    s sec second min minute h hr hrs hour day week month year yr ms millisecond decade century
    ml milliliter millilitre l liter litre gallon gal quart pint cup cc teaspoon tablespoon
    dollar cent usd eur euro rupee rs yen penny pennies
    degree deg rad radian mph kmh kph km/h m/s cm/s ft/s mi/h
    unit acre hectare sq square cubic cu per"""
)
# One-letter units, recognised only where LaTeX marks them as text ("5\text{ m}").
SHORT_UNITS = _words("m s g h l L")
# Names of functions and constants: mathematics, never a counted noun nor a text answer.
MATH_NAMES = _words(
    """pi sqrt sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log ln exp lim mod gcd lcm
    max min det infty inf infinity"""
)
# Words that are answers in their own right, never a counted noun.
ANSWER_WORDS = _words(
    "and or not to none neither both true false yes no undefined even odd all real prime composite"
)
MULTIPLIERS = {"thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12,
               "dozen": 12, "hundred": 100, "score": 20}  # fmt: skip
PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
TRAILING_WORD = re.compile(r"(?:\s+|(?<=\d))([A-Za-z]+(?:/[A-Za-z]+)?(?:\^\{?[23]\}?|²|³)?)$")
TRAILING_TEXT = re.compile(rf"\s*{TEXT_COMMAND}([^{{}}]*)\}}(?:\s*\^\s*\{{?[23]\}}?)?$")
WORD_ANSWER = re.compile(r"[A-Za-z]{2,}(?: [A-Za-z]{2,})*")
MAX_TRAILING_WORDS = 5


def _plural_base(word: str) -> str:
    for suffix, replacement in (("ies", "y"), ("es", ""), ("s", "")):
        if word.endswith(suffix) and word[: -len(suffix)] + replacement in UNITS:
            return word[: -len(suffix)] + replacement
    return word


def is_unit_word(word: str, marked_as_text: bool = False) -> bool:
    """Whether a trailing word names a unit or a counted thing (not a variable, constant or multiplier)."""
    base = re.sub(r"(\^\{?[23]\}?|²|³)$", "", word)
    if marked_as_text and base in SHORT_UNITS:
        return True
    lower = base.lower()
    if lower in UNITS or _plural_base(lower) in UNITS:
        return len(base) > 1 or marked_as_text
    if lower in MATH_NAMES or lower in ANSWER_WORDS or lower.rstrip("s") in MULTIPLIERS or "/" in base:
        return False
    return len(base) >= 3 and base.isalpha() and base.islower()


def _unicode(text: str) -> str:
    for dash in DASHES:
        text = text.replace(dash, "-")
    text = SUPERSCRIPT_RUN.sub(lambda m: "^{" + "".join(SUPERSCRIPTS[c] for c in m.group()) + "}", text)

    def fraction(match: re.Match) -> str:
        whole, (top, bottom) = match.group(1), VULGAR_FRACTIONS[match.group(2)]
        return f"{whole}\\frac{{{top}}}{{{bottom}}}"

    text = FRACTION_CHARS.sub(fraction, text)
    text = SQUARE_ROOT.sub(r"\\sqrt{\1}", text).replace("√", r"\sqrt")
    for symbol, latex in UNICODE_SYMBOLS.items():
        text = text.replace(symbol, latex)
    # Full-width digits and letters; the mappings above ran first so that NFKC cannot turn "x²" into "x2".
    return unicodedata.normalize("NFKC", text)


def _strip_units(text: str) -> str:
    """Drop trailing unit or counted-noun words after a value; keep variables and multipliers."""
    for _ in range(MAX_TRAILING_WORDS):
        wrapped = TRAILING_TEXT.search(text)
        if wrapped and wrapped.start() > 0:
            words = wrapped.group(1).split()
            if words and all(is_unit_word(w, marked_as_text=True) for w in words):
                text = text[: wrapped.start()].rstrip()
                continue
        plain = TRAILING_WORD.search(text)
        if plain and plain.start() > 0 and is_unit_word(plain.group(1)):
            text = text[: plain.start()].rstrip()
            continue
        break
    return text


def _multiplied(text: str) -> str:
    """'1.5 million' -> '1500000', '5 dozen' -> '60' (exact decimal arithmetic)."""
    parts = text.rsplit(None, 1)
    if len(parts) != 2 or parts[1].lower() not in MULTIPLIERS or not PLAIN_NUMBER.fullmatch(parts[0]):
        return text
    try:
        value = Decimal(parts[0]) * MULTIPLIERS[parts[1].lower()]
    except InvalidOperation:
        return text
    return format(value.normalize(), "f")


def last_boxed(solution: str) -> str:
    """Content of the last \\boxed{...} (or \\fbox{...}) in a solution, nested braces included."""
    starts = [m.end() for m in BOX_OPEN.finditer(solution)]
    if not starts:
        raise ValueError("no \\boxed{} in the solution")
    start = starts[-1]
    depth = 1
    for index in range(start, len(solution)):
        char = solution[index]
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return solution[start:index].strip()
    raise ValueError("unbalanced braces in the last \\boxed{}")


def _matching_braces(text: str) -> dict[int, int]:
    """Index of each "{" in text mapped to the index of the "}" that closes it (unclosed ones absent)."""
    opened: list[int] = []
    closing: dict[int, int] = {}
    for index, char in enumerate(text):
        if char == "{":
            opened.append(index)
        elif char == "}" and opened:
            closing[opened.pop()] = index
    return closing


def boxed_spans(text: str) -> list[tuple[int, int, int]]:
    """(start, content start, end) of every outermost \\boxed{...} or \\fbox{...} in text, left to
    right, where text[content start : end - 1] is the content; an opener never closed is skipped.
    One pass over the text: linear time."""
    closing = _matching_braces(text)
    spans: list[tuple[int, int, int]] = []
    for match in BOX_OPEN.finditer(text):
        close = closing.get(match.end() - 1)
        if close is not None and (not spans or match.start() >= spans[-1][2]):
            spans.append((match.start(), match.end(), close + 1))
    return spans


def _unwrapped(text: str) -> str:
    """The answer without the wrappers that enclose all of it: \\boxed{}, $..$, \\(..\\), \\[..\\] and
    the text commands, nested ones too, and a trailing period."""
    for _ in range(MAX_WRAPPERS):
        text = text.rstrip(".").rstrip()
        opener = WRAPPER_OPEN.match(text)
        if opener and text.endswith("}") and _matching_braces(text).get(opener.end() - 1) == len(text) - 1:
            text = text[opener.end() : -1].strip()
            continue
        delimited = MATH_DELIMITERS.fullmatch(text)
        if not delimited:
            break
        text = next(group for group in delimited.groups() if group is not None).strip()
    return text


def normalise_answer(answer: str) -> str:
    """A final answer rewritten for math-verify (see the module docstring); plain text in, out."""
    text = STYLE_COMMANDS.sub("", _unicode(answer.strip())).strip()
    text = MINUS_COMMANDS.sub("-", text)
    text = TEXT_CONSTANT.sub(lambda m: m.group(1) + (" " if m.group(1) == "\\pi" else ""), text)
    text = _unwrapped(text)
    text = DEGREE.sub(r"^\\circ", text)
    text = GROUPED_DIGITS.sub(lambda m: SEPARATOR_RE.sub("", m.group()), text)
    text = NUMBER_COMMA.sub(".", text)
    text = LEADING_CURRENCY.sub(r"\1", text)
    text = TRAILING_CURRENCY.sub("", text)
    text = re.sub(r"^([-+])\s+", r"\1", text)
    text = _strip_units(text)
    text = _multiplied(text)
    text = LEADING_CURRENCY.sub(r"\1", text).rstrip(".").strip()
    if GROUPED_NUMBER.fullmatch(text):
        text = text.replace(",", "").replace(" ", "")
    return PLAIN_PI.sub(r"\\pi ", text).strip()


def decimal_comma_reading(normalised: str) -> str | None:
    """'0.25' for a normalised answer that is one number with one comma grouping no thousands
    ('0,25', '3,14159', '-2,1'), else None. Such an answer is either a number with a decimal comma
    or a list of two numbers; normalise_answer keeps the list reading, this is the other one."""
    return normalised.replace(",", ".") if COMMA_NUMBER.fullmatch(normalised) else None


OPENING_BRACKETS, CLOSING_BRACKETS = "([{", ")]}"


def list_items(normalised: str) -> list[str]:
    """The values a normalised answer lists, split at its top-level commas ('2, 5' and '\\{2, 5\\}'
    give '2' and '5'); a tuple or an interval ('(2, 5)', '[2, 5)') is one value."""
    text = normalised
    if text.startswith("\\{") and text.endswith("\\}"):
        text = text[2:-2]
    items, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char in OPENING_BRACKETS:
            depth += 1
        elif char in CLOSING_BRACKETS:
            depth = max(depth - 1, 0)
        elif char == "," and depth == 0:
            items.append(text[start:index].strip())
            start = index + 1
    if not items:
        return [normalised]
    return [*items, text[start:].strip()]


BASE_NUMBER = re.compile(r"(\d[0-9A-Za-z]*)_\{?(\d+)\}?")
ASSIGNMENT = re.compile(r"[A-Za-z]\s*=([^=]+)")


def assigned_value(normalised: str) -> str:
    """The value of an answer that assigns it to one letter ('x = 5' -> '5'), else the answer. For
    the rules that compare text (words, plain numbers, bases); math-verify reads 'x = 5' itself."""
    match = ASSIGNMENT.fullmatch(normalised)
    return match.group(1).strip() if match else normalised


def based_number(normalised: str) -> tuple[str, str] | None:
    """(digits, base) of an answer written in a base ('52_8', '4210_{5}'), else None. math-verify
    drops the subscript, so '52_9' would pass for '52_8'."""
    match = BASE_NUMBER.fullmatch(normalised)
    return (match.group(1).upper(), match.group(2)) if match else None


def plain_numbers_equal(prediction: str, gold: str) -> bool | None:
    """Exact comparison when both normalised answers are plain decimal numbers ('0.0000672' and
    '0.0000673' differ, though math-verify rounds both to 6 places); None when either is not one."""
    if not (PLAIN_NUMBER.fullmatch(prediction) and PLAIN_NUMBER.fullmatch(gold)):
        return None
    return Decimal(prediction) == Decimal(gold)


def word_answer(normalised: str) -> str | None:
    """The lower-cased word(s) of an answer that is text rather than mathematics ('Evelyn', 'east'),
    else None. Single letters (multiple-choice options, variables) are mathematics."""
    if WORD_ANSWER.fullmatch(normalised) and normalised.lower() not in MATH_NAMES:
        return normalised.lower()
    return None
