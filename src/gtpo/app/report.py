"""`gtpo report RUN_DIR [RUN_DIR ...]`: PNG plots over steps and report.html, from a run's files only.

The report reads what `gtpo train` stored (metrics.jsonl, summary.json, samples.jsonl) and never
loads a model. It shows the training curves (reward, accuracy, formatting, entropy, conflict-token
shares, gated-out share) in a two-column grid, the before/after evaluation, and one group of
completions the run trained on, scored with the run's own rewards, with the conflict tokens of its
own token ids highlighted: green where a positive completion's update is amplified, red (struck
through) where a negative completion's update is skipped. Given several runs (GTPO beside GRPO,
say), the curves are overlaid and the evaluation tables hold one row per run.
"""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from gtpo.jsonl import read_jsonl

PLOTS = {
    "reward": ["reward"],
    "accuracy": ["accuracy"],
    "formatting": ["formatting"],
    "entropy": ["entropy", "gtpo/mean_entropy"],
    "conflict_shares": ["gtpo/positive_conflict_share", "gtpo/negative_conflict_share"],
    "gated_out_share": ["gtpo/gated_out_share"],
}

EVALUATION_METRICS = ("accuracy", "formatting")  # of summary.json's before and after
LINE_STYLES = ("-", "--", ":", "-.")
STYLE = """
body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:12px}
.grid img{width:100%;border:1px solid #ddd}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px}
.completion{border-left:4px solid #bbb;margin:8px 0;padding:4px 8px}
.positive{border-color:#2a7}.negative{border-color:#c33}
.amplified{background:#bfe8c8}.skipped{background:#f5c0c0;text-decoration:line-through}
.meta{font-size:80%;color:#666}code{white-space:pre-wrap}
"""


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl records (a line cut by an interruption left out)."""
    return read_jsonl(run_dir / "metrics.jsonl")


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The run's summary.json ({} before the run has finished)."""
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.exists() else {}


def summary_table(summary: dict[str, Any]) -> str:
    """Markdown table of held-out accuracy and formatting: before and after RL with the change, or
    only the evaluation that ran (`evaluation.before_training false`: after); '' when none ran."""
    phases, change = _phases([summary])
    if not phases:
        return ""
    header = ["metric", *phases, *(["change"] if change else [])]
    rows = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for metric in EVALUATION_METRICS:
        cells = _evaluation_cells(summary, metric, phases, change)
        if cells:
            rows.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def _phases(summaries: list[dict[str, Any]]) -> tuple[list[str], bool]:
    """The evaluations (before, after) that any of the runs stored, and whether a change is shown."""
    phases = [phase for phase in ("before", "after") if any(phase in s for s in summaries)]
    return phases, len(phases) == 2


def _evaluation_cells(summary: dict[str, Any], metric: str, phases: list[str], change: bool) -> list[str]:
    """A metric's value per phase ('–' where the run has none) and the change; [] when it has none."""
    values = [summary.get(phase, {}).get(metric) for phase in phases]
    if all(value is None for value in values):
        return []
    cells = ["–" if value is None else f"{value:.3f}" for value in values]
    if change:
        cells.append("–" if None in values else f"{values[1] - values[0]:+.3f}")
    return cells


