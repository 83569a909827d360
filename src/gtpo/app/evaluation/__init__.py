"""Evaluation as the community reports it: avg@n, unbiased pass@k, maj@k and greedy accuracy, per
benchmark, over one or several seeds, under a named protocol or explicit settings.

Metrics (each with a standard error over problems):
    greedy       accuracy of one greedy completion per problem
    avg@n        accuracy averaged over n sampled completions per problem (pass@1 estimated from n);
                 `avg@n sample std` is the standard deviation of the n per-sample accuracies
    pass@k       unbiased estimator 1 - C(n - c, k) / C(n, k), from n samples of which c are correct
    maj@k        the majority answer of the first k samples (mathematically equal answers vote together)
    formatting   share of completions with an answer in the chosen convention
With several seeds the whole evaluation runs once per seed; each metric is reported as the mean and
standard deviation over seeds.
Under a launch with several processes (`accelerate launch ... -m gtpo eval` or `gtpo train`) each
process generates every N-th problem not yet on disk; the main process gathers them and alone writes
the samples and results files, so each problem is evaluated once. Greedy results equal a one-process
run's; sampled completions are drawn from per-process seeds, so they differ from one process's.

Files written to the output directory (one `seed_<s>/` directory per seed when there are several):
    samples_<benchmark>.jsonl         one record per sampled completion, written problem by problem,
                                      so an interrupted run resumes where it stopped (finished
                                      problems are read back and skipped; a half-written line is dropped)
    samples_<benchmark>_greedy.jsonl  the greedy pass, when a protocol runs one beside the samples
    results.json                      settings, metrics per seed and over seeds, generation speed
    results.md                        a lighteval-style table: benchmark, metric, value, stderr

Python and `gtpo eval` share one entry point, `evaluate(model, tokenizer, benchmarks=..., output_dir=...,
**settings)`, whose settings are EvalSettings' fields with their defaults (`gtpo eval --help`).

Modules: settings (EvalSettings, EvalConfig, protocols, per-benchmark plans), metrics (the
estimators), generation (one pass over a list of problems), samples (the resumable samples file),
results (results.json, results.md); this one runs them: evaluate() and `gtpo eval`.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any

from datasets import Dataset
from tqdm.auto import tqdm

from gtpo import distributed
from gtpo.app.evaluation.generation import Pass, generate_pass, passes_for
from gtpo.app.evaluation.metrics import sample_metrics
from gtpo.app.evaluation.results import combine, results_table, shown, write_results
from gtpo.app.evaluation.samples import SamplesFile
from gtpo.app.evaluation.settings import EvalConfig, EvalSettings, Plan, plan_for, set_fields
from gtpo.app.options import ConfigError, FieldError, build
from gtpo.tasks.datasets import load_task


def evaluate(
    model,
    tokenizer,
    *,
    benchmarks: dict[str, Dataset],
    output_dir: str | Path,
    show_progress: bool = True,
    **settings: Any,
) -> dict[str, Any]:
    """Evaluate a model on benchmarks (name -> rows in the gtpo.tasks schema: id, prompt, answer),
    once per seed (in output_dir, or output_dir/seed_<s> with several seeds); writes results.json
    and results.md and returns results.json's content (`flat_metrics` gives each benchmark's values).

    `settings` are EvalSettings' fields, the flags of `gtpo eval`, with the same defaults: protocol,
    answer_format ("tags"), num_samples (1), k (1 when sampling), maj_k (none), greedy (false),
    temperature (0: greedy), top_p (1.0), max_new_tokens (per benchmark, e.g. 1024 for gsm8k, 4096 for
    AIME), batch_size (8) and seeds ([0]). A protocol sets the published values; a setting given
    beside it wins and is recorded. An unknown setting, a bad value or a combination that cannot run
    as asked raises a one-line FieldError naming the setting. Samples already on disk from an
    interrupted run with the same settings are kept and not generated again."""
    chosen = build(EvalSettings, {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()})
    plans = {name: plan_for(chosen, name) for name in benchmarks}
    output = Path(output_dir)
    was_training = model.training
    model.eval()
    per_seed, speeds = [], []
    for seed in chosen.seeds:
        seed_dir = output if len(chosen.seeds) == 1 else output / f"seed_{seed}"
        metrics, speed = _evaluate_seed(
            model, tokenizer, benchmarks, plans, seed_dir,
            batch_size=chosen.batch_size, seed=seed, show_progress=show_progress,
        )  # fmt: skip
        per_seed.append(metrics)
        speeds.append(speed)
    model.train(was_training)
    results = combine(
        {name: len(dataset) for name, dataset in benchmarks.items()}, plans, per_seed, speeds,
        seeds=chosen.seeds, batch_size=chosen.batch_size, protocol=chosen.protocol,
        overrides=set_fields(chosen) if chosen.protocol else {},
    )  # fmt: skip
    if distributed.is_main():
        write_results(output, results)
    return results


def _evaluate_seed(
    model,
    tokenizer,
    benchmarks: dict[str, Dataset],
    plans: dict[str, Plan],
    output_dir: Path,
    *,
    batch_size: int,
    seed: int,
    show_progress: bool,
) -> tuple[dict[str, dict[str, tuple[float, float]]], dict[str, dict[str, float]]]:
    """One seed's evaluation of every benchmark under its plan: (value, stderr) per metric per
    benchmark, and generation speed per benchmark."""
    if distributed.is_main():
        output_dir.mkdir(parents=True, exist_ok=True)
    metrics, speeds = {}, {}
    for name, dataset in benchmarks.items():
        plan = plans[name]
        gold = {row["id"]: row["answer"] for row in dataset}
        passes = passes_for(name, plan, output_dir)
        metrics[name], speed = {}, {"generated_tokens": 0, "seconds": 0.0}
        for spec in passes:
            records, pass_speed = _run_pass(
                model, tokenizer, dataset, spec, batch_size=batch_size, seed=seed, show_progress=show_progress
            )
            found = sample_metrics({pid: records[pid] for pid in gold}, gold, plan.k, plan.maj_k, spec.greedy)
            if spec.greedy and len(passes) > 1:
                found["greedy formatting"] = found.pop("formatting")
            metrics[name].update(found)
            speed["generated_tokens"] += pass_speed["generated_tokens"]
            speed["seconds"] += pass_speed["seconds"]
        speed["tokens_per_second"] = speed["generated_tokens"] / speed["seconds"] if speed["seconds"] else 0.0
        speeds[name] = speed
    return metrics, speeds


def _run_pass(
    model, tokenizer, dataset: Dataset, spec: Pass, *, batch_size: int, seed: int, show_progress: bool
) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """One pass over a benchmark, resumed from its samples file: the problems not yet on disk are
    generated, each written as soon as it is done; returns every problem's records and the speed."""
    samples = SamplesFile(spec.path)
    main = distributed.is_main()
    records: dict[str, list[dict[str, Any]]] = {}
    if main:
        samples.check_settings(spec.settings(seed))
        records = samples.finished(spec.num_samples)
    records = distributed.broadcast(records)
    todo = [row for row in dataset if row["id"] not in records]
    if len(todo) < len(dataset) and main:
        print(
            f"{spec.name}: {len(records)} of {len(dataset)} problems already in {spec.path}, resuming",
            file=sys.stderr,
        )
    mine = distributed.shard(todo)
    progress = tqdm(
        total=len(records) + len(mine),
        initial=len(records),
        desc=spec.name,
        disable=not (show_progress and main),
    )
    with samples.appender() if main else contextlib.nullcontext(lambda problem: None) as append:

        def done(problem: list[dict[str, Any]]) -> None:
            append(problem)
            progress.update(1)

        new, speed = generate_pass(
            model, tokenizer, mine, spec, batch_size=batch_size, seed=seed,
            first_job=(len(records) + distributed.rank() * len(todo)) * spec.num_samples, on_problem=done,
        )  # fmt: skip
        shares = distributed.gather((new, speed))
        for share, _ in shares[1:]:  # the other processes' problems, written by the main one
            for problem in share.values():
                append(problem)
    progress.close()
    for share, _ in shares:
        records.update(share)
    speeds = [share_speed for _, share_speed in shares]
    tokens, seconds = sum(s["generated_tokens"] for s in speeds), max(s["seconds"] for s in speeds)
    speed = {
        "generated_tokens": tokens,
        "seconds": seconds,
        "tokens_per_second": tokens / seconds if seconds else 0.0,
    }
    return records, speed


def run_eval(config: EvalConfig) -> int:
    """`gtpo eval`: load the model and benchmarks, evaluate, print the table. The settings, the model
    name and every benchmark file are checked before the model is loaded."""
    from gtpo.app.models import check_model_name, load_model_and_tokenizer
    from gtpo.trainer import end_process_group

    paths = config.paths()
    try:
        for name in config.benchmarks:
            plan_for(config, name)
    except FieldError as error:
        raise ConfigError(f"--{error.path}: {error.problem}") from None
    if config.protocol:
        for name, value in set_fields(config).items():
            print(
                f"protocol {config.protocol}: --{name} {shown(value)} overrides the protocol's value",
                file=sys.stderr,
            )
    check_model_name(config.model_name_or_path)
    benchmarks = {
        name: load_task(name, split=config.split, path=paths.get(name), limit=config.limit)
        for name in config.benchmarks
    }
    distributed.start()
    model, tokenizer = load_model_and_tokenizer(config.model_name_or_path)
    if distributed.world_size() > 1:
        model.to(distributed.device())
    results = evaluate(
        model, tokenizer, benchmarks=benchmarks, output_dir=config.output_dir, **config.settings()
    )
    end_process_group()
    if distributed.is_main():
        print(results_table(results), end="")
    return 0
