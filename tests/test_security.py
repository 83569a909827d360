"""Model output is untrusted: it never reaches eval/exec, or sympy's string parser with anything but
a number, and injection attempts score 0 without running."""

import ast
import re
from pathlib import Path

import pytest

from gtpo.app.evaluation.metrics import majority_answer, score_sample
from gtpo.tasks.rewards import answers_equal, correctness_reward, lenient_correctness_reward

SOURCE = Path(__file__).resolve().parents[1] / "src" / "gtpo"
NUMERAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


def injections(sentinel: Path) -> list[str]:
    command = f"touch {sentinel}"
    return [
        f"__import__('os').system('{command}')",
        f'\\boxed{{__import__("os").system("{command}")}}',
        f"(lambda: __import__('os').system('{command}'))()",
        f"1 + __import__('os').system('{command}')",
        f"$__import__('os').system('{command}')$",
        f"\\[ __import__('os').system('{command}') \\]",
        f"eval(\"__import__('os').system('{command}')\")",
        f"exec(\"import os; os.system('{command}')\")",
        f"().__class__.__bases__[0].__subclasses__()[0]('{command}')",
        f"[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen'][0]('{command}')",
        f"\\operatorname{{__import__}}('os').system('{command}')",
        f"\\text{{__import__('os').system('{command}')}}",
        f"Symbol('x').__class__.__init__.__globals__['os'].system('{command}')",
        f"2*3 + 1\n__import__('os').system('{command}')",
        f"compile(\"__import__('os').system('{command}')\", 'x', 'exec')",
    ]


GOLD = "\\frac{7}{9}"


def test_injections_score_zero_and_run_nothing(tmp_path):
    # A gold no path contains: the lenient matcher accepts any text containing the gold, and the
    # attempts carry tmp_path, whose numbered directory (pytest-5, ...) holds digits.
    sentinel = tmp_path / "pwned"
    attempts = injections(sentinel)
    completions = [f"<reasoning>r</reasoning>\n<answer>{text}</answer>" for text in attempts]
    assert correctness_reward(completions, answer=[GOLD] * len(attempts)) == [0.0] * len(attempts)
    assert lenient_correctness_reward(completions, answer=[GOLD] * len(attempts)) == [0.0] * len(attempts)
    for text in attempts:
        assert answers_equal(GOLD, text) is False  # a hostile gold answer (datasets are files too)
        assert score_sample(f"<reasoning>r</reasoning><answer>{text}</answer>", GOLD)["correct"] is False
    assert majority_answer(attempts) == attempts[0]
    assert not sentinel.exists()


def test_sympy_string_parsing_sees_nothing_but_numbers(tmp_path, monkeypatch):
    """sympy's parse_expr (behind sympify of a string) ends in eval. Run the worker's check in this
    process with parse_expr spied on: whatever the answer, only a number token may reach it. With
    math-verify's default extraction targets this fails ('2*3', '1)()' from the answers below)."""
    import math_verify.parser
    import sympy.parsing.sympy_parser
    import sympy.physics.units  # sympifies its own prefix names when first imported: before the spy

    from gtpo.tasks import _verify_worker

    seen = []
    parse_expr = sympy.parsing.sympy_parser.parse_expr

    def spy(text, *args, **kwargs):
        seen.append(text)
        return parse_expr(text, *args, **kwargs)

    monkeypatch.setattr(sympy.parsing.sympy_parser, "parse_expr", spy)
    monkeypatch.setattr(math_verify.parser, "parse_expr", spy)
    for cache in (
        _verify_worker.parsed,
        math_verify.parser.parse_latex_cached,
        math_verify.parser.parse_expr_cached,
    ):
        cache.cache_clear()
    ordinary = [
        "18",
        "2*3 + 1",
        "(lambda: 1)()",
        "1.5e3",
        "\\frac{1}{2}",
        "x^2+1",
        "50\\%",
        "(3, \\frac{\\pi}{2})",
    ]
    for text in ordinary + injections(tmp_path / "pwned"):
        _verify_worker.equal(text, "7")
        _verify_worker.equal("7", text)
    assert seen, "the spy saw no call: sympy's number parsing moved, so this test no longer checks anything"
    assert all(isinstance(text, str) and NUMERAL.fullmatch(text.strip()) for text in seen), seen
    assert _verify_worker.equal("\\frac{1}{2}", "0.5") and _verify_worker.equal("6", "2*3")
    assert not (tmp_path / "pwned").exists()


FORBIDDEN_NAMES = {"eval", "exec", "compile", "__import__", "sympify", "parse_expr", "parse_latex"}
FORBIDDEN_ATTRIBUTES = {"sympify", "parse_expr", "parse_latex", "S"}


@pytest.mark.parametrize("path", sorted(SOURCE.rglob("*.py")), ids=lambda p: str(p.relative_to(SOURCE)))
def test_the_source_has_no_eval_exec_or_sympify(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            assert not (isinstance(func, ast.Name) and func.id in FORBIDDEN_NAMES), (path, node.lineno)
            assert not (isinstance(func, ast.Attribute) and func.attr in FORBIDDEN_ATTRIBUTES), (
                path,
                node.lineno,
            )
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            )
            assert not any(m.split(".")[0] in ("sympy", "latex2sympy2_extended") for m in modules), path


def test_math_verify_is_only_asked_to_read_latex():
    tree = ast.parse((SOURCE / "tasks" / "_verify_worker.py").read_text())
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "parse"]
    assert calls and all(
        any(k.arg == "extraction_config" and getattr(k.value, "id", None) == "LATEX_ONLY" for k in c.keywords)
        for c in calls
    )
    from math_verify import LatexExtractionConfig

    from gtpo.tasks import _verify_worker

    assert all(isinstance(target, LatexExtractionConfig) for target in _verify_worker.LATEX_ONLY)
