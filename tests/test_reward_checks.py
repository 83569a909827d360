"""A reward function that raises, or returns NaN or inf, is named with the completion that caused it;
nonfinite_rewards="missing" scores such a completion as TRL scores None."""

import inspect
import math

import pytest
import torch
from conftest import tiny_config
from datasets import Dataset
from trl import GRPOTrainer

from gtpo.app.models import build_tiny_model, build_tokenizer
from gtpo.config import GTPOConfig
from gtpo.reward_checks import RewardFunctionError, check_prompt_column, checked_reward_function
from gtpo.trainer import GTPOTrainer

torch.set_num_threads(1)

COMPLETIONS = ["<answer>1</answer>", "two", "a third completion, rather long " * 4, "four"]


def divide(completions, **kwargs):
    return [1.0 / (len(c) - 3) for c in completions]  # "two" (index 1) has 3 characters


def one_at_a_time(completions, **kwargs):
    if len(completions) > 1:
        raise RuntimeError("a batch of completions")
    return [1.0]


def returning(*values):
    def reward(completions, **kwargs):
        return list(values)

    return reward


def test_the_first_failing_completion_is_named_with_the_exception():
    checked = checked_reward_function(divide, "divide")
    with pytest.raises(RewardFunctionError) as error:
        checked(prompts=["p"] * 4, completions=COMPLETIONS, completion_ids=[[1]] * 4, answer=["1"] * 4)
    assert str(error.value) == (
        "reward function 'divide' raised on completion 1 ('two'): ZeroDivisionError: float division by zero"
    )
    assert isinstance(error.value.__cause__, ZeroDivisionError)


def test_each_completion_is_retried_with_its_own_columns():
    seen = []

    def by_answer(completions, answer, **kwargs):
        seen.append((list(completions), list(answer), kwargs["trainer_state"]))
        if "x" in answer:
            raise KeyError("x")
        return [0.0] * len(completions)

    with pytest.raises(
        RewardFunctionError, match=r"raised on completion 2 \('a third.*\.\.\.'\): KeyError: 'x'"
    ):
        checked_reward_function(by_answer, "by_answer")(
            completions=COMPLETIONS, answer=["1", "2", "x", "4"], trainer_state="state"
        )
    assert seen[1:] == [([c], [a], "state") for c, a in zip(COMPLETIONS[:3], ["1", "2", "x"], strict=True)]


def test_a_failure_no_single_completion_reproduces_is_reported_for_the_batch():
    with pytest.raises(RewardFunctionError) as error:
        checked_reward_function(one_at_a_time, "one_at_a_time")(completions=COMPLETIONS[:3])
    assert str(error.value) == (
        "reward function 'one_at_a_time' raised on the batch of 3 completions (but on none of them "
        "alone): RuntimeError: a batch of completions"
    )


def test_a_raise_is_retried_on_at_most_max_recalls_completions():
    calls = []

    def fails_on_the_seventh(completions, **kwargs):
        calls.append(len(completions))
        if len(completions) > 1 or completions[0] == "c6":
            raise ValueError("judge said no")
        return [1.0]

    batch = [f"c{i}" for i in range(8)]
    with pytest.raises(RewardFunctionError) as error:
        checked_reward_function(fails_on_the_seventh, "judge")(completions=batch)
    assert str(error.value) == (
        "reward function 'judge' raised on the batch of 8 completions (but on none of the first 4 alone): "
        "ValueError: judge said no"
    )
    assert calls == [8, 1, 1, 1, 1]  # the default, MAX_RECALLS
    calls.clear()
    with pytest.raises(RewardFunctionError, match=r"raised on completion 6 \('c6'\): ValueError"):
        checked_reward_function(fails_on_the_seventh, "judge", max_recalls=8)(completions=batch)
    assert calls == [8, *[1] * 7]
    calls.clear()
    with pytest.raises(RewardFunctionError, match=r"\(but on no completion tried alone\)"):
        checked_reward_function(fails_on_the_seventh, "judge", max_recalls=0)(completions=batch)
    assert calls == [8]


