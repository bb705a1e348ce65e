"""Every job spec under jobs/specs/ builds a valid run config offline (the data itself is not read here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seriesforge import registry

SPECS = sorted((Path(__file__).resolve().parents[1] / "jobs" / "specs").glob("*.yaml"))


@pytest.mark.parametrize("path", SPECS, ids=[p.stem for p in SPECS])
def test_job_spec_resolves(path):
    spec = yaml.safe_load(path.read_text())
    sets = [f"{k}={v}" for k, v in (spec.get("set") or {}).items()]
    cfg = registry.build_run_config(spec["family"], preset=spec.get("preset", "debug"), data_spec=spec["data"],
                                    sets=sets)
    assert cfg.family == spec["family"] and spec["out"]
    assert {"t2s", "timeldm", "stdiff", "timevqvae", "timevqvdm"} <= {yaml.safe_load(p.read_text())["family"] for p in SPECS}
