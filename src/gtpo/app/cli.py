"""The `gtpo` command: train from a YAML recipe, evaluate, write a run report.

gtpo train --config configs/demo.yaml [--field value ...] [--resume]
gtpo eval --model_name_or_path PATH --benchmarks gsm8k math500 --output_dir DIR [...]
gtpo report RUN_DIR [RUN_DIR ...] [--output_dir DIR]

`gtpo train --help` and `gtpo eval --help` list every field with its help text and default.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from typing import NoReturn

from gtpo.app.help import help_lines
from gtpo.app.options import ConfigError, fields_of, load_flags
from gtpo.distributed import fail_fast, is_main
from gtpo.rules import did_you_mean

TRAIN_USAGE = "usage: gtpo train --config RECIPE.yaml [--resume] [--FIELD VALUE ...]"
EVAL_USAGE = "usage: gtpo eval --model_name_or_path M --benchmarks NAME [...] --output_dir DIR [--FIELD ...]"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line (`gtpo eval: error: ...`), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> _Parser:
    parser = _Parser(prog="gtpo", description="GTPO training for TRL", allow_abbrev=False)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train from a YAML recipe", add_help=False, allow_abbrev=False)
    train.add_argument("--config")
    train.add_argument("--resume", action="store_true")
    commands.add_parser("eval", help="evaluate a model on benchmarks (pass@k, maj@k)", add_help=False)
    report = commands.add_parser(
        "report", help="plots and report.html for one run, or several side by side", allow_abbrev=False
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--output_dir", help="where the report of several runs goes")
    return parser


def train_help() -> str:
    """Every recipe field and every GTPOConfig field `gtpo train` uses, with its help text and default."""
    from trl import GRPOConfig

    from gtpo.app.recipe import Recipe
    from gtpo.config import GTPOConfig, field_choices

    sections = [f.name for f in dataclasses.fields(Recipe) if f.name != "training"]
    grpo = {f.name for f in dataclasses.fields(GRPOConfig)}
    usable = [path.removeprefix("training.") for path, _ in fields_of(Recipe) if path.startswith("training.")]
    gtpo_fields = [name for name in usable if name not in grpo or name == "loss_type"]
    trl_fields = [name for name in usable if name in grpo and name != "loss_type"]
    choices = field_choices()
    return "\n".join([
        TRAIN_USAGE, "",
        "Train from a recipe; any field below can be set in the recipe or overridden with --field value.", "",
        "  --config RECIPE.yaml", "      The recipe (configs/*.yaml); without it, the defaults below.",
        "  --resume", "      Continue the run in training.output_dir from its last checkpoint.", "",
        "recipe (a section's field as --section.field):",
        *help_lines(Recipe, sections),
        "",
        "training, GTPO (GTPOConfig; also as --training.field):",
        *help_lines(GTPOConfig, gtpo_fields, sections=False, choices=choices),
        "",
        "training, TRL's GRPOConfig and transformers' TrainingArguments:",
        *help_lines(GTPOConfig, trl_fields, sections=False, choices=choices),
    ]) + "\n"  # fmt: skip


def eval_help() -> str:
    """EvalConfig's fields: what is evaluated, then how (EvalSettings, also evaluate()'s arguments)."""
    from gtpo.app.evaluation.settings import EvalConfig, EvalSettings

    how = [f.name for f in dataclasses.fields(EvalSettings)]
    what = [f.name for f in dataclasses.fields(EvalConfig) if f.name not in how]
    return "\n".join([
        EVAL_USAGE, "", EvalConfig.__doc__ or "", "", *help_lines(EvalConfig, what), "",
        "settings (EvalSettings; the keyword arguments of gtpo.app.evaluation.evaluate, same defaults):",
        *help_lines(EvalConfig, how),
    ]) + "\n"  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    # TRL's configs set the field that transformers 5 renamed; the warning is not the user's to act on.
    warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
    argv = sys.argv[1:] if argv is None else argv
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    command = args.command
    if command == "report" and extra:
        first = extra[0].split("=", 1)[0]
        hint = did_you_mean(first, ["--output_dir"])
        parser.exit(2, f"gtpo report: error: unrecognized argument {first!r}{hint}\n")
    if {"-h", "--help"} & set(extra):
        print(train_help() if command == "train" else eval_help(), end="")
        return 0
    return fail_fast(command, lambda: _run(args, extra))


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    command = args.command
    try:
        if command == "train":
            return _train(args.config, extra, args.resume)
        if command == "eval":
            from gtpo.app.evaluation import run_eval
            from gtpo.app.evaluation.settings import EvalConfig

            return run_eval(load_flags(EvalConfig, extra))
        from gtpo.app.report import write_report

        print(write_report(args.run_dirs, args.output_dir))
        return 0
    except (ConfigError, ValueError, FileNotFoundError) as error:
        print(f"gtpo {command}: error: {error}", file=sys.stderr)
        return 2


def _train(config: str | None, overrides: list[str], resume: bool) -> int:
    import json

    from gtpo.app.pipeline import run_training
    from gtpo.app.recipe import load_recipe
    from gtpo.app.report import summary_table
    from gtpo.trainer import end_process_group

    run_dir = run_training(load_recipe(config, overrides), resume=resume)
    end_process_group()  # the trainer is gone once run_training returns (a failure: see fail_fast)
    if not is_main():
        return 0
    print(f"run directory: {run_dir}")
    summary_file = run_dir / "summary.json"
    if summary_file.exists():
        print(summary_table(json.loads(summary_file.read_text())), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
