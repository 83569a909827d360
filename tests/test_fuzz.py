"""Hypothesis fuzz tests over the two parsers that take outside input: answer parsing (model output
and dataset answers) and config parsing (recipe files and command-line overrides). Whatever the
input, each returns a value of its documented kind or raises its own one-line error."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gtpo.app.options import fields_of
from gtpo.app.recipe import Recipe, RecipeError, load_recipe
from gtpo.tasks.datasets import gsm8k_final_answer, last_boxed, number_answer
from gtpo.tasks.grading import normalise_answer, plain_numbers_equal, word_answer
from gtpo.tasks.rewards import (
    ANSWER_CLOSE,
    ANSWER_OPEN,
    extract_answer,
    final_answer,
    format_score,
    lenient_match,
)

# Text made of the pieces parsers look for, so that examples hit their branches, plus any text.
PIECES = st.sampled_from(
    [ANSWER_OPEN, ANSWER_CLOSE, "<reasoning>", "</reasoning>", "\\boxed{", "\\fbox{", "{", "}", "####",
     ",", ".", "-", "1", "42", "3.0", "\\frac{1}{2}", " ", "\n", "x", "$", "\\%", "é", "\x00",
     "½", "²", "√", "°", "\u2013", "\\,", "{,}", "\\text{", "cm", " apples", " million", "_8", "\\["]
)  # fmt: skip
TEXT = st.one_of(st.text(max_size=200), st.lists(PIECES, max_size=40).map("".join))


@settings(max_examples=300, deadline=None)
@given(TEXT)
def test_answer_parsing_returns_its_kind_or_its_own_error(text):
    answer = extract_answer(text)
    assert answer is None or (isinstance(answer, str) and answer == answer.strip() and answer in text)
    assert format_score(text) in (0.0, 1.0, 1.5, 10.0)
    assert isinstance(lenient_match(answer, "42"), bool)
    assert isinstance(number_answer(text), str)
    for answer_format in ("tags", "boxed", "any"):
        found = final_answer(text, answer_format)
        assert found is None or (isinstance(found, str) and found in text)
    normalised = normalise_answer(text)
    assert isinstance(normalised, str) and normalised == normalised.strip()
    assert plain_numbers_equal(normalised, "42") in (None, True, False)
    assert word_answer(normalised) is None or word_answer(normalised).islower()
    for parse in (last_boxed, gsm8k_final_answer):
        try:
            parsed = parse(text)
        except ValueError as error:
            assert "\n" not in str(error)
        else:
            assert isinstance(parsed, str) and len(parsed) <= len(text)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=100).filter(lambda s: "{" not in s and "}" not in s), TEXT)
def test_the_last_boxed_answer_is_found_whatever_comes_before(inner, before):
    assert last_boxed(f"{before}\\boxed{{{inner}}}") == inner.strip()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=100).filter(lambda s: ANSWER_OPEN not in s and ANSWER_CLOSE not in s), TEXT)
def test_an_answer_block_at_the_end_is_extracted(inner, before):
    assert extract_answer(f"{before}{ANSWER_OPEN}{inner}{ANSWER_CLOSE}  \n") == inner.strip()


FIELD_NAMES = [f.name for f in dataclasses.fields(Recipe)] + [
    path.removeprefix("training.") for path, _ in fields_of(Recipe) if path.startswith("training.")
][:60]
NAMES = st.one_of(
    st.sampled_from(FIELD_NAMES),
    st.sampled_from(["dataset.limit", "dataset.name", "warm_start.steps", "evaluation.temperature",
                     "lora.r", "training.gamma", "training.a.b", "evaluation.dataset.name"]),
    st.text(min_size=1, max_size=20),
)  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(["0", "-1", "1e-4", "nan", "inf", "true", "[]", "[1, 2]", "{a: 1}", "", "gsm8k"]),
    st.text(max_size=20),
)
YAML_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=10), inner, max_size=3)
    ),
    max_leaves=10,
)


def _check(path, overrides) -> None:
    try:
        recipe = load_recipe(path, overrides)
    except RecipeError as error:
        message = str(error)
        assert message and "\n" not in message
    else:
        assert isinstance(recipe, Recipe)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=4))
def test_any_overrides_give_a_recipe_or_one_line_error(pairs):
    argv = [item for name, value in pairs for item in (f"--{name}", value)]
    _check(None, argv)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.dictionaries(st.sampled_from(FIELD_NAMES), YAML_VALUES, max_size=5),
        YAML_VALUES,
        st.text(max_size=200),
    )
)
def test_any_recipe_file_gives_a_recipe_or_one_line_error(tmp_path, content):
    path = tmp_path / "recipe.yaml"
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    _check(path, [])


@pytest.mark.parametrize("text", ["{", "a: [1", "\t- x", "!!python/object:os.system ls"])
def test_unreadable_yaml_is_one_line_naming_the_file(tmp_path, text):
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError, match=str(path)):
        load_recipe(path)
