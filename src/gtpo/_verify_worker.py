"""math-verify worker, started by gtpo.rewards: reads [prediction, gold] JSON lines on stdin and
answers 'true' or 'false' per line. The parent kills it when a check exceeds its time limit."""

import json
import logging
import sys
from functools import lru_cache

from math_verify import parse, verify

# The parent enforces the time limit; math-verify's own signal-based one is off.
logging.getLogger("math_verify").setLevel(logging.ERROR)


@lru_cache(maxsize=4096)
def parsed(text: str):
    # LaTeX mode first ("x^2 + 1" would otherwise be read as the number 1), then plain text.
    return parse(f"${text}$", parsing_timeout=None) or parse(text, parsing_timeout=None)


def equal(prediction: str, gold: str) -> bool:
    try:
        gold_parsed, prediction_parsed = parsed(gold), parsed(prediction)
        return bool(
            gold_parsed and prediction_parsed and verify(gold_parsed, prediction_parsed, timeout_seconds=None)
        )
    except Exception:
        return False


def main() -> None:
    print("ready", flush=True)
    for line in sys.stdin:
        try:
            prediction, gold = json.loads(line)
            result = equal(str(prediction), str(gold))
        except (ValueError, TypeError):
            result = False
        print("true" if result else "false", flush=True)


if __name__ == "__main__":
    main()
