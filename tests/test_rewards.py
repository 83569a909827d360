"""gtpo.tasks.rewards: the paper's format and correctness rewards, bounded against hostile completions."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gtpo.tasks import rewards as rewards_module
from gtpo.tasks.datasets import last_boxed
from gtpo.tasks.rewards import (
    REWARDS,
    answers_equal,
    answers_equal_many,
    correctness_reward,
    extract_answer,
    final_answer,
    format_reward,
    lenient_correctness_reward,
)

GOOD = "<reasoning>16 - 3 - 4 = 9 and 9 * 2 = 18</reasoning>\n<answer>18</answer>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD, 10.0),
        (GOOD + "\n", 10.0),  # trailing whitespace after the final block
        ("<reasoning>a</reasoning> then <answer>1</answer> and more", 1.5),  # answer block not at the end
        ("<answer>18</answer>", 1.0),
        ("<reasoning>x</reasoning> <answer>", 1.5),  # reasoning block plus a stray answer tag
        ("<reasoning> <answer>18</answer>", 1.5),  # answer block plus a stray reasoning tag
        ("<reasoning>unclosed", 0.0),
        ("the answer is 18", 0.0),
        ("", 0.0),
    ],
)
def test_format_reward_by_hand(text, expected):
    assert format_reward([text]) == [expected]


def test_conversational_completions():
    completions = [[{"role": "assistant", "content": GOOD}], [{"role": "assistant", "content": "18"}]]
    assert format_reward(completions) == [10.0, 0.0]
    assert correctness_reward(completions, answer=["18", "18"]) == [10.0, 0.0]


@pytest.mark.parametrize(
    ("prediction", "gold", "expected"),
    [
        ("18", "18", True),
        ("$18", "18", True),
        ("18 dollars", "18", True),
        ("1,000", "1000", True),
        ("\\frac{1}{2}", "0.5", True),
        ("0.75", "\\frac{3}{4}", True),
        ("\\boxed{72}", "72", True),
        ("- 3", "-3", True),
        ("-3", "3", False),
        ("12", "2", False),
        ("19", "18", False),
        ("(3, \\frac{\\pi}{2})", "\\left( 3, \\frac{\\pi}{2} \\right)", True),
        ("", "5", False),
        (None, "5", False),
    ],
)
def test_answers_equal(prediction, gold, expected):
    assert answers_equal(prediction, gold) is expected


def test_correctness_needs_full_format():
    assert correctness_reward(["<answer>18</answer>"], answer=["18"]) == [0.0]
    assert correctness_reward([GOOD, GOOD.replace(">18<", ">17<")], answer=["18", "18"]) == [10.0, 0.0]


def test_lenient_matcher_reproduces_the_official_substring_rule():
    twelve = GOOD.replace(">18<", ">12<")
    assert lenient_correctness_reward([twelve], answer=["2"]) == [10.0]  # gold '2' is in '12'
    assert correctness_reward([twelve], answer=["2"]) == [0.0]
    assert lenient_correctness_reward([GOOD.replace(">18<", ">18.004<")], answer=["18"]) == [10.0]
    assert lenient_correctness_reward([GOOD.replace(">18<", ">19<")], answer=["18"]) == [0.0]


def test_extract_answer_takes_the_final_block():
    assert extract_answer("<answer>1</answer> x <answer> 2 </answer>") == "2"
    assert extract_answer("<answer>1</answer> trailing") is None


@pytest.mark.parametrize(
    "answer",
    [
        "10^{10^{10^{10}}}",
        "10**10**10**10",
        "(" * 5000 + "1" + ")" * 5000,
        "9" * 100_000,
        "__import__('os').system('touch /tmp/gtpo_pwned')",
        "\\input{/etc/passwd}",
        "x" * 400 + "^" * 100,
        "\\boxed{5} and \\boxed{10^{10^{10^{10}}}}",  # the checks of one answer share one time limit
        " ".join(f"\\boxed{{{n}}}" for n in range(40)),  # more values than MAX_VALUES: not read
        "\\boxed{" * 2000 + "5" + "}" * 2000,
    ],
)
def test_hostile_answers_return_zero_in_bounded_time(answer, monkeypatch):
    """Time is bounded by construction, not measured: the reward waits for the math-verify worker
    only through `_read_line(timeout)` (a `select` with that timeout), and here at most once, for
    at most one check's time limit (besides the wait for a fresh worker to start)."""
    waits = []
    read_line = rewards_module._VERIFIER._read_line

    def recorded(timeout):
        waits.append(timeout)
        if timeout == rewards_module.WORKER_START_TIMEOUT_SECONDS:  # a fresh worker imports sympy
            return read_line(timeout)
        return read_line(min(timeout, 0.3))  # what is checked is the time asked for; 0 either way

    monkeypatch.setattr(rewards_module._VERIFIER, "_read_line", recorded)
    rewards = correctness_reward([f"<reasoning>r</reasoning><answer>{answer}</answer>"], answer=["5"])
    assert rewards == [0.0]
    checks = [w for w in waits if w != rewards_module.WORKER_START_TIMEOUT_SECONDS]
    assert len(checks) <= 1 and all(w <= rewards_module.CHECK_TIMEOUT_SECONDS for w in checks)


