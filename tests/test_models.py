"""gtpo.app.models: the offline tokenizer, tiny models, model-name resolution and PEFT adapters."""

import json

import pytest
import torch
from conftest import tiny_config
from hypothesis import given, settings
from hypothesis import strategies as st

from gtpo.app.models import (
    TAGS,
    build_tiny_model,
    build_tokenizer,
    check_model_name,
    load_model_and_tokenizer,
)
from gtpo.tasks.prompts import make_prompt

TOKENIZER = build_tokenizer()
PIECES = st.one_of(
    st.characters(min_codepoint=32, max_codepoint=126),
    st.sampled_from(["\n", "\t", *TAGS, *TOKENIZER.all_special_tokens]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(PIECES, max_size=100).map("".join))
def test_tokenizer_round_trips_printable_text_and_tags(text):
    ids = TOKENIZER(text)["input_ids"]
    assert TOKENIZER.decode(ids) == text
    assert ids.count(TOKENIZER.unk_token_id) == text.count(TOKENIZER.unk_token)


def test_tags_and_specials_are_single_tokens():
    tokenizer = build_tokenizer()
    for tag in TAGS:
        assert len(tokenizer(tag)["input_ids"]) == 1
    text = "<reasoning>1+1=2</reasoning>\n<answer>2</answer>"
    assert len(tokenizer(text)["input_ids"]) == 4 + len("1+1=2") + 1 + 1
    assert tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.decode(tokenizer("é")["input_ids"]) == "<unk>"
    assert [len(tokenizer(str(n))["input_ids"]) for n in (7, 12, 99, 123)] == [1, 1, 1, 2]


def test_tokenizer_is_small_deterministic_and_compact():
    tokenizer = build_tokenizer()
    assert len(tokenizer) < 512
    assert tokenizer.get_vocab() == build_tokenizer().get_vocab()
    question = "Mia has 7 apples. Mia gets 5 more. Then Mia gives away 3. How many apples does Mia have now?"
    prompt = make_prompt(question)
    ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_dict=False)
    assert len(ids) < 80 < len(tokenizer.apply_chat_template(prompt, tokenize=False))


def test_chat_template_renders_a_generation_prompt():
    tokenizer = build_tokenizer()
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == "<|system|>S<eos><|user|>Q<eos><|assistant|>"


@pytest.mark.parametrize(("size", "low", "high"), [("test", 1e4, 1e5), ("demo", 5e5, 2e6)])
def test_tiny_model_sizes_and_forward(size, low, high):
    tokenizer = build_tokenizer()
    model = build_tiny_model(tokenizer, size=size)
    assert low <= sum(p.numel() for p in model.parameters()) <= high
    logits = model(torch.tensor([[1, 2, 3]])).logits
    assert logits.shape == (1, 3, len(tokenizer))
    again = build_tiny_model(tokenizer, size=size)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), again.parameters(), strict=True))


def test_unknown_size_and_unknown_model_fail_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="model size must be one of"):
        build_tiny_model(build_tokenizer(), size="huge")
    with pytest.raises(ValueError, match="could not be loaded") as error:
        load_model_and_tokenizer(str(tmp_path / "no-such-model"))
    assert "\n" not in str(error.value)


