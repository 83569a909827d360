"""One set of training rules (gtpo.config: BOUNDS, SPECIAL_VALUES, the choices): `gtpo train` and
GTPOConfig in Python refuse the same values with the same one-line problem, naming the field the
user set. The cases are generated from the rule table, so a new rule is covered by itself."""

import math
import typing

import pytest

from gtpo.app.cli import main
from gtpo.app.recipe import RecipeError, load_recipe
from gtpo.config import BOUNDS, SPECIAL_VALUES, GTPOConfig, GTPOConfigError, field_choices, trl_choices


def _number_type(name: str) -> type:
    """int or float: the type a training field's number takes (from GTPOConfig's annotation)."""
    annotation = typing.get_type_hints(GTPOConfig)[name]
    kinds = {arg for arg in (typing.get_args(annotation) or (annotation,)) if arg in (int, float)}
    assert len(kinds) == 1, (name, annotation)
    return kinds.pop()


def _breaking(name: str) -> list[float]:
    """One value just outside each bound of `name`, and NaN for a float field."""
    kind = _number_type(name)
    values = []
    for bound in BOUNDS[name]:
        op, limit = bound.split()
        limit = kind(float(limit))
        values.append({">=": limit - 1, ">": limit, "<=": limit + 1, "<": limit}[op])
    return values + ([math.nan] if kind is float else [])


CASES = [(name, value) for name in BOUNDS for value in _breaking(name)] + [
    (name, "not-a-choice") for name in field_choices()
]


def _cli_problem(name: str, value, tmp_path, capsys) -> str:
    code = main(["train", "--output_dir", str(tmp_path / "run"), f"--{name}", str(value)])
    error = capsys.readouterr().err
    prefix = f"gtpo train: error: --{name}: "
    assert code == 2 and error.startswith(prefix) and error.count("\n") == 1, error
    return error.removeprefix(prefix).rstrip("\n")


@pytest.mark.parametrize(("name", "value"), CASES)
def test_the_cli_and_gtpoconfig_refuse_each_rule_alike(name, value, tmp_path, capsys):
    problem = _cli_problem(name, value, tmp_path, capsys)
    assert problem.startswith("must be")
    with pytest.raises(GTPOConfigError) as error:
        GTPOConfig(output_dir=str(tmp_path / "run"), **{name: value})
    assert str(error.value) == f"GTPOConfig.{name}: {problem}"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"training:\n  {name}: {value}\n")
    with pytest.raises(RecipeError) as from_file:
        load_recipe(recipe)
    assert str(from_file.value) == f"{recipe}: training.{name}: {problem}"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", SPECIAL_VALUES)
def test_a_special_value_passes_both(name, tmp_path):
    value = SPECIAL_VALUES[name][0]
    assert load_recipe(None, [f"--{name}", str(value)]).training[name] == value
    assert getattr(GTPOConfig(output_dir=str(tmp_path), use_cpu=True, **{name: value}), name) == value


def test_a_problem_names_the_field_set_not_one_derived_from_it(tmp_path):
    """loss_temperature is derived from temperature: a bad temperature is named as such."""
    with pytest.raises(GTPOConfigError, match=r"^GTPOConfig\.temperature: must be > 0, got -1$"):
        GTPOConfig(output_dir=str(tmp_path), temperature=-1)


def test_every_rule_names_a_gtpoconfig_field():
    fields = set(typing.get_type_hints(GTPOConfig))
    assert set(BOUNDS) | set(SPECIAL_VALUES) | set(field_choices()) <= fields


def test_trls_choices_are_read_from_trl():
    """TRL refuses other values in its trainer's if/elif chains; a TRL release that moves them
    elsewhere fails here, naming the option whose choices were lost."""
    choices = trl_choices()
    expected = {
        "loss_type": {"grpo", "bnpo", "dr_grpo", "dapo", "cispo", "sapo", "vespo", "luspo"},
        "scale_rewards": {"group", "batch", "none"},
        "multi_objective_aggregation": {"sum_then_normalize", "normalize_then_sum"},
        "importance_sampling_level": {"token", "sequence"},
    }
    for name, values in expected.items():
        assert set(choices.get(name, ())) == values, name
    assert GTPOConfig(output_dir="out", use_cpu=True, scale_rewards=False).scale_rewards == "none"