def test_a_timeout_inside_a_batch_costs_only_that_check():
    """The worker is restarted after the timeout, so the checks after it still get verdicts."""
    pairs = [("2/4", "0.5"), ("10^{10^{10^{10}}}", "5"), ("\\frac{3}{6}", "0.5"), ("x^2", "x^3")]
    assert answers_equal_many(pairs, timeout=1.0) == [True, False, True, False]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gets_a_valid_reward(text):
    assert format_reward([text])[0] in (0.0, 1.0, 1.5, 10.0)
    assert correctness_reward([f"<reasoning>.</reasoning><answer>{text}</answer>"], answer=["7"])[0] in (
        0.0,
        10.0,
    )


# ------------------------------------------------------------------------------------------------
# Real data: gold solutions score the full reward, wrong answers score nothing
# ------------------------------------------------------------------------------------------------


def _total(completions, golds):
    return [
        f + c for f, c in zip(format_reward(completions), correctness_reward(completions, golds), strict=True)
    ]


def test_gsm8k_gold_solutions_score_full_reward(shared_data):
    rows = [json.loads(line) for line in (shared_data / "gsm8k_test.jsonl").open()]
    completions, golds = [], []
    for row in rows:
        reasoning, final = row["answer"].rsplit("####", 1)
        completions.append(f"<reasoning>{reasoning.strip()}</reasoning>\n<answer>{final.strip()}</answer>")
        golds.append(final.strip().replace(",", ""))
    totals = _total(completions, golds)
    assert len(rows) == 1319
    assert sum(t == 20.0 for t in totals) / len(totals) >= 0.999
    wrong = []
    for gold in golds[:300]:
        number = float(gold)
        wrong += [str(int(number + 1)), str(int(number * 10))] if number != 0 else [str(int(number + 1))]
    wrong_golds = [g for g in golds[:300] for _ in range(2 if float(g) != 0 else 1)]
    wrong_completions = [f"<reasoning>r</reasoning>\n<answer>{w}</answer>" for w in wrong]
    assert correctness_reward(wrong_completions, wrong_golds) == [0.0] * len(wrong)


def test_math500_gold_solutions_score_full_reward(shared_data):
    rows = [json.loads(line) for line in (shared_data / "math500.jsonl").open()]
    completions = [
        f"<reasoning>{row['solution']}</reasoning>\n<answer>\\boxed{{{last_boxed(row['solution'])}}}</answer>"
        for row in rows
    ]
    totals = _total(completions, [row["answer"] for row in rows])
    assert len(rows) == 500
    assert sum(t == 20.0 for t in totals) / len(totals) >= 0.99
    numeric = [row["answer"] for row in rows if row["answer"].lstrip("-").isdigit()]
    wrong = [str(int(a) + 1) for a in numeric] + [str(int(a) * 10) for a in numeric if int(a) != 0]
    golds = numeric + [a for a in numeric if int(a) != 0]
    completions = [f"<reasoning>r</reasoning>\n<answer>{w}</answer>" for w in wrong]
    assert correctness_reward(completions, golds) == [0.0] * len(wrong)


# ------------------------------------------------------------------------------------------------
# Answer extraction: the paper's tags, \boxed{}, or either
# ------------------------------------------------------------------------------------------------

TAGGED_BOXED = "<reasoning>r</reasoning><answer>\\boxed{5}</answer>"
BOXED_ONLY = "First 2 + 3 = 5, so the answer is \\boxed{5}."
BOTH_DIFFERENT = "\\boxed{4} then <reasoning>r</reasoning><answer>5</answer>"
TAGS_INCOMPLETE = "<answer>5</answer> and \\boxed{6}"
TWO_BOXES = "\\boxed{\\frac{1}{2}} and \\boxed{x^{2}}"


@pytest.mark.parametrize(
    ("text", "tags", "boxed", "any_"),
    [
        (TAGGED_BOXED, "\\boxed{5}", "5", "\\boxed{5}"),
        (BOXED_ONLY, None, "5", "5"),
        (BOTH_DIFFERENT, "5", "4", "5"),
        (TAGS_INCOMPLETE, None, "6", "6"),
        ("\\boxed{\\frac{1}{2}} and \\boxed{x^{2}}", None, TWO_BOXES, TWO_BOXES),  # read as a set
        ("\\boxed{5}, that is, \\boxed{ 5 }", None, "5", "5"),  # one value boxed twice
        ("\\boxed{3} then \\boxed{5", None, None, None),  # the last box never closes
        ("\\boxed{unclosed", None, None, None),
        ("no answer", None, None, None),
        ("<answer>7</answer>", None, None, "7"),  # an answer block without reasoning
        ("The answer is $34$.", None, None, "34"),
        ("so x \\geq 5 is the solution", None, None, "x \\geq 5"),
    ],
)
def test_final_answer_by_convention(text, tags, boxed, any_):
    assert [final_answer(text, f) for f in ("tags", "boxed", "any")] == [tags, boxed, any_]


def test_unknown_answer_format_is_refused():
    with pytest.raises(ValueError, match="answer_format must be one of"):
        final_answer("x", "latex")


