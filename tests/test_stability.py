"""benchmarks/stability.py without training: the collapse rule, paired differences and bootstrap
intervals on crafted metric records with hand-computed answers, the command line's refusals, and
every recipe the sweep would run being valid."""

import pytest

from benchmarks import common
from benchmarks import stability as stability_module


@pytest.fixture(scope="module")
def stability():
    """benchmarks/stability.py, imported from the benchmarks package."""
    return stability_module


def records(**series: list[float]) -> list[dict]:
    """One metrics.jsonl record per step (steps from 1), with the given keys."""
    length = len(next(iter(series.values())))
    return [{"step": i + 1, **{key.replace("__", "/"): values[i] for key, values in series.items()}}
            for i in range(length)]  # fmt: skip


def test_first_stretch():
    steps = [1, 2, 3, 4, 5, 6]
    flags = [True, False, True, True, True, False]
    assert common.first_stretch(steps, flags, 3) == 3
    assert common.first_stretch(steps, flags, 4) is None
    assert common.first_stretch([], [], 1) is None


def test_length_collapse(stability):
    # 10-step means of the clipped share pass 0.5 when 6 of the last 10 steps are clipped: index 25.
    clipped = [0.0] * 20 + [1.0] * 30
    metrics = records(completions__clipped_ratio=clipped, formatting=[1.0] * 50, accuracy=[0.5] * 50)
    assert stability.collapse(metrics) == stability.Collapse("length", 26)
    # Clipped on 9 steps only, then short again: the 10-step mean passes 0.5 on 8 steps, not 10.
    metrics = records(completions__clipped_ratio=[0.0] * 20 + [1.0] * 9 + [0.0] * 21, accuracy=[0.5] * 50)
    assert stability.collapse(metrics) is None


def test_formatting_collapse_only_after_the_format_was_held(stability):
    # Low from the start is not a collapse; the mean first reaches 0.52 at index 18 (6 x 0.2 + 4 x 1),
    # then after the fall it drops below 0.5 at index 30 (4 of the last 10 formatted).
    formatting = [0.2] * 15 + [1.0] * 10 + [0.0] * 30
    metrics = records(formatting=formatting, accuracy=[0.0] * 55, completions__clipped_ratio=[0.0] * 55)
    assert stability.collapse(metrics) == stability.Collapse("formatting", 31)
    assert stability.collapse(records(formatting=[0.2] * 55)) is None


def test_accuracy_collapse(stability):
    # Best 0.4; with k steps at 0.1 in the window the mean is 0.4 - 0.03 k, below 0.2 from k = 7.
    metrics = records(accuracy=[0.4] * 20 + [0.1] * 30, formatting=[1.0] * 50)
    assert stability.collapse(metrics) == stability.Collapse("accuracy", 27)
    # A best under 0.1 never counts.
    assert stability.collapse(records(accuracy=[0.08] * 20 + [0.0] * 30)) is None


def test_the_rule_reads_full_windows_only(stability):
    # One lucky first batch: its 1-step mean (1.0) would be the best and 0.15 later less than half
    # of it; from the 10th step on the best is (1 + 9 x 0.15) / 10 = 0.235, and 0.15 is not below half.
    assert stability.collapse(records(accuracy=[1.0] + [0.15] * 40)) is None
    held_best = records(accuracy=[1.0] * 10 + [0.15] * 40)  # below half from 6 low steps in 10
    assert stability.collapse(held_best) == stability.Collapse("accuracy", 16)


def test_earliest_criterion_wins(stability):
    metrics = records(
        accuracy=[0.4] * 20 + [0.1] * 30,  # fires at step 27
        completions__clipped_ratio=[0.0] * 20 + [1.0] * 30,  # fires at step 26
    )
    assert stability.collapse(metrics) == stability.Collapse("length", 26)


def test_held_out_formatting_collapse(stability):
    steady = records(accuracy=[0.5] * 30, formatting=[1.0] * 30, completions__clipped_ratio=[0.0] * 30)
    assert stability.collapse(steady, 0.9, 0.44) == stability.Collapse("held-out formatting", None)
    assert stability.collapse(steady, 0.9, 0.46) is None
    assert stability.collapse(steady) is None
    # A training collapse takes precedence and keeps its step.
    falling = records(accuracy=[0.4] * 20 + [0.1] * 30)
    assert stability.collapse(falling, 0.9, 0.0) == stability.Collapse("accuracy", 27)


