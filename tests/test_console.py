"""What a run prints: one short line per logged step, never transformers' raw dictionaries."""

from transformers import TrainerControl, TrainerState, TrainingArguments

from gtpo.app.console import ConsoleLog, step_line


def test_step_line_names_the_phase_and_the_metrics_it_has():
    logs = {"loss": 0.01234, "reward": 7.4, "accuracy": 0.5, "entropy": 1.25, "gtpo/gated_out_share": 0.0,
            "rewards/format_reward/mean": 9.0, "learning_rate": 1e-4}  # fmt: skip
    expected = "rl step 5/200  loss 0.0123  reward 7.4  accuracy 0.5  entropy 1.25  gated 0"
    assert step_line("rl", 5, 200, logs) == expected


def test_console_log_prints_one_line_per_log_and_nothing_at_the_end(tmp_path, capsys):
    args = TrainingArguments(output_dir=str(tmp_path), disable_tqdm=True, report_to="none", use_cpu=True)
    state = TrainerState(global_step=3, max_steps=10)
    console = ConsoleLog("warm start", bar=False)
    console.on_train_begin(args, state, TrainerControl())
    console.on_log(args, state, TrainerControl(), logs={"loss": 2.5, "grad_norm": 1.0})
    console.on_log(args, state, TrainerControl(), logs={"train_runtime": 12.0, "train_loss": 2.0})
    console.on_train_end(args, state, TrainerControl())
    captured = capsys.readouterr()
    assert captured.out == "warm start step 3/10  loss 2.5\n" and captured.err == ""
