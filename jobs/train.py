"""Job entrypoint: train a family from a job spec (YAML). What `ray job submit` runs on a cluster.

    python jobs/train.py jobs/specs/t2s_debug.yaml [--set key=value ...]

The spec names family, preset, data SPEC and run directory, plus config overrides; everything else is the
library's `seriesforge.train.launch.run`, the same call `seriesforge train` makes. RAY_ADDRESS (set by the
Jobs API) makes it join the cluster instead of starting a local Ray.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from seriesforge import registry
from seriesforge.cli import user_error
from seriesforge.train import launch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, help="job spec YAML (see jobs/specs/)")
    parser.add_argument("--set", action="append", default=[], help="extra config override key=value")
    args = parser.parse_args(argv)
    spec = yaml.safe_load(args.spec.read_text())
    sets = [f"{k}={v}" for k, v in (spec.get("set") or {}).items()] + args.set
    try:
        cfg = registry.build_run_config(spec["family"], preset=spec.get("preset", "debug"), data_spec=spec["data"],
                                        sets=sets)
        result = launch.run(cfg, Path(spec["out"]), resume=bool(spec.get("resume", False)))
    except Exception as exc:  # noqa: BLE001  (user errors: one line; the rest keep their traceback)
        err = user_error(exc)
        if err is None:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"checkpoint {result.checkpoint.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
