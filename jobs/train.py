"""Job entrypoint: train a family from a job spec (YAML, kind: train). What a submitted train job runs.

    python jobs/train.py jobs/specs/t2s_debug.yaml [--set key=value ...]

The spec names family, preset, data SPEC and run directory, plus config overrides (seriesforge.submit.specs); the
rest is `seriesforge.train.launch.run`, the same call `seriesforge train` makes. RAY_ADDRESS (set by the Jobs API)
makes it join the cluster; SERIESFORGE_STORAGE (submit --storage) is where relative paths resolve. A resubmitted
job whose run directory exists continues it.
"""

from __future__ import annotations

import sys
from pathlib import Path

from seriesforge.submit.specs import job_main


def train(spec, extra_sets: list[str]) -> int:
    from seriesforge import registry
    from seriesforge.train import launch

    out = Path(spec.out)
    resume = spec.resume or (out / "config.json").exists()
    sets = spec.sets() + extra_sets
    if resume:  # the saved config, with the spec's overrides (e.g. a larger step budget) on top
        cfg = launch.resume_config(out, sets=sets)
    else:
        cfg = registry.build_run_config(spec.family, preset=spec.preset, data_spec=spec.data, sets=sets)
    result = launch.run(cfg, out, resume=resume)
    print(f"checkpoint {result.checkpoint.path}")
    return 0


if __name__ == "__main__":
    sys.exit(job_main(__doc__, "train", train))
