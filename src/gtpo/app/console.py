"""What a run prints: transformers' progress bar (with its ETA) and one short line per logged step,
in place of transformers' raw dictionaries. The full metrics go to metrics.jsonl (gtpo.app.pipeline)."""

from __future__ import annotations

from typing import Any

from transformers import PrinterCallback, ProgressCallback, Trainer

# (metric in the trainer's logs, label on the console line)
STEP_LINE = (
    ("loss", "loss"),
    ("reward", "reward"),
    ("accuracy", "accuracy"),
    ("formatting", "format"),
    ("entropy", "entropy"),
    ("gtpo/positive_conflict_share", "conflict+"),
    ("gtpo/negative_conflict_share", "conflict-"),
    ("gtpo/gated_out_share", "gated"),
)


def step_line(phase: str, step: int, max_steps: int, logs: dict[str, Any]) -> str:
    """`rl step 5/200  loss 0.012  reward 7.41  ...` with the metrics of STEP_LINE that the logs hold."""
    parts = [f"{phase} step {step}/{max_steps}"]
    for key, label in STEP_LINE:
        if isinstance(logs.get(key), (int, float)):
            parts.append(f"{label} {logs[key]:.3g}")
    return "  ".join(parts)


class ConsoleLog(ProgressCallback):
    """transformers' progress bar, or none (`disable_tqdm`), with `step_line` for each log entry."""

    def __init__(self, phase: str, bar: bool) -> None:
        super().__init__()
        self.phase = phase
        self.bar = bar

    def on_train_begin(self, args, state, control, **kwargs):
        if self.bar:
            super().on_train_begin(args, state, control, **kwargs)

    def on_step_end(self, args, state, control, **kwargs):
        if self.bar:
            super().on_step_end(args, state, control, **kwargs)

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.bar:
            super().on_prediction_step(args, state, control, eval_dataloader, **kwargs)

    def on_train_end(self, args, state, control, **kwargs):
        if self.bar:
            super().on_train_end(args, state, control, **kwargs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:
            return
        line = step_line(self.phase, state.global_step, state.max_steps, logs)
        if self.training_bar is not None:
            self.training_bar.write(line)
        else:
            print(line, flush=True)


def use_console_log(trainer: Trainer, phase: str) -> None:
    """Replace the trainer's printer or progress callback by ConsoleLog; `phase` starts each line."""
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ConsoleLog(phase, bar=not trainer.args.disable_tqdm))
