"""The `seriesforge` command. Subcommands map to library functions; imports happen inside them so that
`seriesforge --help` is instant and never starts Ray.

    seriesforge data captions make|inspect    stand-in TSFragment-600K corpora
    seriesforge data ucr inspect ROOT         the UCR 2018 archive: one dataset folder or many
    seriesforge data ucr prepare ROOT ...     chosen UCR datasets as Ray Datasets, written as parquet
    seriesforge train FAMILY ...              train every stage of a family on Ray Train
    seriesforge tune FAMILY ...               a hyperparameter sweep on Ray Tune; every trial is a training run
    seriesforge eval --checkpoint DIR ...     the papers' metrics, baselines and plots, as Ray tasks
    seriesforge generate --checkpoint ...     sample series to .npy, .parquet or .png (--endpoint: from a server)
    seriesforge serve --checkpoint DIR ...    serve checkpoints over HTTP with Ray Serve, until SIGINT/SIGTERM
    seriesforge submit train|tune|eval ...    the same commands as Ray jobs on a cluster (Ray Jobs API)
    seriesforge jobs list|logs|status|stop    follow and manage those jobs

User errors (bad config, data, checkpoint or request) print one line naming what and where, and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from seriesforge.errors import SeriesforgeError

EXAMPLES_TRAIN = """examples:
  seriesforge train t2s --preset debug --data captions:./corpus --out runs/t2s-debug
  seriesforge train t2s --preset small --data captions:./corpus --out runs/t2s --set stages.denoiser.steps=2000
  seriesforge train t2s --resume runs/t2s --set stages.denoiser.steps=4000   # continue, with a larger budget
"""

EXAMPLES_SERVE = """examples:
  seriesforge serve --checkpoint runs/t2s                                  # model 't2s' on http://127.0.0.1:8000
  seriesforge serve --checkpoint gunpoint=runs/gp --checkpoint ecg=runs/ecg --config serve/config.yaml
  SERIESFORGE_API_KEY=... seriesforge serve --checkpoint runs/t2s --api-key-env SERIESFORGE_API_KEY --port 8080
  seriesforge generate --endpoint http://127.0.0.1:8000 --model t2s --caption "rises" --length 48 --out x.npy
"""

EXAMPLES_UCR_PREPARE = """examples:
  seriesforge data ucr prepare ./UCRArchive_2018 --datasets GunPoint,ArrowHead --out prepared/ucr
  seriesforge data ucr prepare ./UCRArchive_2018 --datasets all --resplit 0.8 --seed 0 --out prepared/ucr-80-20