def test_records_without_the_rule_metrics(stability):
    assert stability.collapse([{"step": 1, "loss": 0.1}, {"step": 2, "loss": 0.2}]) is None


def test_paired_differences(stability):
    differences = stability.paired_differences({0: 0.5, 1: 0.7, 2: 0.2}, {0: 0.25, 1: 0.7, 2: 0.5})
    assert differences == pytest.approx({0: 0.25, 1: 0.0, 2: -0.3})
    with pytest.raises(ValueError, match=r"same seeds, got \[0, 1\] and \[0, 2\]"):
        stability.paired_differences({0: 0.5, 1: 0.7}, {0: 0.5, 2: 0.7})


def test_bootstrap_ci(stability):
    assert stability.bootstrap_ci([0.3] * 5) == pytest.approx((0.3, 0.3))
    # Means of 2 resampled values of [0, 1]: 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4.
    assert stability.bootstrap_ci([0.0, 1.0]) == (0.0, 1.0)
    # [0, 0, 0, 1]: P(mean = 0) = (3/4)^4 = 0.32; P(mean >= 0.75) = 0.051 and P(mean = 1) = 0.004,
    # so the 2.5% and 97.5% points are 0 and 0.75.
    assert stability.bootstrap_ci([0.0, 0.0, 0.0, 1.0]) == (0.0, 0.75)
    assert stability.bootstrap_ci([0.1, 0.4, 0.2]) == stability.bootstrap_ci([0.1, 0.4, 0.2])
    with pytest.raises(ValueError, match="at least one value"):
        stability.bootstrap_ci([])


def test_summarise(stability):
    collapsed = stability.Collapse("length", 40)
    runs = {
        "grpo_beta0": {
            0: {"collapse": collapsed, "accuracy": 0.1, "formatting": 0.5},
            1: {"collapse": None, "accuracy": 0.3, "formatting": 1.0},
        },
        "gtpo_paper": {
            0: {"collapse": None, "accuracy": 0.4, "formatting": 1.0},
            1: {"collapse": None, "accuracy": 0.2, "formatting": 1.0},
        },
    }
    summary = stability.summarise(runs)
    grpo = summary["variants"]["grpo_beta0"]
    assert (grpo["collapsed"], grpo["runs"], grpo["steps"], grpo["reasons"]) == (1, 2, [40], ["length"])
    assert grpo["accuracy"] == pytest.approx((0.2, 0.1414213562))
    assert summary["variants"]["gtpo_paper"]["formatting"] == (1.0, 0.0)
    pair = summary["pairs"]["gtpo_paper"]
    assert pair["baseline"] == "grpo_beta0"
    assert pair["accuracy"]["by_seed"] == pytest.approx({0: 0.3, 1: -0.1})
    assert pair["accuracy"]["mean"] == pytest.approx(0.1)
    assert pair["accuracy"]["ci"] == pytest.approx((-0.1, 0.3))
    assert pair["formatting"]["by_seed"] == {0: 0.5, 1: 0.0}
    assert pair["collapsed"]["by_seed"] == {0: -1.0, 1: 0.0}
    assert set(summary["pairs"]) == {"gtpo_paper"}  # no other variant has its baseline here