@pytest.mark.parametrize(
    ("returned", "shown"),
    [(None, "None"), (0.5, "0.5"), ("1.0", "'1.0'"), ({"reward": 1.0}, "{'reward': 1.0}"),
     (torch.tensor(1.0), "tensor(1.)")],
)  # fmt: skip
def test_a_return_that_is_not_a_list_is_named_not_retried(returned, shown):
    calls = []

    def reward(completions, **kwargs):
        calls.append(len(completions))
        return returned

    with pytest.raises(RewardFunctionError) as error:
        checked_reward_function(reward, "r")(completions=COMPLETIONS)
    assert str(error.value) == (
        f"reward function 'r' returned {shown}, not a list of 4 rewards (one number or None per completion)"
    )
    assert calls == [4]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            (1.0, math.nan, 2.0, 3.0),
            "reward function 'r' returned nan for completion 1 ('two'); rewards must be",
        ),
        ((1.0, 2.0, 3.0, -math.inf), "reward function 'r' returned -inf for completion 3 ('four')"),
        ((1e39, 0.0, 0.0, 0.0), "returned 1e+39 for completion 0"),  # beyond float32, where TRL keeps rewards
        ((torch.tensor(math.nan), 0.0, 0.0, 0.0), "returned nan for completion 0"),
        ((0.0, "10", 0.0, 0.0), "returned '10' for completion 1 ('two'); a reward is a number or None"),
        ((0.0, 0.0, 0.0), "reward function 'r' returned 3 rewards for 4 completions"),
    ],
)
def test_bad_reward_values_are_rejected(values, message):
    with pytest.raises(RewardFunctionError) as error:
        checked_reward_function(returning(*values), "r")(completions=COMPLETIONS)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_mode_turns_nonfinite_rewards_into_none_and_keeps_the_rest():
    rewards = returning(1, None, math.nan, torch.tensor(-math.inf))
    assert checked_reward_function(rewards, "r", "missing")(completions=COMPLETIONS) == [1, None, None, None]
    assert checked_reward_function(returning(1, None, 2.5, True), "r")(completions=COMPLETIONS) == [
        1,
        None,
        2.5,
        True,
    ]
    with pytest.raises(ValueError, match="nonfinite must be one of"):
        checked_reward_function(divide, "divide", "zero")


def test_the_option_is_validated_like_the_other_gtpo_fields(tmp_path):
    with pytest.raises(
        ValueError, match=r"GTPOConfig.nonfinite_rewards: must be one of \('error', 'missing'\)"
    ):
        GTPOConfig(output_dir=str(tmp_path), nonfinite_rewards="zero", use_cpu=True, report_to="none")


# ---------------------------------------------------------------------------------------------
# Through GTPOTrainer, and the TRL internal the check relies on
# ---------------------------------------------------------------------------------------------


def test_trl_still_calls_reward_functions_where_gtpo_checks_them():
    """GTPOTrainer._calculate_rewards swaps checked wrappers into self.reward_funcs around TRL's
    method; a TRL version that scores elsewhere, or calls the functions differently, fails here."""
    parameters = list(inspect.signature(GRPOTrainer._calculate_rewards).parameters)
    assert parameters == ["self", "inputs", "prompts", "completions", "completion_ids_list"]
    source = inspect.getsource(GRPOTrainer._calculate_rewards)
    assert "zip(self.reward_funcs, self.reward_processing_classes, self.reward_func_names" in source
    assert (
        "prompts=prompts, completions=completions, completion_ids=completion_ids_list, **reward_kwargs"
        in source
    )
    assert "reward if reward is not None else torch.nan" in source  # None is "missing"
    scoring = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "self._calculate_rewards(inputs, prompts, completions, completion_ids_list)" in scoring
    assert ".nansum(dim=1)" in scoring and "torch.nan_to_num(advantages, nan=0.0)" in scoring