def test_saved_model_loads_back_by_path(tmp_path):
    model, tokenizer = load_model_and_tokenizer("tiny-test")
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    loaded, loaded_tokenizer = load_model_and_tokenizer(str(tmp_path))
    assert loaded_tokenizer.padding_side == "left"
    assert loaded_tokenizer.pad_token_id == tokenizer.pad_token_id
    assert loaded_tokenizer("<answer>7</answer>")["input_ids"] == tokenizer("<answer>7</answer>")["input_ids"]
    for a, b in zip(model.parameters(), loaded.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.slow
def test_smollm2_alias_loads_the_packaged_model():
    model, tokenizer = load_model_and_tokenizer("smollm2-135m")
    assert 130e6 < sum(p.numel() for p in model.parameters()) < 140e6
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+3?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert "5" in tokenizer.decode(output[0, prompt["input_ids"].shape[1] :])
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    assert lora.peft_config["default"].base_model_name_or_path == "smollm2-135m"  # loadable by name


def test_a_built_in_name_gives_what_gtpo_trainer_takes(tmp_path):
    """From Python as in the README: the built-in model and tokenizer, handed to GTPOTrainer."""
    from gtpo import GTPOTrainer
    from gtpo.tasks.arithmetic import make_arithmetic_dataset
    from gtpo.tasks.rewards import format_reward

    model, tokenizer = load_model_and_tokenizer("tiny-test")
    trainer = GTPOTrainer(
        model=model,
        processing_class=tokenizer,
        reward_funcs=[format_reward],
        args=tiny_config(tmp_path, max_steps=1, max_completion_length=4),
        train_dataset=make_arithmetic_dataset(4),
    )
    trainer.train()
    assert trainer.state.global_step == 1


def _adapter(base_dir, adapter_dir):
    """A LoRA adapter with non-zero weights on the model saved in base_dir (loaded by its path)."""
    from peft import LoraConfig, get_peft_model

    base, _ = load_model_and_tokenizer(str(base_dir))
    lora = LoraConfig(r=2, target_modules="all-linear", init_lora_weights=False, task_type="CAUSAL_LM")
    adapted = get_peft_model(base, lora)
    adapted.save_pretrained(adapter_dir)
    return adapted


def test_an_adapter_directory_loads_merged_into_its_base(tmp_path, monkeypatch):
    model, tokenizer = load_model_and_tokenizer("tiny-test")
    model.save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    monkeypatch.chdir(tmp_path)
    adapted = _adapter("base", tmp_path / "adapter")  # a relative path: the adapter records it whole
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tmp_path / "base")
    assert not (tmp_path / "adapter" / "config.json").exists()
    check_model_name(str(tmp_path / "adapter"))
    check_model_name(
        _adapter_config(tmp_path, "on-smollm2", json.dumps({"base_model_name_or_path": "smollm2-135m"}))
    )
    loaded, loaded_tokenizer = load_model_and_tokenizer(str(tmp_path / "adapter"))
    assert not hasattr(loaded, "peft_config")  # merged: generation runs at the base model's speed
    assert loaded.name_or_path == str(tmp_path / "adapter")  # an adapter trained on it names this one
    assert loaded_tokenizer.get_vocab() == tokenizer.get_vocab() and loaded_tokenizer.padding_side == "left"
    ids = torch.tensor([[1, 5, 9, 30, 2]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, adapted(ids).logits, atol=1e-5, rtol=0)
        assert not torch.allclose(loaded(ids).logits, model(ids).logits, atol=1e-3)


def _adapter_config(tmp_path, name, config):
    (tmp_path / name).mkdir()
    (tmp_path / name / "adapter_config.json").write_text(config)
    return str(tmp_path / name)


@pytest.mark.parametrize(
    ("base", "message"),
    [
        (None, "adapter_config.json: names no base model (base_model_name_or_path)"),
        ("tiny-demo", "base model 'tiny-demo' is initialised from a seed the adapter does not record"),
        ("MISSING/base", "base model: model 'MISSING/base': no such directory, and not a hub id"),
        ("EMPTY", "base model: model 'EMPTY': not a directory with a saved model (no config.json) or a PEFT"),
        ("tiny-tset", "base model: unknown model 'tiny-tset' (did you mean 'tiny-test'?)"),
    ],
)
def test_an_adapter_whose_base_cannot_load_is_refused_in_one_line(tmp_path, base, message):
    (tmp_path / "EMPTY").mkdir()
    if base in ("MISSING/base", "EMPTY"):
        base, message = str(tmp_path / base), message.replace(base, str(tmp_path / base))
    adapter = _adapter_config(tmp_path, "adapter", json.dumps({"base_model_name_or_path": base}))
    with pytest.raises(ValueError) as error:
        check_model_name(adapter)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_an_adapter_config_that_names_no_loadable_base_stops_the_loader_too(tmp_path):
    for name, config, message in [
        ("bad", "{not json", "adapter_config.json: not a JSON object"),
        ("list", "[1]", "adapter_config.json: not a JSON object"),
        ("none", "{}", "adapter_config.json: names no base model"),
        ("tiny", json.dumps({"base_model_name_or_path": "tiny-test"}), "initialised from a seed"),
    ]:
        adapter = _adapter_config(tmp_path, name, config)
        for load in (check_model_name, load_model_and_tokenizer):
            with pytest.raises(ValueError, match=message):
                load(adapter)
    first = _adapter_config(
        tmp_path, "first", json.dumps({"base_model_name_or_path": str(tmp_path / "second")})
    )
    _adapter_config(tmp_path, "second", json.dumps({"base_model_name_or_path": first}))
    for load in (check_model_name, load_model_and_tokenizer):
        with pytest.raises(ValueError, match="its base models lead back to itself"):
            load(first)
