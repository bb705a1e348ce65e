"""Job entrypoint: a Ray Tune sweep from a job spec (YAML, kind: tune). What a submitted tune job runs.

    python jobs/sweep.py jobs/specs/t2s_asha32.yaml [--set key=value ...]

Same code path as `seriesforge tune`. A resubmitted job whose sweep directory exists resumes the sweep (finished
trials are kept), so a sweep whose driver died is finished by submitting the same spec again.
"""

from __future__ import annotations

import sys
from pathlib import Path

from seriesforge.submit.specs import job_main


def tune(spec, extra_sets: list[str]) -> int:
    from seriesforge import registry
    from seriesforge.tune import sweep
    from seriesforge.tune.space import describe, load_space

    out = Path(spec.out)
    if (out / "sweep.json").exists():
        print(f"resuming the sweep in {out}", flush=True)
        return 0 if sweep.resume(out).complete else 1
    base = registry.build_run_config(spec.family, preset=spec.preset, data_spec=spec.data,
                                     sets=spec.sets() + extra_sets)
    space = load_space(spec.family, base, spec.space)
    settings = sweep.SweepSettings(trials=spec.trials, max_concurrent=spec.max_concurrent, metric=spec.metric,
                                   mode=spec.mode, scheduler=spec.scheduler, search=spec.search)
    print("search space\n" + describe(space), flush=True)
    return 0 if sweep.start(base, space, settings, out).complete else 1


if __name__ == "__main__":
    sys.exit(job_main(__doc__, "tune", tune))