"""


def _families() -> list[str]:
    from seriesforge import registry

    return registry.names()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seriesforge", description="Train, tune and serve generative time-series models on Ray.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Every command has --help. Data SPECs: captions:DIR (a caption corpus), ucr:DIR (one UCR "
               "dataset folder), sines:L (generated Sines, length L), csv:PATH:L (a numeric CSV, windows of L).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data(sub)
    _add_train(sub)
    _add_tune(sub)
    _add_eval(sub)
    _add_generate(sub)
    _add_serve(sub)
    _add_jobs(sub)
    return parser


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="make and inspect datasets", description="Make and inspect datasets.")
    kinds = data.add_subparsers(dest="data_kind", required=True, metavar="KIND")
    captions = kinds.add_parser("captions", help="text–series caption corpora (TSFragment-600K layout)",
                                description="Text–series caption corpora in the TSFragment-600K layout.")
    actions = captions.add_subparsers(dest="action", required=True, metavar="ACTION")
    make = actions.add_parser(
        "make", help="write a deterministic stand-in corpus",
        description="Write a stand-in caption corpus: synthetic fragments (trends, seasonality, level shifts, "
                    "spikes, regime changes, noise, random walks) with truthful captions at three levels.")
    make.add_argument("--n", type=int, required=True, help="number of caption–series pairs")
    make.add_argument("--out", type=Path, required=True, help="output directory (must not hold a corpus)")
    make.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    make.add_argument("--format", choices=["parquet", "tsfragment"], default="parquet",
                      help="parquet: sharded internal schema; tsfragment: the published CSV files")
    make.add_argument("--lengths", default="24,48,96", help="comma-separated series lengths (default 24,48,96)")
    make.set_defaults(func=cmd_captions_make)
    inspect = actions.add_parser("inspect", help="summarise a corpus directory",
                                 description="Print layout, pair counts per length/domain/level and examples.")
    inspect.add_argument("dir", type=Path, help="corpus directory")
    inspect.set_defaults(func=cmd_captions_inspect)
    ucr = kinds.add_parser("ucr", help="the UCR 2018 time-series classification archive",
                           description="The UCR 2018 archive layout: ROOT/NAME/NAME_TRAIN.tsv and NAME_TEST.tsv.")
    ucr_actions = ucr.add_subparsers(dest="action", required=True, metavar="ACTION")
    ucr_inspect = ucr_actions.add_parser(
        "inspect", help="tabulate the datasets under ROOT",
        description="Print one row per dataset: name, train/test counts, length (max; '*' when variable), "
                    "number of classes. Every row of every file is parsed, so a bad file fails here, named.")
    ucr_inspect.add_argument("root", type=Path, help="one dataset folder, or a folder holding many")
    ucr_inspect.set_defaults(func=cmd_ucr_inspect)
    ucr_prepare = ucr_actions.add_parser(
        "prepare", help="build Ray Datasets of chosen datasets and write them as parquet",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES_UCR_PREPARE,
        description="One job for many datasets: each becomes its own Ray Dataset (series z-scored with train\n"
                    "statistics, labels re-encoded to 0..C-1), written to OUT/NAME/{train,test}/*.parquet with\n"
                    "label_map.json (original label -> encoded) and meta.json (length, classes, normalisation,\n"
                    "re-split). Each OUT/NAME appears whole or not at all; an existing one is an error.\n"
                    "Starts an embedded local Ray unless RAY_ADDRESS names a cluster. Prints one table row per\n"
                    "dataset: name, train/test rows, length, classes.")
    ucr_prepare.add_argument("root", type=Path, help="one dataset folder, or a folder holding many")
    ucr_prepare.add_argument("--datasets", required=True, metavar="NAMES",
                             help="comma-separated dataset names (e.g. GunPoint,ArrowHead), or all")
    ucr_prepare.add_argument("--out", type=Path, required=True, help="output directory; gets one folder per dataset")
    ucr_prepare.add_argument("--resplit", type=float, metavar="TRAIN_FRACTION",
                             help="merge TRAIN and TEST and re-split them stratified, keeping this fraction for "
                                  "training (0.8 = the 80/20 split of TimeVQVAE); default: the archive's split")
    ucr_prepare.add_argument("--seed", type=int, default=0, help="seed of the re-split (default 0)")
    ucr_prepare.add_argument("--on-bad-row", choices=["error", "skip"], default="error",
                             help="a malformed row stops the job naming file, row and column (error, default) or "
                                  "is left out and counted in the table (skip)")
    ucr_prepare.set_defaults(func=cmd_ucr_prepare)


def _add_train(sub) -> None:
    train = sub.add_parser(
        "train", help="train a family on Ray Train", epilog=EXAMPLES_TRAIN,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train every stage of FAMILY with Ray Train (DeepSpeed, DDP or one process). Starts an "
                    "embedded local Ray unless --address or RAY_ADDRESS names a cluster. Config = preset, then "
                    "--config YAML, then --set overrides; the resolved config is saved in RUN_DIR.")
    train.add_argument("family", nargs="?", choices=_families(), help="model family")
    train.add_argument("--preset", default="debug", help="named starting config: debug, small, paper (default debug)")
    train.add_argument("--config", help="YAML file of overrides, same keys as the saved config.json")
    train.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override one config value, e.g. stages.denoiser.optim.lr=3e-4 (repeatable)")
    train.add_argument("--data", help="data SPEC, e.g. captions:./corpus")
    train.add_argument("--out", type=Path, help="new run directory")
    train.add_argument("--workers", type=int, help="Ray Train workers (default from the preset: 2)")
    train.add_argument("--strategy", choices=["deepspeed", "ddp", "single"],
                       help="deepspeed (ZeRO stage from strategy.zero_stage), ddp, or single (one process)")
    train.add_argument("--resume", type=Path, metavar="RUN_DIR",
                       help="continue RUN_DIR from its latest checkpoint (optimizer state and step restored)")
    train.add_argument("--from", dest="from_checkpoint", type=Path, metavar="CKPT",
                       help="start from this checkpoint (e.g. RUN_DIR/stages/0_vqvae): its config and weights; "
                            "the stages it has done are skipped. --preset is not used; --set/--config still apply")
    train.add_argument("--stage", action="append", metavar="NAME",
                       help="with --from: train only this stage (repeatable), e.g. re-run a prior on a stored "
                            "tokenizer")
    train.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else an embedded Ray)")
    train.set_defaults(func=cmd_train)


def _add_tune(sub) -> None:
    from seriesforge.tune.commands import add_parser

    add_parser(sub, families=_families())


def _add_eval(sub) -> None:
    from seriesforge.eval.commands import add_parser

    add_parser(sub)


def _add_generate(sub) -> None:
    gen = sub.add_parser(
        "generate", help="sample series from a checkpoint or a running server",
        description="Sample series from a trained checkpoint (--checkpoint, in this process) or from a seriesforge "
                    "server (--endpoint and --model) and write them by the --out suffix: .npy (N, K, L), .parquet "
                    "(one row per series) or .png (a grid: captions x lengths).")
    source = gen.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", type=Path,
                        help="a run directory (its latest complete checkpoint) or one checkpoint directory")
    source.add_argument("--endpoint", metavar="URL", help="a `seriesforge serve` server, e.g. http://127.0.0.1:8000")
    gen.add_argument("--model", help="with --endpoint: the model name (see GET URL/v1/models)")
    gen.add_argument("--api-key-env", metavar="NAME", help="with --endpoint: env var holding the server's API key")
    cond = gen.add_mutually_exclusive_group(required=True)
    cond.add_argument("--caption", action="append", help="caption to condition on (repeatable)")
    cond.add_argument("--n", type=int, help="number of unconditional samples")
    gen.add_argument("--length", type=int, action="append", required=True,
                     help="series length; repeat for several (not with .npy)")
    gen.add_argument("--label", type=int, action="append", metavar="CLASS",
                     help="with --n: class-conditional samples of this class (0..C-1, the UCR reader's encoding; "
                          "repeatable, one panel per class)")
    gen.add_argument("--refine", action="store_true",
                     help="apply the model's refiner to each sample (TimeVQVAE's neural mapper, stage 'mapper')")
    gen.add_argument("--samples-per-caption", type=int, default=1, help="samples drawn per caption (default 1)")
    gen.add_argument("--steps", type=int, help="ODE/sampler steps (default from the checkpoint's config)")
    gen.add_argument("--guidance", type=float, help="classifier-free guidance scale (default from config)")
    gen.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    gen.add_argument("--out", type=Path, required=True, help="output file: .npy, .parquet or .png")
    gen.set_defaults(func=cmd_generate)


def _add_serve(sub) -> None:
    srv = sub.add_parser(
        "serve", help="serve checkpoints over HTTP with Ray Serve", epilog=EXAMPLES_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Deploy one or many checkpoints (any family) as a Ray Serve application: POST /v1/generate,\n"
                    "GET /v1/models, GET /v1/stats, GET /healthz, OpenAPI at /docs. Starts an embedded local Ray\n"
                    "unless RAY_ADDRESS names a cluster; stays in the foreground and shuts down on Ctrl-C or\n"
                    "SIGTERM. --config takes a Serve config file (serve/config.yaml, also `serve run`-able);\n"
                    "flags override it. Binds to 127.0.0.1 unless --host or the config says otherwise.")
    srv.add_argument("--checkpoint", action="append", default=[], metavar="[NAME=]DIR",
                     help="a run or checkpoint directory to serve as model NAME (default: DIR's name); repeatable. "
                          "Replaces the config's models")
    srv.add_argument("--config", type=Path, help="Serve config YAML (batching, autoscaling, replica, limits)")
    srv.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    srv.add_argument("--port", type=int, help="port to listen on (default 8000)")
    srv.add_argument("--api-key-env", metavar="NAME",
                     help="require a bearer token: the key is read from env var NAME at start (never printed)")
    srv.set_defaults(func=cmd_serve)


def _add_jobs(sub) -> None:
    from seriesforge.submit.commands import add_parsers

    add_parsers(sub)


# ----------------------------------------------------------------------------------------------------------------


def cmd_captions_make(args) -> int:
    from tqdm import tqdm

    from seriesforge.data.sources import captions_synth as synth

    lengths = _parse_lengths(args.lengths)
    if args.n <= 0:
        raise SeriesforgeError(f"--n: must be a positive number of pairs, got {args.n}")
    writer = synth.write_parquet_corpus if args.format == "parquet" else synth.write_tsfragment_corpus
    with tqdm(total=args.n, unit="pair", desc="captions", mininterval=1.0) as bar:
        def progress(done: int) -> None:
            bar.update(done - bar.n)
        try:
            info = writer(args.out, args.n, seed=args.seed, lengths=lengths, progress=progress)
        except ValueError as err:
            raise SeriesforgeError(f"data captions make: {err}") from None
    print(f"wrote {info.get('n_pairs', args.n)} pairs ({args.format}) to {args.out}")
    return 0


def _parse_lengths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SeriesforgeError(f"--lengths {text!r}: expected comma-separated integers") from None


def cmd_captions_inspect(args) -> int:
    from seriesforge.data.inspect import inspect_captions

    if not args.dir.is_dir():
        raise SeriesforgeError(f"{args.dir}: not a directory")
    print(inspect_captions(args.dir))
    return 0


def cmd_ucr_inspect(args) -> int:
    from seriesforge.data.sources.ucr import format_summary, summary

    if not args.root.is_dir():
        raise SeriesforgeError(f"{args.root}: not a directory")
    print(format_summary(summary(args.root)))
    return 0


def cmd_ucr_prepare(args) -> int:
    from tqdm import tqdm

    from seriesforge.data.series_splits import select_ucr_datasets, summary_row, ucr_splits, write_prepared
    from seriesforge.data.sources.ucr import format_summary
    from seriesforge.runtime import init_ray

    if not args.root.is_dir():
        raise SeriesforgeError(f"{args.root}: not a directory")
    folders = select_ucr_datasets(args.root, args.datasets)  # unknown names fail here, before Ray starts
    existing = [f.name for f in folders if (args.out / f.name).exists()]
    if existing:
        raise SeriesforgeError(f"--out {args.out}: already holds {', '.join(existing)} (remove them or choose "
                               "another --out)")
    init_ray(None)
    rows = []
    with tqdm(folders, unit="dataset", desc="ucr prepare", disable=len(folders) < 2) as bar:
        for folder in bar:  # one at a time: only one dataset's blocks sit in the object store
            splits = ucr_splits(folder, resplit=args.resplit, seed=args.seed, on_bad_row=args.on_bad_row)
            write_prepared(splits, args.out)
            rows.append(summary_row(splits))
    print(format_summary(rows))
    print(f"wrote {len(rows)} dataset(s) to {args.out} (each with label_map.json and meta.json)")
    return 0


def cmd_train(args) -> int:
    from seriesforge import registry
    from seriesforge.train import launch

    if args.resume:
        cfg = launch.resume_config(args.resume, config_file=args.config, sets=args.set)
        run_dir = args.resume
    elif args.from_checkpoint:
        cfg = launch.config_from_checkpoint(args.from_checkpoint, stages=args.stage or [], family=args.family,
                                            data_spec=args.data, config_file=args.config, sets=_train_sets(args))
        if not args.out:
            raise SeriesforgeError("train: --out is required with --from (a new run directory)")
        run_dir = args.out
    else:
        for flag, value in (("FAMILY", args.family), ("--data", args.data), ("--out", args.out)):
            if not value:
                raise SeriesforgeError(f"train: {flag} is required (or use --resume RUN_DIR)")
        if args.stage:
            raise SeriesforgeError("train: --stage re-runs a stage from a stored checkpoint; give --from CKPT")
        cfg = registry.build_run_config(args.family, preset=args.preset, data_spec=args.data,
                                        config_file=args.config, sets=_train_sets(args))
        run_dir = args.out
    result = launch.run(cfg, run_dir, address=args.address, resume=bool(args.resume))
    ckpt = result.checkpoint
    print(f"run directory    {result.run_dir}")
    print(f"config           {result.run_dir / 'config.json'}")
    print(f"metrics          {result.run_dir / 'metrics.jsonl'}")
    print(f"checkpoint       {ckpt.path} (stage {ckpt.meta['stage']}, step {ckpt.meta['step']})")
    return 0


def _train_sets(args) -> list[str]:
    """--set overrides plus the ones --workers and --strategy stand for."""
    sets = list(args.set)
    if args.workers is not None:
        sets.append(f"scaling.num_workers={args.workers}")
    if args.strategy:
        sets.append(f"strategy.kind={args.strategy}")
        if args.strategy == "single" and args.workers is None:
            sets.append("scaling.num_workers=1")
    return sets


def cmd_generate(args) -> int:
    from tqdm import tqdm

    from seriesforge import outputs

    outputs.check_output_path(args.out, len(args.length))
    if args.label and args.caption:
        raise SeriesforgeError("--label goes with --n (class-conditional samples), not with --caption")
    sample, source, close = _sampler(args)
    # one panel per (condition, length): a caption, a class label, or nothing
    conditions = [("caption", c) for c in args.caption] if args.caption else (
        [("label", c) for c in args.label] if args.label else [(None, None)])
    panels = []
    total = len(conditions) * len(args.length)
    with tqdm(total=total, unit="panel", desc="generate", disable=total < 2) as bar:
        for kind, value in conditions:
            for length in args.length:
                k = args.samples_per_caption if kind == "caption" else args.n
                samples = sample(n=k, length=length, captions=[value] * k if kind == "caption" else None,
                                 labels=[value] * k if kind == "label" else None, steps=args.steps,
                                 seed=args.seed, guidance=args.guidance, refine=args.refine)
                title = value if kind == "caption" else (f"class {value}" if kind == "label" else None)
                panels.append(outputs.Panel(caption=title, length=length, samples=samples))
                bar.update(1)
    close()
    outputs.write(args.out, panels)
    print(f"wrote {sum(len(p.samples) for p in panels)} series from {source} to {args.out}")
    return 0


def _sampler(args):
    """(sample(n=, length=, captions=, labels=, steps=, seed=, guidance=, refine=) -> (n, K, L), source name,
    close) for --checkpoint (the local Generator) or --endpoint (the HTTP client)."""
    if args.checkpoint is not None:
        from seriesforge.generate import load

        if args.model or args.api_key_env:
            raise SeriesforgeError("--model and --api-key-env go with --endpoint, not --checkpoint")
        gen = load(args.checkpoint)
        return gen.sample, gen.info.path, lambda: None
    import os

    from seriesforge.client import Client

    if not args.model:
        raise SeriesforgeError("--model: required with --endpoint (the server's GET /v1/models lists them)")
    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env, "").strip()
        if not key:
            raise SeriesforgeError(f"--api-key-env: environment variable {args.api_key_env} is not set or empty")
    client = Client(args.endpoint, api_key=key)

    def sample(*, n, length, captions, labels, steps, seed, guidance, refine):
        return client.generate(args.model, length=length, captions=captions,
                               n=None if captions or labels else n, seed=seed, steps=steps, guidance=guidance,
                               class_labels=labels, refine=refine)

    return sample, f"{args.endpoint} (model {args.model})", client.close


def cmd_serve(args) -> int:
    import os
    import signal
    import threading

    from seriesforge.serving import config as sc

    cfg, http = sc.load_file(args.config) if args.config else (sc.ServeConfig(), sc.HttpConfig())
    cfg = sc.with_checkpoints(cfg, args.checkpoint)
    if args.api_key_env:
        cfg = dataclasses.replace(cfg, api_key_env=args.api_key_env)
    http = dataclasses.replace(http, **{k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None})
    api_key = sc.read_api_key(cfg)  # fails before Ray starts when the variable is missing

    import ray
    from ray import serve

    from seriesforge.runtime import init_ray
    from seriesforge.serving.app import build_catalog, deploy

    catalog = build_catalog(cfg.models)  # bad checkpoints fail here, named, before Ray starts
    on_cluster = bool(os.environ.get("RAY_ADDRESS"))
    print(init_ray(None), flush=True)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        url = deploy(cfg, http, api_key=api_key, catalog=catalog)
        print(f"serving {len(catalog)} model(s) at {url}  (OpenAPI: {url}/docs; "
              f"API key {'required' if api_key else 'not required'})")
        for name, card in catalog.items():
            print(f"  {name:<24} {card['family']:<10} conditions={card['conditions']:<8} {card['checkpoint']}")
        print("Ctrl-C or SIGTERM stops the server", flush=True)
        while not stop.wait(0.5):  # a timed wait, so the signal handlers run promptly in this thread
            pass
        print("stopping ...", flush=True)
    finally:
        # On a shared cluster only our application goes; an embedded Ray goes with everything in it.
        if on_cluster:
            serve.delete(sc.APP_NAME)
        else:
            serve.shutdown()
            ray.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print("stopped", flush=True)
    return 0


# ----------------------------------------------------------------------------------------------------------------


def user_error(exc: BaseException) -> SeriesforgeError | None:
    """The user-facing error inside `exc`, looking through Ray's wrappers (task, worker-group, data errors)."""
    seen, stack = set(), [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if isinstance(cause, BaseException):
            stack.append(cause)  # a RayTaskError subclasses its cause but carries a traceback as its message
            continue
        if isinstance(e, SeriesforgeError):
            return e
        stack.extend(getattr(e, "worker_failures", {}).values())
        stack.extend([getattr(e, "controller_failure", None), e.__cause__, e.__context__])
    return None


def run_reporting_user_errors(command) -> int:
    """Run `command()`; a user error becomes one line on stderr and exit 2 (job entrypoints share this)."""
    try:
        return command()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (user errors become one line; anything else keeps its traceback)
        err = user_error(exc)
        if err is None:
            raise
        print(f"error: {str(err).strip().splitlines()[0]}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_reporting_user_errors(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
