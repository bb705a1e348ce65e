"""`seriesforge tune`: parser and command (imports stay lazy: --help is instant and starts no Ray)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES_TUNE = """examples:
  seriesforge tune t2s --preset debug --data captions:./corpus --out sweeps/t2s --trials 8 --max-concurrent 2 \\
      --metric val_loss --mode min --config val.yaml
  seriesforge tune t2s --data captions:./corpus --out sweeps/lr --space space.yaml --trials 20 --max-concurrent 2 \\
      --search optuna --metric loss --mode min
  seriesforge tune --resume sweeps/t2s        # after the driver died: finished trials are not rerun
val.yaml (hold rows out for val_loss, which ASHA then compares):
  data: {val_fraction: 0.05}
space.yaml (overrides the family's default space key by key; null drops a key):
  stages.denoiser.optim.lr: {loguniform: [1e-4, 3e-3]}
  model.depth: {randint: [2, 5]}
  model.dim: {choice: [32, 64]}
"""


def add_parser(sub, *, families: list[str]) -> None:
    tune = sub.add_parser(
        "tune", help="sweep hyperparameters on Ray Tune (every trial is a full training run)", epilog=EXAMPLES_TUNE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sweep a family's hyperparameters with Ray Tune. Every trial is a full `seriesforge train`\n"
                    "run (same strategy layer) in SWEEP_DIR/trials/. The space is the family's default, overridden\n"
                    "by --space; it is checked against the config before Ray starts. ASHA stops weak trials early.\n"
                    "At the end: a table of trials (SWEEP_DIR/results.csv), the best config\n"
                    "(SWEEP_DIR/best/config.yaml, for train --config) and its checkpoint (SWEEP_DIR/best/checkpoint,\n"
                    "for generate and serve).")
    tune.add_argument("family", nargs="?", choices=families, help="model family")
    tune.add_argument("--preset", default="debug", help="base config of every trial (default debug)")
    tune.add_argument("--config", help="YAML file of overrides of the base config")
    tune.add_argument("--data", help="data SPEC, e.g. captions:./corpus")
    tune.add_argument("--out", type=Path, help="new sweep directory")
    tune.add_argument("--space", help="YAML search space: dotted config key -> {loguniform|uniform|randint|choice: "
                                      "[...]}; overrides the family's default space")
    tune.add_argument("--trials", type=int, help="number of trials")
    tune.add_argument("--max-concurrent", type=int, help="trials at a time (capped to what the cluster holds)")
    tune.add_argument("--scheduler", choices=["asha", "fifo"], default="asha", help="asha (early stopping, "
                      "default) or fifo (every trial runs its whole budget)")
    tune.add_argument("--search", choices=["random", "optuna"], default="random",
                      help="random sampling (default) or Optuna's TPE")
    tune.add_argument("--metric", help="reported metric to optimise, e.g. loss")
    tune.add_argument("--mode", choices=["min", "max"], help="minimise or maximise --metric")
    tune.add_argument("--resume", type=Path, metavar="SWEEP_DIR", help="finish an interrupted sweep")
    tune.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else an embedded Ray)")
    tune.set_defaults(func=cmd_tune)


def cmd_tune(args) -> int:
    from seriesforge.errors import ConfigError
    from seriesforge.tune import sweep

    if args.resume:
        result = sweep.resume(args.resume, address=args.address)
    else:
        for flag, value in (("FAMILY", args.family), ("--data", args.data), ("--out", args.out),
                            ("--trials", args.trials), ("--max-concurrent", args.max_concurrent),
                            ("--metric", args.metric), ("--mode", args.mode)):
            if value is None:
                raise ConfigError(f"tune: {flag} is required (or use --resume SWEEP_DIR)")
        from seriesforge import registry
        from seriesforge.tune.space import describe, load_space

        base = registry.build_run_config(args.family, preset=args.preset, data_spec=args.data,
                                         config_file=args.config)
        space = load_space(args.family, base, args.space)  # every space error surfaces here, before Ray
        settings = sweep.SweepSettings(trials=args.trials, max_concurrent=args.max_concurrent, metric=args.metric,
                                       mode=args.mode, scheduler=args.scheduler, search=args.search)
        print("search space\n" + describe(space), flush=True)
        result = sweep.start(base, space, settings, args.out, address=args.address)
    return 0 if result.complete else 1
