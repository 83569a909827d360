"""The `gtpo` command: train from a YAML recipe, evaluate, write a run report.

gtpo train --config configs/demo.yaml [--field value ...] [--resume]
gtpo eval --model_name_or_path PATH --benchmarks gsm8k math500 --output_dir DIR [...]
gtpo report RUN_DIR [RUN_DIR ...] [--output_dir DIR]
"""

from __future__ import annotations

import argparse
import difflib
import sys
import warnings
from typing import NoReturn

from gtpo.app.recipe import RecipeError, load_recipe


class _Parser(argparse.ArgumentParser):
    """argparse that reports a mistake in one line (`gtpo eval: error: ...`), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _unrecognized(parser: argparse.ArgumentParser, extra: list[str]) -> str:
    """The message for arguments a command does not take, with the nearest flag for the first one."""
    # argparse has no public list of a parser's options; _actions is where it keeps them.
    options = [option for action in parser._actions for option in action.option_strings]
    first = extra[0].split("=", 1)[0]
    close = difflib.get_close_matches(first, options, n=1, cutoff=0.6) if first.startswith("-") else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unrecognized argument {first!r}{hint}"


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `gtpo` parser and its commands' parsers by name."""
    from gtpo.app.evaluation import add_eval_arguments

    parser = _Parser(prog="gtpo", description="GTPO training for TRL")
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser(
        "train",
        help="train from a YAML recipe",
        description="Train from a recipe; override any recipe or GTPOConfig field with --field value.",
    )
    train.add_argument("--config", help="recipe YAML (configs/*.yaml)")
    train.add_argument(
        "--resume", action="store_true", help="continue from the run directory's last checkpoint"
    )
    evaluate = commands.add_parser("eval", help="evaluate a model on benchmarks (pass@k, maj@k)")
    add_eval_arguments(evaluate)
    report = commands.add_parser(
        "report", help="plots and report.html for a run directory, or several runs side by side"
    )
    report.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    report.add_argument("--output_dir", help="where the report of several runs goes")
    return parser, {"train": train, "eval": evaluate, "report": report}


def main(argv: list[str] | None = None) -> int:
    # TRL's configs set the field that transformers 5 renamed; the warning is not the user's to act on
    # and would precede every message of the command.
    warnings.filterwarnings(
        "ignore", message="`gradient_checkpointing` is deprecated", category=FutureWarning
    )
    parser, commands = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        commands[args.command].error(_unrecognized(commands[args.command], extra))
    try:
        if args.command == "train":
            from gtpo.app.pipeline import run_training
            from gtpo.app.report import summary_table

            recipe = load_recipe(args.config, extra)
            run_dir = run_training(recipe, resume=args.resume)
            summary_file = run_dir / "summary.json"
            print(f"run directory: {run_dir}")
            if summary_file.exists():
                import json

                print(summary_table(json.loads(summary_file.read_text())), end="")
            return 0
        if args.command == "eval":
            from gtpo.app.evaluation import run_eval

            return run_eval(args)
        from gtpo.app.report import write_report

        print(write_report(args.run_dirs, args.output_dir))
        return 0
    except (RecipeError, ValueError, FileNotFoundError) as error:
        print(f"gtpo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