def test_command_line_defaults_and_quick(stability):
    args, extra = stability.parse(["--dataset.limit", "500"])
    assert args.cells == list(stability.MODELS["tiny-demo"].default_cells)
    assert args.variants == list(stability.VARIANTS)
    assert len(args.seeds) >= 5
    assert (args.steps, args.budget_minutes, extra) == (None, None, ["--dataset.limit", "500"])
    study = stability.Study(
        stability.MODELS["tiny-demo"], args.cells, args.variants, args.out, extra, None, None, 1
    )
    assert [study.planned_steps(c) for c in args.cells] == [80] * len(args.cells)
    # a full run writes the tracked files
    assert args.results == stability.RESULTS and args.plots == stability.ROOT / "benchmarks"
    args, _ = stability.parse(["--quick", "--seeds", "7"])
    assert (args.cells, args.seeds, args.steps) == (["lr_1e-3"], [7], 50)
    assert (args.results, args.plots) == (args.out / "results", args.out)  # never tracked files
    args, _ = stability.parse(["--loss_types", "--cells", "all"])
    assert args.variants[-4:] == ["dapo", "dapo_gtpo", "dr_grpo", "dr_grpo_gtpo"]
    assert args.cells == list(stability.DEMO_CELLS)
    args, _ = stability.parse(["--model", "smollm2-135m"])
    assert (args.steps, args.budget_minutes, args.variants) == (None, 30.0, ["grpo_beta0", "gtpo_paper"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--learning_rate", "1e-2"], "--learning_rate: set by this script"),
        (["--max_steps", "10"], "--max_steps: set by this script"),
        (["--cells", "base", "--preset", "paper"], "--preset: set by this script"),
        (["--cells", "lr_9"], "--cells: unknown cell 'lr_9' for tiny-demo"),
        (["--budget_minutes", "5"], "--budget_minutes: only with --model smollm2-135m"),
        (["--model", "smollm2-135m", "--budget_minutes", "0"], "--budget_minutes must be > 0"),
        (["--steps", "0"], "--steps must be >= 1"),
        (["--seeds", "1", "1"], "--seeds: each seed once"),
        (["--variants", "grpo_beta0", "--loss_types"], "--loss_types adds to the default variants"),
        (["--cells", "long", "--steps", "1600"], "cell long: its 1600 RL steps are not a multiple of"),
        (["--cells", "long", "--save_steps", "10"], "--save_steps: set by this script"),
        (["--held_out_every", "0"], "--held_out_every must be >= 1"),
    ],
)
def test_command_line_refusals(stability, capsys, argv, message):
    with pytest.raises(SystemExit):
        stability.parse(argv)
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("model", ["tiny-demo", "smollm2-135m"])
def test_every_run_of_every_cell_is_a_valid_recipe(stability, tmp_path, model):
    args, extra = stability.parse(["--model", model, "--cells", "all", "--out", str(tmp_path)])
    study = stability.Study(stability.MODELS[model], args.cells, args.variants, tmp_path, extra, 10, None, 1)
    stability.check_runs(study, args.seeds)
    bad = stability.Study(
        stability.MODELS[model], args.cells, args.variants, tmp_path, ["--dataset.limit", "0"], 10, None, 1
    )
    with pytest.raises(SystemExit, match=r"--dataset\.limit: must be >= 1, got 0"):
        stability.check_runs(bad, args.seeds)


def test_rl_runs_leave_the_warm_start_to_the_start_runs(stability, tmp_path, monkeypatch):
    """An RL run starts from a start run's rl_start/, and `gtpo train` refuses warm-start settings
    without a warm start: SmolLM2's warm-start flags and a user's go to the start runs only."""
    assert stability.without_warm_start(
        ["--seed", "1", "--warm_start.batch_size", "8", "--warm_start.learning_rate=5e-5", "--beta", "0"]
    ) == ["--seed", "1", "--beta", "0"]
    model = stability.MODELS["smollm2-135m"]
    user = ["--warm_start.steps", "5"]
    study = stability.Study(model, ["lr_1e-4"], ["gtpo_paper"], tmp_path, user, 10, None, 1)
    start = study.start_flags(0, ())
    rl = study.rl_flags("lr_1e-4", "gtpo_paper", 0, tmp_path / "rl_start", 10)
    assert {"warm_start.batch_size", "warm_start.learning_rate"} <= stability.flag_names(start)
    steps = [start[i + 1] for i, flag in enumerate(start) if flag == "--warm_start.steps"]
    assert steps == ["30", "5"]  # the model's, then the user's (the last one wins)
    assert [f for f in rl if f.startswith("--warm_start.")] == ["--warm_start.steps"]
    assert rl[rl.index("--warm_start.steps") + 1] == "0" and str(tmp_path / "rl_start") in rl
    stability.check_runs(study, [0])
    monkeypatch.setattr(stability, "without_warm_start", lambda flags: flags)  # the bug this guards
    refused = r"RL run: .*--warm_start\.batch_size: set, but warm_start\.steps is 0"
    with pytest.raises(SystemExit, match=refused):
        stability.check_runs(study, [0])


def test_curve_area(stability):
    # Trapezoids over [0, 250] and [250, 1000]: (0.2 + 0.4) / 2 * 250 + (0.4 + 0.1) / 2 * 750 = 262.5.
    points = [{"step": 0, "accuracy": 0.2}, {"step": 250, "accuracy": 0.4}, {"step": 1000, "accuracy": 0.1}]
    assert stability.curve_area(points, "accuracy") == pytest.approx(262.5 / 1000)
    assert stability.curve_area(points[:2], "accuracy") == pytest.approx(0.3)
    with pytest.raises(ValueError, match="two points or more, got 1"):
        stability.curve_area(points[:1], "accuracy")


