"""gtpo report: renders a run directory's stored files (no model), one run or several overlaid."""

import json

import pytest

from gtpo.app.cli import main
from gtpo.app.report import shown_group, summary_table


def _run(path, algorithm, rewards, advantages):
    """A run directory as `gtpo train` leaves it, without model, checkpoints or plots."""
    path.mkdir()
    metrics = [{"step": s, "reward": r, "accuracy": r / 20, "entropy": 1.0 - s / 10}
               for s, r in enumerate(rewards, 1)]  # fmt: skip
    (path / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    summary = {"algorithm": algorithm, "model": "tiny-test", "before": {"accuracy": 0.25, "formatting": 0.5},
               "after": {"accuracy": 0.75, "formatting": 1.0}}  # fmt: skip
    (path / "summary.json").write_text(json.dumps(summary))
    group = {
        "step": 3,
        "prompt": "What is 2 + <2>?",
        "completion_ids": [[5, 6, 7], [5, 6, 8]],
        "tokens": [["<answer>", "4", "</answer>"], ["<answer>", "5", "</answer>"]],
        "rewards": {"format_reward": [10.0, 10.0], "correctness_reward": [10.0, 0.0]},
        "advantages": advantages,
        "conflict": [[1, 0, 0], [1, 0, 0]],
        "weights": [[2.0, 1.0, 1.0], [0.0, 1.0, 1.0]],
    }
    (path / "samples.jsonl").write_text(json.dumps({**group, "step": 1, "advantages": [0.0, 0.0]}) + "\n"
                                        + json.dumps(group) + "\n")  # fmt: skip
    return path


def test_one_run_report_shows_curves_evaluation_and_conflict_tokens(tmp_path):
    run = _run(tmp_path / "gtpo-run", "gtpo", [2.0, 5.0, 8.0], [0.7, -0.7])
    assert main(["report", str(run)]) == 0
    report = (run / "report.html").read_text()
    assert "grid-template-columns:1fr 1fr" in report
    for plot in ("reward", "accuracy", "entropy"):
        assert f'src="plots/{plot}.png"' in report and (run / "plots" / f"{plot}.png").stat().st_size > 1000
    assert "<td>accuracy</td><td>0.250</td><td>0.750</td><td>+0.500</td>" in report
    assert "a group trained on at step 3" in report  # the mixed group, not the later-logged tie
    assert '<span class="amplified" title="update amplified">&lt;answer&gt;</span>' in report
    assert '<span class="skipped" title="negative update skipped">&lt;answer&gt;</span>' in report
    assert "What is 2 + &lt;2&gt;?" in report and "correctness_reward 0" in report


def test_several_runs_are_overlaid_into_the_output_directory(tmp_path, capsys):
    gtpo = _run(tmp_path / "gtpo", "gtpo", [2.0, 5.0, 8.0], [0.7, -0.7])
    grpo = _run(tmp_path / "grpo", "grpo", [1.0, 2.0], [0.7, -0.7])
    assert main(["report", str(gtpo), str(grpo)]) == 2
    assert "--output_dir: needed to compare several runs" in capsys.readouterr().err
    out = tmp_path / "compare"
    assert main(["report", str(gtpo), str(grpo), "--output_dir", str(out)]) == 0
    report = (out / "report.html").read_text()
    assert "gtpo vs grpo" in report
    assert report.count("<td>accuracy</td>") == 2 and "<td>grpo</td>" in report
    assert (out / "plots" / "reward.png").exists() and not (gtpo / "report.html").exists()


def test_a_directory_that_is_no_run_is_refused_in_one_line(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.strip().endswith("missing: run directory not found")
    assert main(["report", str(tmp_path)]) == 2
    assert "not a run directory (no metrics.jsonl or summary.json)" in capsys.readouterr().err


def test_shown_group_prefers_the_latest_with_both_signs(tmp_path):
    run = _run(tmp_path / "run", "gtpo", [1.0], [0.5, -0.5])
    assert shown_group(run)["step"] == 3
    (run / "samples.jsonl").unlink()
    assert shown_group(run) is None


@pytest.mark.parametrize("after", [0.5, 0.75])
def test_summary_table_gives_the_change(after):
    table = summary_table({"before": {"accuracy": 0.5}, "after": {"accuracy": after}})
    assert f"| accuracy | 0.500 | {after:.3f} | {after - 0.5:+.3f} |" in table


def test_only_what_was_measured_is_tabled(tmp_path):
    after_only = {"after": {"accuracy": 0.75, "formatting": 1.0}}  # evaluation.before_training false
    assert summary_table(after_only).splitlines() == [
        "| metric | after |",
        "|---|---|",
        "| accuracy | 0.750 |",
        "| formatting | 1.000 |",
    ]
    assert summary_table({"algorithm": "gtpo"}) == ""  # no evaluation dataset: no table at all
    run = _run(tmp_path / "after-only", "gtpo", [1.0], [0.5, -0.5])
    (run / "summary.json").write_text(json.dumps({"algorithm": "gtpo", **after_only}))
    assert main(["report", str(run)]) == 0
    report = (run / "report.html").read_text()
    assert "<tr><th>run</th><th>metric</th><th>after</th></tr>" in report
    assert "<td>accuracy</td><td>0.750</td></tr>" in report and "before" not in report
    both = _run(tmp_path / "both", "gtpo", [1.0], [0.5, -0.5])
    assert main(["report", str(run), str(both), "--output_dir", str(tmp_path / "compare")]) == 0
    report = (tmp_path / "compare" / "report.html").read_text()
    assert "<th>before</th><th>after</th><th>change</th>" in report
    assert "<td>after-only</td><td>accuracy</td><td>–</td><td>0.750</td><td>–</td>" in report
    assert "<td>both</td><td>accuracy</td><td>0.250</td><td>0.750</td><td>+0.500</td>" in report
