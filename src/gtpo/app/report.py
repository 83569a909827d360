"""`gtpo report RUN_DIR`: PNG plots over steps and report.html for a run directory.

The report shows the training curves (reward, accuracy, formatting, entropy, conflict-token shares,
gated-out share), the before/after evaluation, and one group of completions sampled from the final
model for a held-out problem, with its conflict tokens highlighted: green where a positive
completion's update is amplified, red (struck through) where a negative completion's update is
skipped.
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


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The run's metrics.jsonl records (a line cut by an interruption left out)."""
    return read_jsonl(run_dir / "metrics.jsonl")


def write_plots(run_dir: Path, records: list[dict[str, Any]]) -> list[Path]:
    """One PNG per plot with data; returns their paths."""
    # matplotlib keeps its font cache in MPLCONFIGDIR (default ~/.cache/matplotlib); unless the user
    # chose a place, keep it in the run directory (read when matplotlib is first imported).
    os.environ.setdefault("MPLCONFIGDIR", str(run_dir / ".cache" / "matplotlib"))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = run_dir / "plots"
    out.mkdir(exist_ok=True)
    written = []
    for name, keys in PLOTS.items():
        series = {k: [(r["step"], r[k]) for r in records if isinstance(r.get(k), (int, float))] for k in keys}
        series = {k: v for k, v in series.items() if v}
        if not series:
            continue
        figure, axis = plt.subplots(figsize=(5, 3.2), dpi=110)
        for key, points in series.items():
            steps, values = zip(*points, strict=True)
            axis.plot(steps, values, label=key, marker="." if len(points) < 30 else None)
        axis.set_xlabel("step")
        axis.set_title(name.replace("_", " "))
        axis.grid(alpha=0.3)
        if len(series) > 1:
            axis.legend(fontsize=7)
        figure.tight_layout()
        path = out / f"{name}.png"
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def _score_group(
    model, tokenizer, row: dict[str, Any], group_size: int, max_new_tokens: int
) -> dict[str, Any]:
    """Sample a group for one problem; rewards, advantages and conflict tokens as in training."""
    import torch

    from gtpo import algorithm
    from gtpo.app.evaluation import generate
    from gtpo.tasks.rewards import correctness_reward, format_reward

    texts = generate(model, tokenizer, [row["prompt"]], group_size, 1.0, max_new_tokens)[0]
    golds = [row["answer"]] * len(texts)
    rewards = torch.tensor(
        [f + c for f, c in zip(format_reward(texts), correctness_reward(texts, golds), strict=True)]
    )
    encoded = [tokenizer(t, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for t in texts]
    length = max(len(ids) for ids in encoded)
    ids = torch.tensor([e + [tokenizer.pad_token_id] * (length - len(e)) for e in encoded])
    mask = torch.tensor([[1] * len(e) + [0] * (length - len(e)) for e in encoded])
    advantages = algorithm.group_advantages(rewards, group_size)
    conflict = algorithm.conflict_mask(ids, mask, advantages, group_size)
    tokens = [[tokenizer.decode([t]) for t in e] for e in encoded]
    return {
        "question": row["prompt"][-1]["content"],
        "answer": row["answer"],
        "completions": [
            {
                "reward": float(rewards[i]),
                "advantage": float(advantages[i]),
                "tokens": tokens[i],
                "conflict": conflict[i, : len(tokens[i])].tolist(),
            }
            for i in range(group_size)
        ],
    }


def sample_group(run_dir: Path, group_size: int = 8, problems: int = 8) -> dict[str, Any] | None:
    """A group sampled from the final model on a held-out problem, preferring the first of
    `problems` problems whose group has both positive and negative completions (so conflict
    tokens can appear). None when the run has no final model or no evaluation set."""
    import torch

    from gtpo.app.models import load_model_and_tokenizer
    from gtpo.app.pipeline import load_dataset_section
    from gtpo.app.recipe import load_recipe

    final = run_dir / "final"
    if not (final / "config.json").exists() or not (run_dir / "config.yaml").exists():
        return None
    recipe = load_recipe(run_dir / "config.yaml")
    if recipe.evaluation.dataset is None:
        return None
    rows = load_dataset_section(recipe.evaluation.dataset, "test", recipe.seed + 1)
    model, tokenizer = load_model_and_tokenizer(str(final))
    torch.manual_seed(recipe.seed)
    group = None
    for row in rows.select(range(min(problems, len(rows)))):
        group = _score_group(model, tokenizer, row, group_size, recipe.evaluation.max_new_tokens)
        signs = {c["advantage"] > 0 for c in group["completions"] if c["advantage"] != 0}
        if signs == {True, False}:
            break
    return group


def _completion_html(completion: dict[str, Any]) -> str:
    sign = completion["advantage"]
    pieces = []
    for token, conflict in zip(completion["tokens"], completion["conflict"], strict=True):
        text = html.escape(token).replace("\n", "&#8629;<br>")
        if conflict and sign > 0:
            pieces.append(f'<span class="amplified" title="update amplified">{text}</span>')
        elif conflict and sign < 0:
            pieces.append(f'<span class="skipped" title="negative update skipped">{text}</span>')
        else:
            pieces.append(text)
    kind = "positive" if sign > 0 else "negative" if sign < 0 else "neutral"
    return (
        f'<div class="completion {kind}"><div class="meta">reward {completion["reward"]:g} · advantage '
        f"{sign:+.2f}</div><code>{''.join(pieces)}</code></div>"
    )


def write_report(run_dir: str | Path, group: dict[str, Any] | None = None) -> Path:
    """Write plots and report.html into run_dir; returns the report's path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: run directory not found")
    records = read_metrics(run_dir)
    plots = write_plots(run_dir, records)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if group is None:
        group = sample_group(run_dir)

    from gtpo.app.pipeline import summary_table

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>GTPO run report</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}",
        "img{width:48%;margin:1%;border:1px solid #ddd}",
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px}",
        ".completion{border-left:4px solid #bbb;margin:8px 0;padding:4px 8px}",
        ".positive{border-color:#2a7}.negative{border-color:#c33}",
        ".amplified{background:#bfe8c8}.skipped{background:#f5c0c0;text-decoration:line-through}",
        ".meta{font-size:80%;color:#666}code{white-space:pre-wrap}",
        "</style></head><body>",
        f"<h1>GTPO run report: {html.escape(run_dir.name)}</h1>",
        f"<p>{len(records)} logged steps · algorithm {html.escape(str(summary.get('algorithm', '?')))}"
        f" · model {html.escape(str(summary.get('model', '?')))}</p>",
    ]
    if "before" in summary and "after" in summary:
        rows = summary_table(summary).strip().splitlines()[2:]
        cells = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(c.strip())}</td>" for c in row.strip("|").split("|"))
            + "</tr>"
            for row in rows
        )
        parts.append(
            "<h2>Held-out evaluation</h2><table><tr><th>metric</th><th>before</th><th>after</th>"
            f"<th>change</th></tr>{cells}</table>"
        )
    if plots:
        parts.append("<h2>Training curves</h2>")
        parts += [f'<img src="plots/{p.name}" alt="{p.stem}">' for p in plots]
    if group is not None:
        parts.append(
            "<h2>One group of completions from the final model</h2>"
            f"<p><b>Question:</b> {html.escape(group['question'])}"
            f" <b>Gold:</b> {html.escape(group['answer'])}</p>"
            '<p>Conflict tokens: <span class="amplified">amplified</span> in positive completions, '
            '<span class="skipped">skipped</span> in negative ones.</p>'
        )
        parts += [_completion_html(c) for c in group["completions"]]
    parts.append("</body></html>")
    report = run_dir / "report.html"
    report.write_text("\n".join(parts))
    return report
