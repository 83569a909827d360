"""gtpo.tasks.datasets: benchmark loaders on ../shared/data and on files the tests write."""

import json

import pytest
from datasets import Dataset

from gtpo.tasks import datasets as D
from gtpo.tasks.prompts import SYSTEM_PROMPT

EXPECTED_ROWS = {
    "gsm8k_train": 7473,
    "gsm8k_test": 1319,
    "math500": 500,
    "aime24": 30,
    "aime25": 30,
    "amc23": 40,
}


@pytest.mark.parametrize(
    ("task", "file"),
    [("gsm8k", "gsm8k_train"), ("gsm8k", "gsm8k_test"), ("math500", "math500")]
    + [(name, name) for name in ("aime24", "aime25", "amc23")],
)
def test_shared_benchmark_files_load_in_the_schema(shared_data, task, file):
    dataset = D.load_task(task, path=shared_data / f"{file}.jsonl")
    assert len(dataset) == EXPECTED_ROWS[file]
    row = dataset[0]
    assert set(row) == {"prompt", "answer", "id", "source"} | ({"solution"} if task == "gsm8k" else set())
    assert row["prompt"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert row["prompt"][1]["role"] == "user" and row["prompt"][1]["content"]
    assert row["source"] == task
    assert all(answer.strip() for answer in dataset["answer"])
    assert len(set(dataset["id"])) == len(dataset)


def test_known_answers(shared_data):
    gsm8k = D.load_task("gsm8k", path=shared_data / "gsm8k_test.jsonl")[0]
    assert gsm8k["answer"] == "18"
    assert gsm8k["solution"] == (  # the worked solution, for a warm start: no '####', no <<...>>
        "Janet sells 16 - 3 - 4 = 9 duck eggs a day.\n"
        "She makes 9 * 2 = $18 every day at the farmer\u2019s market."
    )
    amc = D.load_task("amc23", path=shared_data / "amc23.jsonl")
    assert amc[0]["answer"] == "27"  # 27.0 in the file
    assert all("." not in a or not a.endswith(".0") for a in amc["answer"])
    assert D.load_task("aime25", path=shared_data / "aime25.jsonl")[0]["answer"] == "70"
    math500 = D.load_task("math500", path=shared_data / "math500.jsonl", limit=3)
    assert len(math500) == 3 and math500[0]["answer"] == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_gsm8k_thousands_separators(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "work\n#### 1,234"}) + "\n")
    assert D.load_task("gsm8k", path=path)[0]["answer"] == "1234"


def test_math_train_answers_are_the_last_boxed_with_nested_braces(tmp_path):
    rows = [
        {"problem": "p1", "solution": "So $\\boxed{1}$ then $\\boxed{\\frac{a}{\\sqrt{2}}}$."},
        {"problem": "p2", "solution": "Thus \\fbox{x^{2}+1}"},
    ]
    path = tmp_path / "math_train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = D.load_task("math", path=path)
    assert dataset["answer"] == ["\\frac{a}{\\sqrt{2}}", "x^{2}+1"]
    assert dataset["solution"] == [row["solution"] for row in rows]
    parquet = tmp_path / "math_train.parquet"
    Dataset.from_list(rows).to_parquet(str(parquet))
    assert D.load_task("math", path=parquet)["answer"] == dataset["answer"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": "q", "answer": "#### 1"}\n{not json\n', r"g\.jsonl:2: not valid JSON"),
        ('{"question": "q"}\n', r"g\.jsonl:1: missing field 'answer'"),
        ('{"answer": "#### 3"}\n', r"g\.jsonl:1: missing field 'question'"),
        ('{"question": "q", "answer": "no final line"}\n', r"g\.jsonl:1: field 'answer': no '####' line"),
        ("", r"g\.jsonl: no rows"),
        ("[1, 2]\n", r"g\.jsonl:1: expected a JSON object"),
    ],
)
def test_bad_files_fail_in_one_line_naming_file_line_and_field(tmp_path, content, message):
    path = tmp_path / "g.jsonl"
    path.write_text(content)
    with pytest.raises(D.DatasetFormatError, match=message) as error:
        D.load_task("gsm8k", path=path)
    assert "\n" not in str(error.value)


def test_missing_file_and_unknown_task(tmp_path):
    with pytest.raises(D.DatasetFormatError, match="dataset file not found"):
        D.load_task("gsm8k", path=tmp_path / "nope.jsonl")
    with pytest.raises(ValueError, match="unknown task 'gsm9k'; known tasks: aime24, aime25, amc23"):
        D.load_task("gsm9k")


def test_hub_loading_uses_the_real_ids(monkeypatch):
    calls = []

    def fake_load_dataset(hub_id, config, split):
        calls.append((hub_id, config, split))
        return Dataset.from_list([{"problem": f"{config} problem", "solution": "\\boxed{4}"}])

    monkeypatch.setattr(D, "load_dataset", fake_load_dataset)
    dataset = D.load_task("math", split="train")
    assert len(dataset) == 7 and set(dataset["answer"]) == {"4"}
    assert calls == [("EleutherAI/hendrycks_math", subject, "train") for subject in D.MATH_SUBJECTS]
    calls.clear()
    monkeypatch.setattr(
        D,
        "load_dataset",
        lambda *a, **k: calls.append(a) or Dataset.from_list([{"question": "q", "answer": "#### 5"}]),
    )
    assert D.load_task("gsm8k")[0]["answer"] == "5"
    assert calls == [("openai/gsm8k", "main")]


def test_last_boxed_errors():
    with pytest.raises(ValueError, match="no \\\\boxed"):
        D.last_boxed("no box here")
    with pytest.raises(ValueError, match="unbalanced"):
        D.last_boxed("\\boxed{1")
