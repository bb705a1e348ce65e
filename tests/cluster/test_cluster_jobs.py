"""Cluster jobs on a real local multi-node Ray cluster (head + 2 worker nodes): submit -> logs -> status, a failing
entrypoint, stop, a worker node SIGKILLed mid-training, and a sweep whose driver is SIGKILLed then resumed.

Slow: every job is a real Ray job running real Ray Train (2 workers, DDP) on generated Sines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

TRAIN = ["stdiff", "--preset", "debug", "--data", "sines:24", "--set", "strategy.kind=ddp",
         "--set", "scaling.num_workers=2"]


def submitted_id(stdout: str) -> str:
    """`seriesforge submit` prints the job id as its only stdout line."""
    lines = stdout.split()
    assert lines and lines[-1].startswith("raysubmit_"), stdout
    return lines[-1]


def steps_logged(run_dir: Path) -> list[int]:
    return [int(json.loads(line)["step"]) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"no {what} after {timeout_s:.0f} s"
        time.sleep(1)


def test_submit_logs_status_round_trip(local_cluster, tmp_path):
    run = tmp_path / "run"
    sub = local_cluster.cli("submit", "train", *TRAIN, "--out", str(run), "--address", local_cluster.jobs_url)
    assert sub.returncode == 0, sub.stderr
    job_id = submitted_id(sub.stdout)
    # RAY_AUTH_MODE unset: Ray's client would send no token; ours reads ~/.ray/auth_token and sends it itself
    followed = local_cluster.cli("jobs", "logs", job_id, "--follow", "--address", local_cluster.jobs_url,
                                 RAY_AUTH_MODE="")
    assert followed.returncode == 0, followed.stderr
    assert "[stdiff:denoiser]" in followed.stdout and f"job {job_id}: SUCCEEDED" in followed.stdout
    status = local_cluster.cli("jobs", "status", job_id, "--address", local_cluster.jobs_url)
    assert status.returncode == 0 and f"job {job_id}: SUCCEEDED" in status.stdout, status.stdout + status.stderr
    listed = local_cluster.cli("jobs", "list", "--address", local_cluster.jobs_url)
    assert any(line.startswith(job_id) and "SUCCEEDED" in line for line in listed.stdout.splitlines()), listed.stdout
    # the job joined the cluster (it did not start a Ray of its own) and ran this checkout's package
    logs = local_cluster.cli("jobs", "logs", job_id, "--address", local_cluster.jobs_url).stdout
    assert "connected to Ray cluster" in logs, logs[-2000:]
    assert json.loads((run / "config.json").read_text())["scaling"]["num_workers"] == 2


def test_failing_entrypoint_reports_failed_with_the_errors_last_lines(local_cluster, tmp_path):
    sub = local_cluster.cli("submit", "train", *TRAIN, "--set", "model.no_such_key=1", "--out", str(tmp_path / "r"),
                            "--address", local_cluster.jobs_url)
    job_id = submitted_id(sub.stdout)
    assert local_cluster.wait_job(job_id) == "FAILED"
    status = local_cluster.cli("jobs", "status", job_id, "--address", local_cluster.jobs_url)
    assert status.returncode == 1, status.stdout + status.stderr
    assert f"job {job_id}: FAILED" in status.stdout and "exit code 2" in status.stdout
    tail = status.stdout.split("log lines:", 1)[1]
    assert "error:" in tail and "model.no_such_key" in tail, status.stdout  # the CLI's one-line error, verbatim


def test_spec_job_runs_under_storage_and_stops(local_cluster, tmp_path):
    # the ST-Diff spec at paper size would train for a long time: stop it once it is running
    sub = local_cluster.cli("submit", "train", "--spec", "jobs/specs/stdiff_sines24.yaml", "--storage", str(tmp_path),
                            "--address", local_cluster.jobs_url)
    assert sub.returncode == 0, sub.stderr
    job_id = submitted_id(sub.stdout)
    wait_for(lambda: (tmp_path / "runs" / "stdiff-sines24" / "config.json").exists(), 180, "the run directory")
    stopped = local_cluster.cli("jobs", "stop", job_id, "--address", local_cluster.jobs_url)
    assert stopped.returncode == 0 and f"job {job_id}: STOPPED" in stopped.stdout, stopped.stdout + stopped.stderr
    saved = json.loads((tmp_path / "runs" / "stdiff-sines24" / "config.json").read_text())
    assert saved["strategy"]["kind"] == "deepspeed" and saved["scaling"]["num_workers"] == 2  # the spec's values


def test_worker_node_killed_mid_training_resumes_from_the_last_checkpoint(local_cluster, tmp_path):
    from ray.util.state import list_actors, list_nodes

    every, log_every = 20, 5
    run = tmp_path / "run"
    sub = local_cluster.cli("submit", "train", *TRAIN, "--out", str(run), "--address", local_cluster.jobs_url,
                            "--set", "stages.denoiser.steps=120", "--set", f"loop.checkpoint_every={every}",
                            "--set", f"loop.log_every={log_every}", "--set", "scaling.max_failures=2")
    job_id = submitted_id(sub.stdout)
    wait_for(lambda: any((run / "ray" / "train").glob("stage0_denoiser_step*")), 240, "the first checkpoint")
    workers = list_actors(address=local_cluster.jobs_url, filters=[("class_name", "=", "RayTrainWorker"),
                                                                   ("state", "=", "ALIVE")])
    assert len(workers) == 2, workers
    head = next(n.node_id for n in list_nodes(address=local_cluster.jobs_url) if n.is_head_node)
    victim = next(w for w in workers if w.node_id != head)  # a worker node dies, not the head
    killed = local_cluster.script("kill-node", "--hosting-pid", str(victim.pid))
    assert killed.returncode == 0 and "killed worker-" in killed.stdout, killed.stdout + killed.stderr
    assert local_cluster.wait_job(job_id, timeout_s=420) == "SUCCEEDED", local_cluster.cli(
        "jobs", "status", job_id, "--address", local_cluster.jobs_url).stdout
    steps = steps_logged(run)
    restart = next(i for i in range(1, len(steps)) if steps[i] <= steps[i - 1])  # the step count went back
    reached, resumed_at = steps[restart - 1], steps[restart] - log_every
    assert 0 < reached - resumed_at <= every, steps  # at most one checkpoint interval redone
    assert steps[-1] == 120
    from seriesforge.generate import load

    x = load(run).sample(n=3, length=24, seed=0)  # the final checkpoint generates
    assert x.shape == (3, 5, 24) and np.isfinite(x).all()


def test_sweep_driver_killed_then_resume_finishes_it(local_cluster, tmp_path):
    config = tmp_path / "trial.yaml"
    config.write_text(yaml.safe_dump({"strategy": {"kind": "single"}, "scaling": {"num_workers": 1},
                                      "stages": {"denoiser": {"steps": 20}},
                                      "loop": {"checkpoint_every": 10, "log_every": 2}}))
    out = tmp_path / "sweep"
    args = ["tune", "stdiff", "--preset", "debug", "--data", "sines:24", "--config", str(config), "--out", str(out),
            "--trials", "2", "--max-concurrent", "1", "--metric", "loss", "--mode", "min", "--scheduler", "fifo"]
    env = local_cluster.env(RAY_ADDRESS=local_cluster.gcs_address)
    driver = subprocess.Popen([sys.executable, "-m", "seriesforge", *args], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # one trial finished and the next started: Tune has taken the first one's end (max_concurrent 1)
        wait_for(lambda: any(out.glob("trials/*/stages/0_denoiser")) and len(list(out.glob("trials/*"))) == 2,
                 300, "a finished trial and a second one")
    finally:
        driver.send_signal(signal.SIGKILL)  # the driver dies without a chance to save anything
        driver.wait()
    finished_before = {d.name: steps_logged(d) for d in (out / "trials").iterdir()
                       if (d / "stages" / "0_denoiser").exists()}
    assert len(finished_before) == 1
    time.sleep(3)  # the cluster notices the dead driver and frees its trials' workers
    resumed = local_cluster.cli("tune", "--resume", str(out), timeout=600, RAY_ADDRESS=local_cluster.gcs_address)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    table = (out / "results.csv").read_text().splitlines()
    assert len(table) == 1 + 2 and all(",True," in row for row in table[1:]), table
    assert (out / "best" / "checkpoint").is_dir()
    for name, before in finished_before.items():  # a finished trial redoes at most one checkpoint interval
        after = steps_logged(out / "trials" / name)
        assert after[: len(before)] == before and (len(after) - len(before)) * 2 <= 10, (before, after)


def test_submit_refuses_unreachable_address(tmp_path):
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    done = subprocess.run([sys.executable, "-m", "seriesforge", "jobs", "list", "--address", "http://127.0.0.1:9"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "http://127.0.0.1:9" in done.stderr, done.stderr[-2000:]
