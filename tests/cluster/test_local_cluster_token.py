"""`local_cluster.py start` on a machine where Ray never ran: no ~/.ray/auth_token until it makes one.

A clean CI machine once failed every cluster test here ('ray start' in token mode will not create a token) while
machines that kept a token from an earlier embedded ray.init() passed. The cluster runs in subprocesses with an
empty HOME; this process's HOME is left alone, because Ray caches the token it first reads, and a later embedded
Ray in this process must use the real one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[2] / "cluster" / "local" / "local_cluster.py"


def test_start_creates_a_token_where_none_exists(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    env["HOME"] = str(home)
    state = tmp_path / "state"

    def script(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(SCRIPT), *args, "--dir", str(state)], env=env,
                              capture_output=True, text=True, timeout=240)

    started = script("start", "--workers", "0", "--head-cpus", "1")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert (home / ".ray" / "auth_token").is_file()
        status = script("status")
        assert status.returncode == 0 and '"alive_nodes": 1' in status.stdout, status.stdout + status.stderr
    finally:
        script("stop")
