"""Failure recovery on a local multi-node Ray cluster: how long a node loss costs a training job.

Starts cluster/local/local_cluster.py (a head + 2 worker nodes), submits a 2-worker DDP ST-Diff training job through
`seriesforge submit`, SIGKILLs the worker node that hosts a training worker right after a chosen checkpoint, and
prints:
  - cluster start-up time, and submit -> first training step latency;
  - the step the job had reached, the step it resumed from, and the steps redone (target: <= checkpoint_every);
  - recovery time: from the kill to the first step logged after the restart;
  - total job time, against the same job without a failure (run first).

    python benchmarks/cluster_failover.py [--steps 200] [--checkpoint-every 20] [--kill-after 40]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "cluster" / "local" / "local_cluster.py"
LOG_EVERY = 5


def sh(*args: str, env: dict) -> str:
    done = subprocess.run(list(args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def logged(run: Path) -> list[tuple[int, float]]:
    path = run / "metrics.jsonl"
    if not path.exists():
        return []
    return [(int(r["step"]), r["time"]) for r in map(json.loads, path.read_text().splitlines())]


def wait(predicate, timeout_s: float = 600, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise SystemExit(f"timed out after {timeout_s:.0f} s")


def submit_and_wait(env: dict, jobs_url: str, run: Path, args: argparse.Namespace, kill=None) -> float:
    from seriesforge.submit import jobs_client

    started = time.time()
    job_id = sh(sys.executable, "-m", "seriesforge", "submit", "train", "stdiff", "--preset", "debug", "--data",
                "sines:24", "--out", str(run), "--address", jobs_url, "--set", "strategy.kind=ddp",
                "--set", "scaling.num_workers=2", "--set", f"stages.denoiser.steps={args.steps}",
                "--set", f"loop.checkpoint_every={args.checkpoint_every}", "--set", f"loop.log_every={LOG_EVERY}",
                "--set", "scaling.max_failures=2", env=env).split()[-1]
    if kill:
        kill(job_id)
    status = wait(lambda: (s := jobs_client.info(job_id, jobs_url).status.value) in jobs_client.TERMINAL and s,
                  timeout_s=900)
    if status != "SUCCEEDED":
        raise SystemExit(f"job {job_id}: {status}")
    return time.time() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--checkpoint-every", type=int, default=20)
    parser.add_argument("--kill-after", type=int, default=40, help="kill once this step's checkpoint exists")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from ray.util.state import list_actors, list_nodes

    work = Path(tempfile.mkdtemp(prefix="sf-failover-"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    t0 = time.time()
    sh(sys.executable, str(SCRIPT), "start", "--dir", str(work / "cluster"), "--workers", "2", env=env)
    startup = time.time() - t0
    jobs_url = json.loads((work / "cluster" / "cluster.json").read_text())["dashboard_url"]
    try:
        clean = submit_and_wait(env, jobs_url, work / "clean", args)
        kill_info: dict = {}

        def kill(job_id: str) -> None:
            run = work / "failover"
            ckpt = run / "ray" / "train" / f"stage0_denoiser_step{args.kill_after:07d}"
            kill_info["submitted"] = time.time()
            wait(lambda: logged(run), timeout_s=600)
            kill_info["first_step_s"] = logged(run)[0][1] - kill_info["submitted"]
            wait(ckpt.exists, timeout_s=600, poll_s=0.1)
            head = next(n.node_id for n in list_nodes(address=jobs_url) if n.is_head_node)
            worker = next(w for w in list_actors(address=jobs_url, filters=[("class_name", "=", "RayTrainWorker"),
                                                                            ("state", "=", "ALIVE")])
                          if w.node_id != head)  # a worker node dies, not the head
            kill_info["at"] = time.time()
            kill_info["node"] = sh(sys.executable, str(SCRIPT), "kill-node", "--dir", str(work / "cluster"),
                                   "--hosting-pid", str(worker.pid), env=env).strip()

        failed = submit_and_wait(env, jobs_url, work / "failover", args, kill=kill)
    finally:
        sh(sys.executable, str(SCRIPT), "stop", "--dir", str(work / "cluster"), env=env)
    steps = logged(work / "failover")
    restart = next(i for i in range(1, len(steps)) if steps[i][0] <= steps[i - 1][0])
    reached, resumed = steps[restart - 1][0], steps[restart][0] - LOG_EVERY
    print(f"cluster start (head + 2 worker nodes)   {startup:6.1f} s")
    print(f"submit -> first logged step             {kill_info['first_step_s']:6.1f} s")
    print(f"killed                                  {kill_info['node']} (after checkpoint {args.kill_after})")
    print(f"step reached before the kill (logged)   {reached:6d}")
    print(f"resumed from checkpoint step            {resumed:6d}")
    print(f"steps redone                            {reached - resumed:6d}   (target <= {args.checkpoint_every})")
    print(f"kill -> first step after the restart    {steps[restart][1] - kill_info['at']:6.1f} s")
    print(f"job time, no failure / one node killed  {clean:6.1f} s / {failed:6.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
