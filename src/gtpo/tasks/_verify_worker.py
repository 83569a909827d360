"""math-verify worker, started by gtpo.tasks.rewards: reads one request per line on stdin, a JSON list
of [prediction, gold] pairs, and answers each line with one character per pair, '1' (equal) or '0'
('!' for a line it cannot read). The parent kills it when a request exceeds its time limit.

Answers are model output, so they are parsed as LaTeX only. math-verify's other extraction target,
ExprExtractionConfig, hands the matched text to sympy's parse_expr, which runs Python's eval; the
LaTeX parser (latex2sympy2_extended, an ANTLR grammar) builds sympy objects itself and hands sympy's
string parser nothing but the digits of a number token. tests/test_security.py checks both.
"""

import json
import logging
import sys
from functools import lru_cache

from math_verify import LatexExtractionConfig, parse, verify
from math_verify.parser import NormalizationConfig

# The parent enforces the time limit; math-verify's own signal-based one is off.
logging.getLogger("math_verify").setLevel(logging.ERROR)

# math-verify's own unit removal is off: it drops single letters ("3c", "5 m" read as 3 and 5), so
# a variable after a number vanished. Units are removed before, by gtpo.tasks.grading's rules.
LATEX_ONLY = (
    LatexExtractionConfig(
        normalization_config=NormalizationConfig(
            basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
        )
    ),
)


@lru_cache(maxsize=4096)
def parsed(text: str):
    # As inline math first ("x^2 + 1", "18"), then as it stands (text with its own $...$ or \[...\]).
    return parse(f"${text}$", extraction_config=LATEX_ONLY, parsing_timeout=None) or parse(
        text, extraction_config=LATEX_ONLY, parsing_timeout=None
    )


def equal(prediction: str, gold: str) -> bool:
    try:
        gold_parsed, prediction_parsed = parsed(gold), parsed(prediction)
        # A relation may be compared with a set either way round ("x \geq 5" and "[5, \infty)").
        return bool(
            gold_parsed
            and prediction_parsed
            and verify(gold_parsed, prediction_parsed, allow_set_relation_comp=True, timeout_seconds=None)
        )
    except Exception:
        return False


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            pairs = json.loads(line)
            answer = "".join("1" if equal(str(prediction), str(gold)) else "0" for prediction, gold in pairs)
        except (ValueError, TypeError):
            answer = "!"
        print(answer, flush=True)


if __name__ == "__main__":
    main()
