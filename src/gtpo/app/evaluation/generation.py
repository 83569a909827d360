"""Generation: the passes a benchmark's plan runs, and one pass over a list of problems, batched
(longest prompts first) and scored, its records returned problem by problem."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gtpo.app.evaluation.metrics import score_problem
from gtpo.app.evaluation.settings import Plan
from gtpo.tasks.prompts import SYSTEM_PROMPTS, with_system_prompt


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: list[list[dict[str, str]]],
    num_samples: int,
    temperature: float,
    max_new_tokens: int,
    top_p: float = 1.0,
    token_counts: list[int] | None = None,
) -> list[list[str]]:
    """num_samples completions per conversational prompt, with HF generate (greedy at temperature 0).
    When `token_counts` is given, the number of tokens generated for each completion (up to and
    including its end-of-sequence token) is appended to it."""
    tokenizer.padding_side = "left"
    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    sampling = temperature > 0
    output = model.generate(
        **inputs,
        max_new_tokens=max_new_tokens,
        do_sample=sampling,
        temperature=temperature if sampling else None,
        top_p=top_p if sampling else None,
        top_k=None,
        num_return_sequences=num_samples,
        pad_token_id=tokenizer.pad_token_id,
    )
    generated = output[:, inputs["input_ids"].shape[1] :]
    if token_counts is not None:
        ended = generated == tokenizer.eos_token_id
        first_end = torch.where(ended.any(dim=1), ended.int().argmax(dim=1) + 1, generated.shape[1])
        token_counts.extend(first_end.tolist())
    completions = tokenizer.batch_decode(generated, skip_special_tokens=True)
    return [completions[i * num_samples : (i + 1) * num_samples] for i in range(len(prompts))]


@dataclass(frozen=True)
class Pass:
    """One generation pass over a benchmark: n completions per problem at one temperature, into one
    samples file; `greedy` passes are scored as greedy accuracy."""

    name: str
    path: Path
    num_samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    answer_format: str
    greedy: bool

    def settings(self, seed: int) -> dict[str, Any]:
        """What the samples were made with, as kept beside them."""
        return {
            "num_samples": self.num_samples,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
            "answer_format": self.answer_format,
            "seed": seed,
        }


def passes_for(benchmark: str, plan: Plan, output_dir: Path) -> list[Pass]:
    """The passes a plan runs: one greedy pass at temperature 0; else the sampled pass, after a greedy
    one (samples_<benchmark>_greedy.jsonl) when the plan asks for it."""
    common = {"max_new_tokens": plan.max_new_tokens, "answer_format": plan.answer_format}
    passes = []
    if plan.temperature == 0 or plan.greedy:
        suffix = "_greedy" if plan.temperature > 0 else ""
        path = output_dir / f"samples_{benchmark}{suffix}.jsonl"
        passes.append(Pass(f"{benchmark}{suffix}", path, 1, 0.0, 1.0, greedy=True, **common))
    if plan.temperature > 0:
        path = output_dir / f"samples_{benchmark}.jsonl"
        passes.append(
            Pass(benchmark, path, plan.num_samples, plan.temperature, plan.top_p, greedy=False, **common)
        )
    return passes


def generate_pass(
    model,
    tokenizer,
    problems: list[dict[str, Any]],
    spec: Pass,
    *,
    batch_size: int,
    seed: int,
    first_job: int = 0,
    on_problem: Callable[[list[dict[str, Any]]], None] | None = None,
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """Generate and score spec.num_samples completions for each problem (rows with id, prompt and
    answer); returns each problem's records (id, sample, completion, answer, formatted, correct) and
    the generation speed.

    Completions are generated `batch_size` at a time, prompts sorted by length (longest first) so
    that a batch holds prompts of similar length. Each batch's sampling seed derives from `seed` and
    its first completion's index in the pass (`first_job` for the first of these problems), so a
    resumed pass does not replay the random numbers of its first part. `on_problem` gets a problem's
    records as soon as its last sample is scored."""
    system_prompt = SYSTEM_PROMPTS["boxed" if spec.answer_format == "boxed" else "tags"]
    prompts = {row["id"]: with_system_prompt(row["prompt"], system_prompt) for row in problems}
    lengths = {
        pid: len(tokenizer(tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True),
                           add_special_tokens=False)["input_ids"])
        for pid, p in prompts.items()
    }  # fmt: skip
    rows = sorted(problems, key=lambda row: -lengths[row["id"]])
    jobs = [row for row in rows for _ in range(spec.num_samples)]
    records: dict[str, list[dict[str, Any]]] = {}
    pending: dict[str, list[str]] = {}
    token_counts: list[int] = []
    seconds = 0.0
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start : start + batch_size]
        torch.manual_seed(seed * 1_000_003 + first_job + start)
        began = time.perf_counter()
        texts = generate(
            model,
            tokenizer,
            [prompts[row["id"]] for row in batch],
            1,
            spec.temperature,
            spec.max_new_tokens,
            spec.top_p,
            token_counts=token_counts,
        )
        seconds += time.perf_counter() - began
        for row, (text,) in zip(batch, texts, strict=True):
            samples = pending.setdefault(row["id"], [])
            samples.append(text)
            if len(samples) < spec.num_samples:
                continue
            scored = score_problem(samples, row["answer"], spec.answer_format)
            problem = [
                {"id": row["id"], "sample": i, "completion": t, **s}
                for i, (t, s) in enumerate(zip(samples, scored, strict=True))
            ]
            records[row["id"]] = problem
            del pending[row["id"]]
            if on_problem is not None:
                on_problem(problem)
    tokens = sum(token_counts)
    speed = {
        "generated_tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds else 0.0,
    }
    return records, speed
