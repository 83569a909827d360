"""The `gtpo` command: train from a YAML recipe, evaluate, write a run report.

gtpo train --config configs/demo.yaml [--field value ...] [--resume]
gtpo eval --model_name_or_path PATH --benchmarks gsm8k math500 --output_dir DIR [...]
gtpo report RUN_DIR
"""

from __future__ import annotations

import argparse
import sys

from gtpo.recipe import RecipeError, load_recipe


def _parser() -> argparse.ArgumentParser:
    from gtpo.evaluation import add_eval_arguments

    parser = argparse.ArgumentParser(prog="gtpo", description="GTPO training for TRL")
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
    add_eval_arguments(commands.add_parser("eval", help="evaluate a model on benchmarks (pass@k, maj@k)"))
    report = commands.add_parser("report", help="plots and report.html for a run directory")
    report.add_argument("run_dir")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "train":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        if args.command == "train":
            from gtpo.pipeline import run_training, summary_table

            recipe = load_recipe(args.config, extra)
            run_dir = run_training(recipe, resume=args.resume)
            summary_file = run_dir / "summary.json"
            print(f"run directory: {run_dir}")
            if summary_file.exists():
                import json

                print(summary_table(json.loads(summary_file.read_text())), end="")
            return 0
        if args.command == "eval":
            from gtpo.evaluation import run_eval

            return run_eval(args)
        from gtpo.report import write_report

        print(write_report(args.run_dir))
        return 0
    except (RecipeError, ValueError, FileNotFoundError) as error:
        print(f"gtpo {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
