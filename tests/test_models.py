"""gtpo.app.models: the offline tokenizer, tiny models and model-name resolution."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gtpo.app.models import TAGS, build_tiny_model, build_tokenizer, load_model_and_tokenizer
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