def trap_divide(completions, trap, **kwargs):
    """Raises on a completion whose row's trap is "raise"."""
    return [1.0 / (0 if t == "raise" else 1) for t in trap]


def trap_nan(completions, trap, **kwargs):
    """NaN for a completion whose row's trap is "nan"; spread elsewhere, so advantages are not 0."""
    return [
        math.nan if t == "nan" else float(len(c[0]["content"]) % 3)
        for c, t in zip(completions, trap, strict=True)
    ]


def _trainer(tmp_path, reward_funcs, traps=("", "nan"), **overrides) -> GTPOTrainer:
    tokenizer = build_tokenizer()
    config = tiny_config(tmp_path, **overrides)
    rows = [
        {"prompt": [{"role": "user", "content": f"What is {i} + {i}?"}], "trap": t}
        for i, t in enumerate(traps)
    ]
    return GTPOTrainer(
        model=build_tiny_model(tokenizer, size="test", seed=0),
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
    )


def _group(traps):
    return [{"prompt": [{"role": "user", "content": "What is 1 + 1?"}], "trap": t} for t in traps]


def test_trainer_names_the_reward_function_and_the_completion(tmp_path):
    trainer = _trainer(tmp_path, [trap_nan, trap_divide])
    trainer.model.train()
    with pytest.raises(
        RewardFunctionError, match=r"^reward function 'trap_divide' raised on completion 2 \("
    ):
        trainer._generate_and_score_completions(_group(["", "", "raise", ""]))
    with pytest.raises(
        RewardFunctionError, match=r"^reward function 'trap_nan' returned nan for completion 3 \("
    ):
        trainer._generate_and_score_completions(_group(["", "", "", "nan"]))
    assert trainer.reward_funcs == [trap_nan, trap_divide]  # the user's functions, once the call is over


def test_missing_mode_trains_with_finite_loss_and_parameters(tmp_path):
    trainer = _trainer(tmp_path, trap_nan, nonfinite_rewards="missing")
    trainer.model.train()
    batch = trainer._generate_and_score_completions(_group(["", "nan", "", "nan"]))
    advantages = batch["advantages"]  # GTPO's, per token
    assert torch.isfinite(advantages).all()
    missed = batch["gtpo_sequence_advantages"][[1, 3]]
    assert (missed == 0).all()  # every function missed them: TRL's advantage 0
    # GTPO trains them on the shaping alone, -gamma * <H> (what last_group shows)
    assert all(trainer.last_group["advantages"][row] < 0 for row in (1, 3))

    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and all(math.isfinite(loss) for loss in losses)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_a_dataset_without_a_prompt_column_is_named_in_one_line():
    from datasets import DatasetDict

    questions = Dataset.from_list([{"question": "1 + 1?", "answer": "2"}])
    with pytest.raises(ValueError) as error:
        check_prompt_column(questions)
    assert str(error.value) == (
        "train_dataset has no 'prompt' column (columns: question, answer); the trainer generates from it: "
        "map your question column to 'prompt' (text or chat messages)"
    )
    with pytest.raises(ValueError, match=r"^my_set is a DatasetDict \(splits: train\); pass one split$"):
        check_prompt_column(DatasetDict(train=questions), "my_set")
    check_prompt_column(questions.rename_column("question", "prompt"))


def test_gtpo_trainer_refuses_a_dataset_without_a_prompt_column(tmp_path):
    tokenizer = build_tokenizer()
    questions = Dataset.from_list([{"question": "1 + 1?", "answer": "2"}] * 4)
    with pytest.raises(ValueError) as error:
        GTPOTrainer(
            model=build_tiny_model(tokenizer, size="test"),
            reward_funcs=trap_nan,
            args=tiny_config(tmp_path),
            train_dataset=questions,
            processing_class=tokenizer,
        )
    assert str(error.value).startswith("train_dataset has no 'prompt' column (columns: question, answer);")
    assert "\n" not in str(error.value)
