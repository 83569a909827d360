"""The private TRL and transformers names gtpo uses (gtpo.trainer.PRIVATE_NAMES, docs/training.md)
still exist with the shape gtpo relies on. A TRL or transformers release that removes or changes
one fails here, naming it."""

import inspect

import pytest
from conftest import tiny_config
from datasets import Dataset
from transformers import Trainer
from trl import GRPOTrainer

from gtpo.app.models import build_tiny_model, build_tokenizer
from gtpo.trainer import _FORWARD_KEYS, PRIVATE_NAMES, GTPOTrainer

# Methods: their first parameters, which gtpo passes (by position or name) or receives.
METHOD_PARAMETERS: dict[str, tuple[str, ...]] = {
    "GRPOTrainer._generate_and_score_completions": ("self", "inputs"),
    "GRPOTrainer._get_per_token_logps_and_entropies": (
        "self",
        "model",
        "input_ids",
        "attention_mask",
        "logits_to_keep",
        "batch_size",
        "compute_entropy",
        "compute_aux_loss",
        *_FORWARD_KEYS,
    ),
    "GRPOTrainer._calculate_rewards": ("self", "inputs", "prompts", "completions", "completion_ids_list"),
    "GRPOTrainer._get_train_sampler": ("self", "dataset"),
    "Trainer._get_output_dir": ("self", "trial"),
    "Trainer._push_from_checkpoint": ("self", "checkpoint_folder"),
    "Trainer._save_checkpoint": ("self", "model", "trial"),
    "Trainer._load_optimizer_and_scheduler": ("self", "checkpoint"),
}
CLASS_ATTRIBUTES: dict[str, type] = {
    "GRPOTrainer._name": str,
    "GRPOTrainer._paper": dict,
    "GRPOTrainer._tag_names": list,
}
INSTANCE_ATTRIBUTES: dict[str, type] = {
    "GRPOTrainer._metrics": dict,
    "GRPOTrainer._logs": dict,
    "GRPOTrainer._step": int,
    "GRPOTrainer._buffered_inputs": object,
}
OWNERS = {"GRPOTrainer": GRPOTrainer, "Trainer": Trainer}


def _owner_and_attribute(name: str):
    owner, attribute = name.split(".")
    return OWNERS[owner], attribute


def test_every_private_name_is_checked():
    checked = set(METHOD_PARAMETERS) | set(CLASS_ATTRIBUTES) | set(INSTANCE_ATTRIBUTES)
    assert checked == set(PRIVATE_NAMES)


@pytest.mark.parametrize("name", sorted(METHOD_PARAMETERS))
def test_private_method_keeps_its_signature(name):
    owner, attribute = _owner_and_attribute(name)
    method = getattr(owner, attribute, None)
    assert callable(method), f"{name} no longer exists: gtpo relies on it ({PRIVATE_NAMES[name]})"
    parameters = tuple(inspect.signature(inspect.unwrap(method)).parameters)
    expected = METHOD_PARAMETERS[name]
    assert parameters[: len(expected)] == expected, (
        f"{name} changed its parameters to {parameters}; gtpo relies on {expected} ({PRIVATE_NAMES[name]})"
    )


@pytest.mark.parametrize("name", sorted(CLASS_ATTRIBUTES))
def test_private_class_attribute_exists(name):
    owner, attribute = _owner_and_attribute(name)
    value = getattr(owner, attribute, None)
    assert isinstance(value, CLASS_ATTRIBUTES[name]), f"{name} is gone or changed type: {value!r}"
    if attribute == "_paper":
        assert {"title", "id", "citation"} <= set(value), f"{name} lost a key gtpo sets: {value!r}"


def _tiny_trainer(tmp_path) -> GTPOTrainer:
    tokenizer = build_tokenizer()
    return GTPOTrainer(
        model=build_tiny_model(tokenizer, size="test"),
        reward_funcs=lambda completions, **kwargs: [0.0] * len(completions),
        args=tiny_config(tmp_path),
        train_dataset=Dataset.from_list([{"prompt": "1 + 1 ="}] * 4),
        processing_class=tokenizer,
    )


def test_private_instance_attributes_exist(tmp_path):
    trainer = _tiny_trainer(tmp_path)
    for name, kind in INSTANCE_ATTRIBUTES.items():
        attribute = name.split(".")[1]
        assert hasattr(trainer, attribute), (
            f"{name} no longer exists: gtpo relies on it ({PRIVATE_NAMES[name]})"
        )
        assert isinstance(getattr(trainer, attribute), kind), f"{name} changed type"
    assert {"train", "eval"} <= set(trainer._metrics), "GRPOTrainer._metrics is no longer keyed by mode"
    table = trainer._logs.get("advantages")
    assert hasattr(table, "__setitem__") and table.maxlen == trainer.args.generation_batch_size, (
        "GRPOTrainer._logs['advantages'] is no longer a deque holding one generation batch"
    )


def test_model_card_cites_gtpo(tmp_path):
    trainer = _tiny_trainer(tmp_path)
    trainer.create_model_card(model_name="tiny")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "trained with GTPO, a method introduced in [GTPO: Stabilizing" in card
    assert "2508.03772" in card and "simoni2025gtpo" in card
    assert "DeepSeekMath" not in card and "2402.03300" not in card