def write_plots(out: Path, runs: dict[str, list[dict[str, Any]]]) -> list[Path]:
    """One PNG per plot with data, each run's curves overlaid; returns their paths."""
    # matplotlib keeps its font cache in MPLCONFIGDIR (default ~/.cache/matplotlib); unless the user
    # chose a place, keep it beside the report (read when matplotlib is first imported).
    os.environ.setdefault("MPLCONFIGDIR", str(out / ".cache" / "matplotlib"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    written = []
    for name, keys in PLOTS.items():
        series = {}  # label -> (color: one per run, line style: one per key, points)
        for color, (run, records) in enumerate(runs.items()):
            for style, key in enumerate(keys):
                points = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
                label = key if len(runs) == 1 else f"{run}: {key}" if len(keys) > 1 else run
                if points:
                    series[label] = (color, style, points)
        if not series:
            continue
        figure, axis = plt.subplots(figsize=(5, 3.2), dpi=110)
        for label, (color, style, points) in series.items():
            steps, values = zip(*points, strict=True)
            axis.plot(steps, values, label=label, color=f"C{color if len(runs) > 1 else style}",
                      linestyle=LINE_STYLES[style % len(LINE_STYLES)] if len(runs) > 1 else "-",
                      marker="." if len(points) < 30 else None)  # fmt: skip
        axis.set_xlabel("step")
        axis.set_title(name.replace("_", " "))
        axis.grid(alpha=0.3)
        if len(series) > 1:
            axis.legend(fontsize=7)
        figure.tight_layout()
        path = plots / f"{name}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def shown_group(run_dir: Path) -> dict[str, Any] | None:
    """The latest group in samples.jsonl with both positive and negative completions (so conflict
    tokens can appear), else the latest one; None when the run stored none."""
    groups = read_jsonl(run_dir / "samples.jsonl")
    mixed = [g for g in groups if {a > 0 for a in g["advantages"] if a != 0} == {True, False}]
    return (mixed or groups or [None])[-1]


def _completion_html(group: dict[str, Any], index: int) -> str:
    sign = group["advantages"][index]
    pieces = []
    for token, conflict in zip(group["tokens"][index], group["conflict"][index], strict=True):
        text = html.escape(token).replace("\n", "&#8629;<br>")
        if conflict and sign > 0:
            pieces.append(f'<span class="amplified" title="update amplified">{text}</span>')
        elif conflict and sign < 0:
            pieces.append(f'<span class="skipped" title="negative update skipped">{text}</span>')
        else:
            pieces.append(text)
    kind = "positive" if sign > 0 else "negative" if sign < 0 else "neutral"
    rewards = " · ".join(f"{html.escape(name)} {value[index]:g}" for name, value in group["rewards"].items())
    return (
        f'<div class="completion {kind}"><div class="meta">{rewards} · advantage {sign:+.2f}</div>'
        f"<code>{''.join(pieces)}</code></div>"
    )


def _group_html(run: str, group: dict[str, Any]) -> list[str]:
    parts = [
        f"<h2>{html.escape(run)}: a group trained on at step {group['step']}</h2>"
        f"<p><b>Prompt:</b> {html.escape(str(group['prompt']))}</p>"
        '<p>Conflict tokens: <span class="amplified">amplified</span> in positive completions, '
        '<span class="skipped">skipped</span> in negative ones.</p>'
    ]
    return parts + [_completion_html(group, i) for i in range(len(group["tokens"]))]


def _evaluation_html(summaries: dict[str, dict[str, Any]]) -> str:
    phases, change = _phases(list(summaries.values()))
    rows = [
        "<tr>" + "".join(f"<td>{cell}</td>" for cell in [html.escape(run), metric, *cells]) + "</tr>"
        for run, summary in summaries.items()
        for metric in EVALUATION_METRICS
        if (cells := _evaluation_cells(summary, metric, phases, change))
    ]
    if not rows:
        return ""
    columns = ["run", "metric", *phases, *(["change"] if change else [])]
    header = "".join(f"<th>{name}</th>" for name in columns)
    return f"<h2>Held-out evaluation</h2><table><tr>{header}</tr>{''.join(rows)}</table>"


def write_report(run_dirs: list[str | Path], output_dir: str | Path | None = None) -> Path:
    """Write plots and report.html for one run (into its directory) or several (into output_dir,
    needed then); returns the report's path."""
    dirs = [Path(d) for d in run_dirs]
    for run_dir in dirs:
        if not run_dir.is_dir():
            raise ValueError(f"{run_dir}: run directory not found")
        if not (run_dir / "metrics.jsonl").is_file() and not (run_dir / "summary.json").is_file():
            raise ValueError(f"{run_dir}: not a run directory (no metrics.jsonl or summary.json)")
    if output_dir is None and len(dirs) > 1:
        raise ValueError("--output_dir: needed to compare several runs (where report.html goes)")
    out = Path(output_dir) if output_dir is not None else dirs[0]
    names = [d.resolve().name for d in dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in dirs]
    runs = {name: read_metrics(d) for name, d in zip(names, dirs, strict=True)}
    summaries = {name: read_summary(d) for name, d in zip(names, dirs, strict=True)}
    out.mkdir(parents=True, exist_ok=True)
    plots = write_plots(out, runs)

    title = names[0] if len(names) == 1 else " vs ".join(names)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>GTPO report: {html.escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>GTPO report: {html.escape(title)}</h1>",
    ]
    for name, summary in summaries.items():
        parts.append(
            f"<p>{html.escape(name)}: {len(runs[name])} logged steps · algorithm "
            f"{html.escape(str(summary.get('algorithm', '?')))} · model "
            f"{html.escape(str(summary.get('model', '?')))}</p>"
        )
    parts.append(_evaluation_html(summaries))
    if plots:
        parts.append("<h2>Training curves</h2><div class='grid'>")
        parts += [f'<img src="plots/{p.name}" alt="{p.stem}">' for p in plots]
        parts.append("</div>")
    for name, run_dir in zip(names, dirs, strict=True):
        group = shown_group(run_dir)
        if group is not None:
            parts += _group_html(name, group)
    parts.append("</body></html>")
    report = out / "report.html"
    report.write_text("\n".join(parts))
    return report