def test_correctness_reward_answer_formats_keep_trls_signature():
    texts = [TAGGED_BOXED, BOXED_ONLY, BOTH_DIFFERENT, TAGS_INCOMPLETE]
    golds = ["5"] * 4
    trl_kwargs = {"prompts": ["q"] * 4, "completion_ids": [[1]] * 4, "trainer_state": None}
    logged = {}
    assert correctness_reward(texts, answer=golds, **trl_kwargs) == [10.0, 0.0, 10.0, 0.0]
    assert correctness_reward(texts, answer=golds, answer_format="boxed") == [10.0, 10.0, 0.0, 0.0]
    assert REWARDS["boxed_correctness_reward"](texts, answer=golds, **trl_kwargs) == [10.0, 10.0, 0.0, 0.0]
    any_reward = REWARDS["any_correctness_reward"]
    assert any_reward(texts, answer=golds, log_metric=logged.__setitem__) == [10.0, 10.0, 10.0, 0.0]
    assert logged == {"accuracy": 0.75}
    assert {name: f.__name__ for name, f in REWARDS.items()} == {name: name for name in REWARDS}


# ------------------------------------------------------------------------------------------------
# Several boxed answers, answers stated in prose
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "gold", "reward"),
    [
        ("The roots are \\boxed{2} and \\boxed{5}.", "2, 5", 10.0),
        ("\\boxed{5}, \\boxed{2}", "2,5", 10.0),  # in any order
        ("\\boxed{2}, \\boxed{5}", "5", 0.0),  # a one-value gold: boxes that disagree are no answer
        ("\\boxed{2}, \\boxed{5}", "2", 0.0),
        ("A guess: \\boxed{4}. " + "Checking it fails. " * 50 + "So \\boxed{5}.", "5", 0.0),
        ("\\boxed{5} " + "Checking. " * 50 + "Final answer: \\boxed{5}", "5", 10.0),
        ("\\boxed{2}", "2, 5", 0.0),  # a value missing
        ("\\boxed{2}, \\boxed{5}, \\boxed{7}", "2, 5", 0.0),  # a value added
    ],
)
def test_several_boxed_answers_are_a_set(text, gold, reward):
    assert correctness_reward([text], answer=[gold], answer_format="boxed") == [reward]
    tagged = f"<reasoning>r</reasoning><answer>{text}</answer>"  # boxes inside the answer tags
    assert correctness_reward([tagged], answer=[gold]) == [reward]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Final Answer: the largest n is 34.", "34"),
        ("The answer is $34$.", "34"),
        ("**Answer:** 34", "34"),
        ("Final Answer: The final answer is $\\boxed{34}$. I hope it is correct.", "34"),
        ("Final Answer: The final answer is $34$. I hope it is correct.", "34"),
        ("so x \\geq 5 is the solution", "x \\geq 5"),
        ("First 3 + 4 = 7, then 7 * 2 = 14, so the answer is 14 apples. Check: 14 / 2 = 7.", "14"),
        ("The answer is 12. Wait: 3 * 5 = 15, so the answer is 15.", "15"),
        ("The answer is 7 (since 3 + 4 = 7).", "7"),
        ("He paid $5 and $6, so the answer is $11.", "11"),
        ("The answer is Evelyn.", "Evelyn"),
        ("Final Answer: the parity is even.", "even"),
        ("The answer is (C).", "(C)"),
        ("We find x = 2 at first, and then x = 5.", "x = 5"),
        ("**Final Answer**\n\n$\\frac{1}{2}$", "\\frac{1}{2}"),
        ("<reasoning>3 + 4 = 7</reasoning> The answer is 5", "5"),
        ("I cannot tell.", None),
    ],
)
def test_any_finds_the_answer_stated_in_prose(text, answer):
    assert final_answer(text, "any") == answer
    assert final_answer(text, "boxed") == (answer if "boxed" in text else None)


def test_prose_is_read_at_the_end_of_a_long_output():
    reasoning = "Step: 2 + 2 = 4, and so on. " * 1000  # 28,000 characters
    assert final_answer(reasoning + "So the answer is 6.", "any") == "6"
    assert correctness_reward([reasoning + "So the answer is 6."], answer=["6"], answer_format="any") == [
        10.0
    ]
    assert final_answer("Step: 2 + 2 =", "any") == "2 + 2"  # an operator at the end is cut off
    # Only the last PROSE_TAIL_CHARS characters are read: a statement before them is not seen.
    words = "We keep checking the cases. " * 100
    assert len(words) > rewards_module.PROSE_TAIL_CHARS
    assert final_answer("The answer is 5. " + words, "any") is None
    assert final_answer("The answer is 5. " + words[: rewards_module.PROSE_TAIL_CHARS // 2], "any") == "5"


def test_the_checks_of_one_answer_are_one_request_under_one_time_limit():
    requests = [[("\\frac{1}{2}", "0.5"), ("10^{10^{10^{10}}}", "5")], [("2/4", "0.5")]]
    assert rewards_module._VERIFIER.verdicts(requests, timeout=0.5) == [[False, False], [True]]
