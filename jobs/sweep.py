"""Job entrypoint: a Ray Tune sweep from a job spec (YAML, kind: tune). What a submitted tune job runs.

    python jobs/sweep.py jobs/specs/t2s_asha32.yaml

Same code path as `seriesforge tune`. A resubmitted job whose sweep directory exists resumes the sweep (finished
trials are kept), so a sweep whose driver died is finished by submitting the same spec again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seriesforge.cli import run_reporting_user_errors
from seriesforge.submit.specs import enter_storage, load_spec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("spec", type=Path, help="job spec YAML, kind: tune (see jobs/specs/)")
    args = parser.parse_args(argv)

    def job() -> int:
        from seriesforge.tune import sweep
        from seriesforge.tune.space import describe, load_space

        spec = load_spec(args.spec.resolve(), "tune")
        enter_storage()
        out = Path(spec.out)
        if (out / "sweep.json").exists():
            print(f"resuming the sweep in {out}", flush=True)
            return 0 if sweep.resume(out).complete else 1
        base = spec.run_config()
        space = load_space(spec.family, base, spec.space)
        settings = sweep.SweepSettings(trials=spec.trials, max_concurrent=spec.max_concurrent, metric=spec.metric,
                                       mode=spec.mode, scheduler=spec.scheduler, search=spec.search)
        print("search space\n" + describe(space), flush=True)
        return 0 if sweep.start(base, space, settings, out).complete else 1

    return run_reporting_user_errors(job)


if __name__ == "__main__":
    sys.exit(main())