def test_summarise_pairs_the_seeds_both_have_and_the_curve_areas(stability):
    def run(accuracy, area, collapsed=None):
        return {"collapse": collapsed, "accuracy": accuracy, "formatting": 1.0,
                "accuracy_area": area, "formatting_area": 0.9}  # fmt: skip

    runs = {
        "grpo_beta0": {
            0: run(0.1, 0.2, stability.Collapse("accuracy", 300)),
            1: run(0.3, 0.25),
            2: run(0.2, 0.2),
        },
        "gtpo_paper": {0: run(0.4, 0.3), 1: run(0.2, 0.35)},  # seed 2 not run yet
    }
    summary = stability.summarise(runs)
    assert summary["variants"]["grpo_beta0"]["accuracy_area"] == pytest.approx((0.2166666, 0.0288675))
    pair = summary["pairs"]["gtpo_paper"]
    assert pair["seeds"] == [0, 1]
    assert pair["accuracy_area"]["by_seed"] == pytest.approx({0: 0.1, 1: 0.1})
    assert pair["accuracy"]["by_seed"] == pytest.approx({0: 0.3, 1: -0.1})
    assert pair["collapsed"]["by_seed"] == {0: -1.0, 1: 0.0}
    assert pair["formatting_area"]["mean"] == 0.0
    # Without curves (the short cells) there are no area rows.
    short = {v: {s: {k: r[k] for k in ("collapse", "accuracy", "formatting")} for s, r in by.items()}
             for v, by in runs.items()}  # fmt: skip
    assert set(stability.summarise(short)["pairs"]["gtpo_paper"]) == {
        "baseline", "seeds", "accuracy", "formatting", "collapsed"
    }  # fmt: skip


def test_training_series_keeps_trailing_means_at_a_stride(stability):
    metrics = records(entropy=[float(i) for i in range(1, 1501)], accuracy=[0.5] * 1500)
    series = stability.training_series(metrics)
    assert series["step"][:3] == [10, 20, 30] and series["step"][-1] == 1500 and len(series["step"]) == 150
    assert series["entropy"][0] == pytest.approx(5.5)  # mean of 1..10
    assert series["entropy"][-1] == pytest.approx(1495.5)  # mean of 1491..1500
    assert series["formatting"] == []  # not logged: no points
    short = stability.training_series(records(entropy=[1.0, 3.0]))
    assert (short["step"], short["entropy"]) == ([1, 2], [1.0, 2.0])


def test_the_key_pair_runs_on_every_seed_before_the_other_variants(stability, tmp_path):
    variants = ["grpo_beta0", "grpo_beta0.04", "gtpo_paper", "gtpo_official"]
    study = stability.Study(stability.MODELS["tiny-demo"], ["long"], variants, tmp_path, [], None, None, 1)
    assert study.jobs([0, 1]) == [
        ("long", "grpo_beta0", 0), ("long", "gtpo_paper", 0),
        ("long", "grpo_beta0", 1), ("long", "gtpo_paper", 1),
        ("long", "grpo_beta0.04", 0), ("long", "gtpo_official", 0),
        ("long", "grpo_beta0.04", 1), ("long", "gtpo_official", 1),
    ]  # fmt: skip


def test_long_cell_runs(stability, tmp_path):
    """The long cell: 1 prompt x 8 completions, 1,500 steps, a weights-only checkpoint every 250."""
    study = stability.Study(
        stability.MODELS["tiny-demo"], ["long"], ["gtpo_paper"], tmp_path, [], None, None, 1
    )
    assert (study.planned_steps("long"), study.every("long")) == (1500, 250)
    flags = study.rl_flags("long", "gtpo_paper", 3, tmp_path / "rl_start", 1500)

    def last(name):
        return flags[len(flags) - 1 - flags[::-1].index(name) + 1]  # the last one wins

    assert (last("--per_device_train_batch_size"), last("--save_strategy"), last("--save_steps")) == (
        "8", "steps", "250"
    )  # fmt: skip
    assert (last("--max_steps"), last("--save_only_model"), last("--seed")) == ("1500", "true", "3")
    from gtpo.app.pipeline import training_config
    from gtpo.app.recipe import load_recipe

    config = training_config(load_recipe(flags[1], [*flags[2:], "--output_dir", str(tmp_path)]))
    assert config.per_device_train_batch_size // config.num_generations == 1  # one prompt per step
    assert config.gradient_accumulation_steps == 1
    assert config.save_total_limit == 6  # every checkpoint kept (the demo recipe keeps 2)


