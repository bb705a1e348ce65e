"""A real multi-node Ray cluster on this machine (head + 2 worker nodes, separate `ray start` process trees),
started once for the cluster tests by cluster/local/local_cluster.py, and a way to run the seriesforge CLI
against it as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "cluster" / "local" / "local_cluster.py"


@dataclass
class LocalCluster:
    state_dir: Path
    gcs_address: str  # RAY_ADDRESS for drivers that join the cluster
    jobs_url: str  # the Jobs API (dashboard) of the head

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update({"RAY_AUTH_MODE": "token", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                    "PYTHONUNBUFFERED": "1", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
                    **extra})
        env.pop("RAY_ADDRESS", None)
        return env

    def cli(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        """`seriesforge ARGS` in a fresh process, as a user's shell would run it."""
        return subprocess.run([sys.executable, "-m", "seriesforge", *args], cwd=ROOT, env=self.env(**env),
                              capture_output=True, text=True, timeout=timeout)

    def script(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), *args, "--dir", str(self.state_dir)],
                              env=self.env(), capture_output=True, text=True, timeout=240)

    def nodes(self) -> list[dict]:
        return json.loads((self.state_dir / "cluster.json").read_text())["nodes"]

    def wait_job(self, job_id: str, timeout_s: float = 300) -> str:
        from seriesforge.submit import jobs_client

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = jobs_client.info(job_id, self.jobs_url).status.value
            if status in jobs_client.TERMINAL:
                return status
            time.sleep(1)
        raise AssertionError(f"job {job_id} still {status} after {timeout_s:.0f} s")


@pytest.fixture(scope="module")
def local_cluster(tmp_path_factory) -> LocalCluster:
    state_dir = tmp_path_factory.mktemp("local_cluster")
    cluster = LocalCluster(state_dir, "", "")
    started = cluster.script("start", "--workers", "2", "--head-cpus", "1", "--worker-cpus", "2")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        state = json.loads((state_dir / "cluster.json").read_text())
        cluster.gcs_address, cluster.jobs_url = state["gcs_address"], state["dashboard_url"]
        yield cluster
    finally:
        cluster.script("stop")
