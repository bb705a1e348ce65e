"""`seriesforge eval` and `seriesforge eval fcn train`: parsers and commands (imports stay lazy: --help is instant)."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """examples:
  seriesforge eval --checkpoint runs/t2s --data captions:./corpus --out reports/t2s     # MSE, WAPE, MRR@10
  seriesforge eval --real-vs-real --data ucr:./UCRArchive_2018/GunPoint --out reports/gunpoint-floor
  seriesforge eval --real-vs-real --data sines:24 --out reports/sines --repeats 5
  seriesforge eval --real-vs-real --data csv:./stock_data.csv:24 --out reports/stocks --metrics discriminative
  seriesforge eval fcn train --data ucr:./UCRArchive_2018/GunPoint      # the FCN feature extractor, cached

suites (chosen by the data SPEC; metrics.md has every protocol):
  sines:L, csv:PATH:L   discriminative, predictive, context_fid, correlational   (5 repeats)
  ucr:DIR               fid (+fid_iforest), is, rocket_fid (+rocket_fid_iforest), cfid, cas   (3 repeats)
  captions:DIR          mse (+mae, wape), mrr10_code, mrr10_retrieval   (per length, on held-out pairs)
Every report also scores real-vs-real (the floor) and a naive baseline, and flags a metric whose floor is not
clearly better than naive. REPORT_DIR gets metrics.json (every repeat's raw value and seed), report.md and PNGs.
"""


def add_parser(sub) -> None:
    ev = sub.add_parser(
        "eval", help="score a checkpoint (or real data alone) with the papers' metrics, as Ray tasks",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Generate the protocol's number of samples from --checkpoint and score them against the real\n"
                    "data named by --data, beside a real-vs-real floor and a naive baseline. Each (metric, repeat)\n"
                    "is one Ray task. Without a checkpoint (--real-vs-real) only the two baselines are scored.")
    ev.add_argument("--checkpoint", type=Path, help="checkpoint or run directory to sample from")
    ev.add_argument("--real-vs-real", action="store_true", help="no checkpoint: score the baselines only")
    ev.add_argument("--data", help="data SPEC: sines:L, csv:PATH:L, ucr:DIR or captions:DIR")
    ev.add_argument("--out", type=Path, help="report directory (metrics.json, report.md, plots)")
    ev.add_argument("--metrics", help="comma-separated subset of the suite's metrics (default: all)")
    ev.add_argument("--repeats", type=int, help="repeats per metric (default: 5 benchmark, 3 ucr, 1 text)")
    ev.add_argument("--n", type=int, help="samples to generate (default: the protocol's; text: items per length, "
                                          "256)")
    ev.add_argument("--protocol", choices=["paper", "cpu", "smoke"], default="paper",
                    help="paper: metrics.md budgets (default); cpu: paper, but the UCR CAS classifier trains 100 "
                         "epochs instead of 1 000; smoke: tiny budgets for quick checks, not comparable")
    ev.add_argument("--steps", type=int, help="sampler steps (default: the family's)")
    ev.add_argument("--refine", action="store_true",
                    help="score refined samples (TimeVQVAE's neural mapper, trained as its stage 'mapper')")
    ev.add_argument("--lengths", help="text: comma-separated lengths (default: the checkpoint's data.lengths)")
    ev.add_argument("--holdout-fraction", type=float,
                    help="text without a checkpoint: score held-out rows of this fraction (as data.val_fraction)")
    ev.add_argument("--seed", type=int, default=0, help="seed of samples and metric repeats (default 0)")
    ev.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else an embedded Ray)")
    ev.set_defaults(func=cmd_eval)
    inner = ev.add_subparsers(dest="eval_command", metavar="fcn train")
    fcn = inner.add_parser("fcn", help="the UCR suite's FCN feature extractor").add_subparsers(
        dest="fcn_command", required=True, metavar="train")
    train = fcn.add_parser("train", help="train (or find cached) the FCN of one UCR dataset",
                           description="Train the supervised FCN v1 of metrics.md §5.1 on a dataset's train split "
                                       "and cache it (weights, sha256, test accuracy) for every later evaluation.")
    train.add_argument("--data", required=True, help="ucr:DIR, one dataset folder")
    train.add_argument("--epochs", type=int, default=1000, help="training epochs (default 1000, the protocol)")
    train.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    train.add_argument("--cache", type=Path, help="cache directory (default: _seriesforge_cache/eval beside it)")
    train.set_defaults(func=cmd_fcn_train)


def cmd_eval(args) -> int:
    from seriesforge.errors import ConfigError
    from seriesforge.eval.runner import EvalRequest, evaluate

    if args.data is None or args.out is None:
        raise ConfigError("eval: --data and --out are required")
    if bool(args.checkpoint) == bool(args.real_vs_real):
        raise ConfigError("eval: give --checkpoint DIR, or --real-vs-real for the baselines alone (not both)")
    req = EvalRequest(
        data=args.data, out=args.out, checkpoint=args.checkpoint, repeats=args.repeats, n=args.n,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None,
        protocol=args.protocol, seed=args.seed, steps=args.steps, refine=args.refine,
        holdout_fraction=args.holdout_fraction,
        lengths=[int(x) for x in args.lengths.split(",")] if args.lengths else None, address=args.address)
    evaluate(req)
    print(f"report    {args.out / 'report.md'}\nmetrics   {args.out / 'metrics.json'}")
    return 0


def cmd_fcn_train(args) -> int:
    from seriesforge.data.specs import check_readable
    from seriesforge.errors import ConfigError
    from seriesforge.eval import assets, real_data
    from seriesforge.eval.metrics.fcn import FCNTrainConfig
    from seriesforge.runtime import init_ray

    spec = check_readable(args.data)
    if spec.kind != "ucr":
        raise ConfigError(f"--data {args.data}: the FCN is trained on a UCR dataset (ucr:DIR)")
    data = real_data.load(spec)
    root = args.cache or assets.cache_root(spec.path, Path.cwd() / "_seriesforge_cache" / "eval")
    print(init_ray(None, min_cpus=1), flush=True)
    target, info = assets.ensure_fcn(root, data, "original", FCNTrainConfig(epochs=args.epochs, seed=args.seed))
    print(f"FCN {target}\ntest accuracy {info['test_accuracy']:.4f} ({data.name}, {len(data.real)} test series)")
    return 0
