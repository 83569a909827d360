"""What an evaluation reports: results.json's content (settings, metrics per seed and over seeds,
generation speed), its flat per-benchmark values, and results.md, a lighteval-style table."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from gtpo.app.evaluation.metrics import over_seeds
from gtpo.app.evaluation.settings import PROTOCOLS, Plan


def combine(
    problems: dict[str, int],
    plans: dict[str, Plan],
    per_seed: list[dict[str, dict[str, tuple[float, float]]]],
    speeds: list[dict[str, dict[str, float]]],
    *,
    seeds: list[int],
    batch_size: int,
    protocol: str | None,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """results.json's content from each seed's (value, stderr) per benchmark and metric and each
    seed's speed per benchmark; `problems` gives each benchmark's problem count."""
    return {
        "settings": {
            "protocol": protocol,
            "protocol_description": PROTOCOLS[protocol].description if protocol else None,
            "overrides": overrides,
            "seeds": seeds,
            "batch_size": batch_size,
            "benchmarks": {name: _as_json(dataclasses.asdict(plans[name])) for name in problems},
        },
        "results": {
            name: {"problems": count, "metrics": over_seeds([seed[name] for seed in per_seed])}
            for name, count in problems.items()
        },
        "speed": {name: [speed[name] for speed in speeds] for name in problems},
    }


def _as_json(values: dict[str, Any]) -> dict[str, Any]:
    """Tuples as lists, as results.json reads back."""
    return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


def write_results(output_dir: Path, results: dict[str, Any]) -> None:
    """results.json and results.md in output_dir."""
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=2))
    (output_dir / "results.md").write_text(results_table(results))


def flat_metrics(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per benchmark, the metric values of a results.json (its mean over seeds), with `problems`,
    `samples_per_problem` and `accuracy`: greedy accuracy at temperature 0, else avg@n."""
    flat = {}
    for name, result in results["results"].items():
        plan = results["settings"]["benchmarks"][name]
        n = plan["num_samples"] if plan["temperature"] > 0 else 1
        values = {metric: entry["value"] for metric, entry in result["metrics"].items()}
        values["accuracy"] = values[f"avg@{n}"] if plan["temperature"] > 0 else values["greedy"]
        flat[name] = {"problems": result["problems"], "samples_per_problem": n, **values}
    return flat


def shown(value: Any) -> str:
    """A setting as it is typed on the command line ('8 16' for a list)."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def results_table(results: dict[str, Any]) -> str:
    """lighteval-style Markdown: one row per benchmark and metric (value, stderr), with the settings.
    With several seeds the value is the mean over seeds ± their standard deviation."""
    settings = results["settings"]
    seeds = settings["seeds"]
    title = f"protocol {settings['protocol']}" if settings["protocol"] else "explicit settings"
    lines = [f"gtpo eval: {title}, seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}", ""]
    if settings["overrides"]:
        lines[0] += (
            " (overridden: " + ", ".join(f"{k}={shown(v)}" for k, v in settings["overrides"].items()) + ")"
        )
    value_header = "value (mean ± std over seeds)" if len(seeds) > 1 else "value"
    lines += [f"| benchmark | metric | {value_header} | stderr |", "|---|---|---|---|"]
    for name, result in results["results"].items():
        for metric, entry in result["metrics"].items():
            value = f"{entry['value']:.4f}"
            if len(seeds) > 1:
                value += f" ± {entry['seed_std']:.4f}"
            lines.append(f"| {name} | {metric} | {value} | {entry['stderr']:.4f} |")
    columns = ["problems", "answer_format", "num_samples", "temperature", "top_p", "max_new_tokens", "greedy"]
    lines += ["", "| benchmark | " + " | ".join(columns) + " | tokens/s |", "|---" * (len(columns) + 2) + "|"]
    for name, plan in settings["benchmarks"].items():
        speeds = results["speed"][name]
        rate = sum(s["tokens_per_second"] for s in speeds) / len(speeds)
        cells = [results["results"][name]["problems"], *(plan[c] for c in columns[1:]), f"{rate:.1f}"]
        lines.append(f"| {name} | " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines) + "\n"
