"""The grader against its labelled case set (tests/grading_cases.py, built from the real gold answers
in ../shared/data): at least 99% agreement, and the cases it still gets wrong are exactly those
listed, with their reasons, in docs/tasks.md."""

import collections
import re
from pathlib import Path

import pytest
from grading_cases import all_cases

from gtpo.tasks.rewards import answers_equal, answers_equal_many

DOCS = Path(__file__).resolve().parents[1] / "docs" / "tasks.md"


def documented_disagreements() -> set[str]:
    """Case keys in the table of docs/tasks.md's 'Known grader disagreements' section."""
    section = DOCS.read_text().split("### Known grader disagreements", 1)[1].split("\n#", 1)[0]
    return set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.MULTILINE))


@pytest.mark.slow  # 4,772 graded cases: seconds, not milliseconds
def test_grader_agrees_with_the_labelled_case_set(shared_data):
    cases = all_cases(shared_data)
    kinds = collections.Counter(case.kind for case in cases)
    assert len(cases) >= 1000 and len({case.key for case in cases}) == len(cases)
    assert 0.3 <= sum(not case.expected for case in cases) / len(cases) <= 0.7
    assert len(kinds) >= 60
    verdicts = answers_equal_many([(case.prediction, case.gold) for case in cases])
    wrong = {case.key for case, verdict in zip(cases, verdicts, strict=True) if verdict != case.expected}
    assert 1 - len(wrong) / len(cases) >= 0.99
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
    ],
)
def test_grader_examples_beyond_the_data(prediction, gold, expected):
    assert answers_equal(prediction, gold) is expected
