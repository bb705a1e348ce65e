"""Job entrypoint: train a family from a job spec (YAML). What a submitted train job runs on a cluster.

    python jobs/train.py jobs/specs/t2s_debug.yaml [--set key=value ...]

The spec names family, preset, data SPEC and run directory, plus config overrides (seriesforge.submit.specs); the
rest is `seriesforge.train.launch.run`, the same call `seriesforge train` makes. RAY_ADDRESS (set by the Jobs API)
makes it join the cluster; SERIESFORGE_STORAGE (submit --storage) is where relative paths resolve. A resubmitted
job whose run directory exists continues it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seriesforge.cli import run_reporting_user_errors
from seriesforge.submit.specs import enter_storage, load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, help="job spec YAML (see jobs/specs/)")
    parser.add_argument("--set", action="append", default=[], help="extra config override key=value")
    args = parser.parse_args(argv)

    def job() -> int:
        from seriesforge.train import launch

        from seriesforge import config as C, registry

        spec = load_spec(args.spec.resolve(), "train")
        enter_storage()
        out = Path(spec.out)
        resume = spec.resume or (out / "config.json").exists()
        sets = spec.sets() + args.set
        if resume:  # the saved config, with the spec's overrides (e.g. a larger step budget) on top
            tree = C.merge(C.to_dict(launch.load_run_config(out)), C.parse_set(sets))
            cfg = registry.resolve_config(tree)
        else:
            spec.set.update(dict(s.split("=", 1) for s in args.set))
            cfg = spec.run_config()
        result = launch.run(cfg, out, resume=resume)
        print(f"checkpoint {result.checkpoint.path}")
        return 0

    return run_reporting_user_errors(job)


if __name__ == "__main__":
    sys.exit(main())