def test_recorded_runs_are_not_redone(stability, tmp_path):
    """A run whose record exists is read back (no start run, no training), so a later session
    resumes the study; a run not recorded is not started once OUT/STOP exists."""
    results = tmp_path / "results"
    study = stability.Study(
        stability.MODELS["tiny-demo"],
        ["long"],
        ["grpo_beta0", "gtpo_paper"],
        tmp_path,
        [],
        None,
        None,
        1,
        results,
    )
    run = {"cell": "long", "variant": "grpo_beta0", "seed": 1, "steps": 1500,
           "collapse": stability.Collapse("length", 40), "accuracy": 0.5, "formatting": 1.0}  # fmt: skip
    path = study.record_path("long", "grpo_beta0", 1)
    assert path == results / "stability_long" / "grpo_beta0_seed1.json"
    path.parent.mkdir(parents=True)
    path.write_text(__import__("json").dumps(stability.to_record(run)))
    (tmp_path / stability.STOP_FILE).touch()
    assert study.run_all([1], 2) == {"long": {"grpo_beta0": {1: run}}}
    assert study.load_all([0, 1]) == {"long": {"grpo_beta0": {1: run}}}
    assert not (tmp_path / "starts").exists()


def test_tables_and_figure_from_records_with_curves(stability, tmp_path):
    """--report's path: the tables (curve means per step, paired areas, every run) and the figure
    from records alone, with a variant that has fewer seeds than its baseline."""

    def run(seed, points, collapse=None):
        curve = [{"step": s, "accuracy": a, "formatting": 1.0} for s, a in points]
        training = {"step": [10, 20], **{k: [0.5, 0.4] for k in stability.TRAINING_KEYS}}
        return {"seed": seed, "steps": 500, "collapse": collapse,
                "before": {"accuracy": 0.2, "formatting": 0.5}, "held_out": curve,
                "accuracy": curve[-1]["accuracy"], "formatting": 1.0,
                "accuracy_area": stability.curve_area(curve, "accuracy"), "formatting_area": 1.0,
                "training": training, "length_limit": 40, "wall_s": 120.0}  # fmt: skip

    runs = {
        "grpo_beta0": {0: run(0, [(0, 0.2), (250, 0.4), (500, 0.0)], stability.Collapse("accuracy", 300)),
                       1: run(1, [(0, 0.2), (250, 0.6), (500, 0.6)])},
        "gtpo_paper": {0: run(0, [(0, 0.2), (250, 0.4), (500, 0.4)])},
    }  # fmt: skip
    text, summaries = stability.tables({"long": runs})
    assert "| grpo_beta0 | 0.200 / 1.000 | 0.500 / 1.000 | 0.300 / 1.000 |" in text
    # Seed 0 only: areas (0.6 / 2 + 0.8 / 2) / 2 = 0.35 and (0.6 / 2 + 0.4 / 2) / 2 = 0.25.
    assert summaries["long"]["pairs"]["gtpo_paper"]["accuracy_area"]["by_seed"] == pytest.approx({0: 0.1})
    assert "| gtpo_paper - grpo_beta0 | 0 | +0.400 [+0.400, +0.400] |" in text
    assert "| grpo_beta0 | 0 | accuracy at 300 | 0.000 | 1.000 | 0.250 | 1.000 | 2.0 |" in text
    stability.plot_curves("long", runs, tmp_path / "long.png")
    assert (tmp_path / "long.png").stat().st_size > 10_000


def test_a_run_without_curve_areas_counts_for_the_endpoints_only(stability):
    def run(accuracy, area=None):
        areas = {} if area is None else {"accuracy_area": area, "formatting_area": 1.0}
        return {"collapse": None, "accuracy": accuracy, "formatting": 1.0, **areas}

    runs = {"grpo_beta0": {0: run(0.5), 1: run(0.2, 0.3)}, "gtpo_paper": {0: run(0.4, 0.2), 1: run(0.3, 0.5)}}
    summary = stability.summarise(runs)
    pair = summary["pairs"]["gtpo_paper"]
    assert pair["accuracy"]["by_seed"] == pytest.approx({0: -0.1, 1: 0.1})
    assert pair["accuracy_area"]["by_seed"] == pytest.approx({1: 0.2})
    assert summary["variants"]["grpo_beta0"]["accuracy_area"] == (0.3, 0.0)
    assert stability._interval(pair["accuracy_area"], 2) == "+0.200 [+0.200, +0.200] (seeds 1)"
