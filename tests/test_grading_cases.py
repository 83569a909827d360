"""The grader against its labelled case set (tests/grading_cases.py, built from the real gold answers
in ../shared/data): at least 99.9% agreement, and the cases it still gets wrong are exactly those
listed, with their reasons, in docs/tasks.md."""

import collections
import re
from pathlib import Path

import pytest
from grading_cases import MODEL_OUTPUT_CLASSES, all_cases

from gtpo.tasks.rewards import answers_equal, answers_equal_many, final_answer

DOCS = Path(__file__).resolve().parents[1] / "docs" / "tasks.md"


def documented_disagreements() -> set[str]:
    """Case keys in the table of docs/tasks.md's 'Known grader disagreements' section."""
    section = DOCS.read_text().split("### Known grader disagreements", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))


@pytest.mark.slow  # about 11,800 graded cases: seconds, not milliseconds
def test_grader_agrees_with_the_labelled_case_set(shared_data):
    cases = all_cases(shared_data)
    kinds = collections.Counter(case.kind for case in cases)
    assert len(cases) >= 1000 and len({case.key for case in cases}) == len(cases)
    assert 0.3 <= sum(not case.expected for case in cases) / len(cases) <= 0.7
    assert len(kinds) >= 60
    for name, prefixes in MODEL_OUTPUT_CLASSES.items():  # each class: acceptances and near misses
        verdicts = collections.Counter(case.expected for case in cases if case.kind.startswith(prefixes))
        assert verdicts[True] >= 10 and verdicts[False] >= 10, (name, verdicts)
    predictions = [
        case.prediction if case.answer_format is None else final_answer(case.prediction, case.answer_format)
        for case in cases
    ]
    verdicts = answers_equal_many(
        [(prediction, case.gold) for prediction, case in zip(predictions, cases, strict=True)]
    )
    wrong = {case.key for case, verdict in zip(cases, verdicts, strict=True) if verdict != case.expected}
    assert 1 - len(wrong) / len(cases) >= 0.999
    assert wrong == documented_disagreements()


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("1.5 million", "1500000", True),
        ("2 dozen", "24", True),
        ("10 thousand", "10", False),
        ("1½", "\\frac{3}{2}", True),
        ("x³-1", "x^3 - 1", True),
        ("2√3", "2\\sqrt{3}", True),
        ("5 \\text{m}", "5", True),  # LaTeX marks the letter as text: a unit
        ("5\\,\\mathrm{kg}", "5", True),
        ("5m", "5", False),  # a bare letter is a variable
        ("72 °F", "72", True),
        ("-5 °C", "-5", True),
        ("3\\,000\\,000", "3000000", True),
        ("0.0000672", "6.72 \\times 10^{-5}", True),
        ("0.0000673", "0.0000672", False),
        ("Evelyn", "\\text{Evelyn}", True),
        ("Evlyen", "\\text{Evelyn}", False),  # math-verify alone reads both as products of symbols
        ("52", "52_8", True),
        ("42", "52_8", False),
        ("52_9", "52_8", False),
        ("\\(\\frac{1}{2}\\)", "0.5", True),
        ("$$-3$$", "-3", True),
        ("\\$1{,}000.", "1000", True),
        ("25", "0,25", False),  # a decimal comma never vanishes: 0,25 is the list 0, 25 (or 0.25)
        ("025", "0,25", False),
        ("0,25", "0,25", True),
        ("250", "0,250", False),  # a zero first group groups no thousands
        ("250", "0{,}250", False),
        ("0.25", "0{,}25", True),  # LaTeX's number comma is a decimal comma
        ("0,25", "\\frac{1}{4}", True),  # a prediction with a decimal comma is read both ways
        ("-2, 1", "-2,1", True),
        ("-2.1", "-2,1", False),  # a gold's plain comma is a list: MATH writes roots so
        ("1,250", "1.25", False),  # three digits after a comma group thousands
        ("7\\textbf{ cm}", "7", True),
        ("7\\textnormal{ kg}", "7", True),
        ("7\\operatorname{ kg}", "8", False),
        ("1-\\frac{1}{\\mathrm{e}}", "1-\\frac{1}{e}", True),
        ("\\mathrm{e}^{2}", "7.389056", True),
        ("2\\mathrm{i}+1", "1+2i", True),
        ("\\mathrm{\\pi} r^2", "\\pi r^2", True),
        ("\\mathrm{e}", "\\pi", False),
        ("x \\geq 5", "[5, \\infty)", True),  # a relation and a set, either way round
        ("x > 5", "[5, \\infty)", False),
        ("\\boxed{2} and \\boxed{5}", "2, 5", True),
        ("\\boxed{5}, \\boxed{2}", "\\{2, 5\\}", True),
        ("\\boxed{2} and \\boxed{5}", "(2, 5)", False),  # a tuple is one value
        ("\\boxed{2} and \\boxed{5}", "5", False),
        ("\\boxed{\\frac{1}{2}} or \\boxed{0.5}", "0.5", True),
        ("\\boxed{2} \\boxed{5}", "\\boxed{5} \\boxed{2}", True),  # two answers compared in majority voting
        ("\\boxed{2} \\boxed{5}", "\\boxed{5} \\boxed{3}", False),
    ],
)
def test_grader_examples_beyond_the_data(prediction, gold, expected):
    assert answers_equal(prediction, gold) is expected
