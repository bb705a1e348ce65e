"""A multi-node Ray cluster on one machine: a head and N worker nodes, each its own `ray start` process tree.

    python cluster/local/local_cluster.py start --dir DIR [--workers 2] [--head-cpus 1] [--worker-cpus 2]
    python cluster/local/local_cluster.py status --dir DIR
    python cluster/local/local_cluster.py kill-node --dir DIR (--node worker-1 | --hosting-pid PID)
    python cluster/local/local_cluster.py stop --dir DIR

Why separate `ray start` processes: every node gets its own raylet, object store, agents and worker processes, in
its own process group, so SIGKILL of one node's group is what a machine failure looks like to Ray (the fault-
tolerance tests of issue #9 do exactly that). Every port is chosen free at start and recorded in DIR/cluster.json
with each node's process group. Each node keeps its session in a short temporary directory of its own, as on
separate machines, so an embedded `ray.init()` elsewhere on the machine never joins this cluster by accident.

Token authentication stays on: every node and client here runs with RAY_AUTH_MODE=token. `ray start` in that mode
refuses to create a token (only an embedded `ray.init()` makes one), so `start` generates ~/.ray/auth_token first
when no token is set up (`ray get-auth-token --generate`, which keeps a token already there). `eval "$(python
cluster/local/local_cluster.py env --dir DIR)"` exports RAY_ADDRESS, RAY_API_SERVER_ADDRESS (the Jobs API) and
RAY_AUTH_MODE for a shell.

Nothing here imports seriesforge: the script works for any project, and the tests call it as a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STATE_FILE = "cluster.json"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cluster_env() -> dict[str, str]:
    """The environment every node and client runs with: this interpreter's bin first (so `python` in a job
    entrypoint is this environment's), and token authentication on."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("RAY_AUTH_MODE", "token")
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    # freed objects leave the object store every 100 ms, not every second (seriesforge.runtime.NODE_ENV says why;
    # tests/cluster keeps the two equal)
    env.setdefault("RAY_free_objects_period_milliseconds", "100")
    return env


def ray_cli() -> str:
    """The `ray` command of this interpreter's environment (not whichever one PATH finds first)."""
    return str(Path(sys.executable).parent / "ray")


def ensure_auth_token() -> None:
    """Create ~/.ray/auth_token unless a token is already available: on a machine where Ray has never run,
    `ray start --head` with RAY_AUTH_MODE=token fails with "no authentication token was found"."""
    made = subprocess.run([ray_cli(), "get-auth-token", "--generate"], env=cluster_env(), capture_output=True,
                          text=True, timeout=60)  # it prints the token: kept out of logs
    if made.returncode != 0:
        raise SystemExit(f"local cluster: `ray get-auth-token --generate` failed (exit {made.returncode}):\n"
                         + made.stderr[-2000:])


def _ray_start(name: str, args: list[str], log: Path) -> dict:
    """One `ray start` in a new session: its daemons inherit the process group, which `kill-node` signals."""
    with log.open("w") as out:
        proc = subprocess.Popen([ray_cli(), "start", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=cluster_env(), start_new_session=True)
        code = proc.wait(timeout=180)
    if code != 0:
        raise SystemExit(f"local cluster: `ray start` of {name} failed (exit {code}); see {log}:\n"
                         + "\n".join(log.read_text().splitlines()[-15:]))
    return {"name": name, "pgid": proc.pid, "log": str(log)}


def _node_ports(prefix_args: list[str]) -> list[str]:
    """Ports one node needs of its own on a shared machine (Ray's defaults would collide between nodes)."""
    ports = ["--node-manager-port", str(free_port()), "--object-manager-port", str(free_port()),
             "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
             "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
             "--min-worker-port", "0", "--max-worker-port", "0"]  # 0: the OS picks each worker's port
    return prefix_args + ports


def start(state_dir: Path, *, workers: int, head_cpus: int, worker_cpus: int) -> dict:
    state_dir.mkdir(parents=True, exist_ok=True)
    if (state_dir / STATE_FILE).exists():
        raise SystemExit(f"local cluster: {state_dir / STATE_FILE} exists; stop that cluster first")
    ensure_auth_token()
    temp_dir = tempfile.mkdtemp(prefix="sfray-", dir="/tmp")  # short: Ray's unix socket paths must stay < 108
    gcs_port, dashboard_port = free_port(), free_port()
    head_args = _node_ports([
        "--head", "--port", str(gcs_port), "--node-ip-address", "127.0.0.1", "--num-cpus", str(head_cpus),
        "--num-gpus", "0", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard_port),
        "--ray-client-server-port", str(free_port()), "--temp-dir", temp_dir, "--disable-usage-stats"])
    state = {"gcs_address": f"127.0.0.1:{gcs_port}", "dashboard_url": f"http://127.0.0.1:{dashboard_port}",
             "temp_dirs": [temp_dir], "nodes": []}
    state["nodes"].append(_ray_start("head", head_args, state_dir / "head.log"))
    _save(state_dir, state)  # a failure below still leaves what `stop` needs
    for i in range(1, workers + 1):
        name = f"worker-{i}"
        # a session directory per node, as on separate machines: each node's log monitor then forwards only
        # its own workers' lines (with one shared directory every line reached the driver once per node)
        node_temp = tempfile.mkdtemp(prefix=f"sfray-w{i}-", dir="/tmp")
        state["temp_dirs"].append(node_temp)
        args = _node_ports(["--address", state["gcs_address"], "--node-ip-address", "127.0.0.1",
                                "--num-cpus", str(worker_cpus), "--num-gpus", "0", "--temp-dir", node_temp,
                                "--disable-usage-stats"])
        state["nodes"].append(_ray_start(name, args, state_dir / f"{name}.log"))
        _save(state_dir, state)
    _wait_for_nodes(state, 1 + workers)
    return state


def _wait_for_nodes(state: dict, expected: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if alive_nodes(state) >= expected:
            return
        time.sleep(1)
    raise SystemExit(f"local cluster: {alive_nodes(state)} of {expected} nodes alive after {timeout_s:.0f} s")


def alive_nodes(state: dict) -> int:
    """Nodes the GCS counts as alive, read through the dashboard's HTTP API (no driver needed)."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")  # read when ray is first imported: set it before
    from ray.util.state import list_nodes

    try:
        nodes = list_nodes(address=state["dashboard_url"], raise_on_missing_output=False)
    except Exception:  # noqa: BLE001  (the dashboard may still be starting)
        return 0
    return sum(1 for n in nodes if n.state == "ALIVE")


def kill_node(state_dir: Path, *, node: str | None = None, hosting_pid: int | None = None) -> str:
    """SIGKILL every process of one node: by name, or the node whose raylet started `hosting_pid`.

    A node's daemons share the process group of its `ray start`; Ray puts each worker process in a group of its
    own, so workers are found as descendants of the node's processes instead.
    """
    import psutil

    state = load(state_dir)
    if hosting_pid is not None:
        groups = {_group_of(p.pid) for p in [psutil.Process(hosting_pid), *psutil.Process(hosting_pid).parents()]}
        entry = next((n for n in state["nodes"] if n["pgid"] in groups), None)
        if entry is None:
            raise SystemExit(f"local cluster: pid {hosting_pid} runs on no node of this cluster")
    else:
        entry = next((n for n in state["nodes"] if n["name"] == node), None)
        if entry is None:
            raise SystemExit(f"local cluster: no node named {node!r}; nodes: "
                             + ", ".join(n["name"] for n in state["nodes"]))
    kill_all(node_processes(entry["pgid"]))
    entry["killed"] = True
    _save(state_dir, state)
    return entry["name"]


def node_processes(pgid: int) -> list:
    """The node's daemons (its process group) and everything they started (workers, in groups of their own)."""
    import psutil

    roots = [p for p in psutil.process_iter() if _group_of(p.pid) == pgid]
    found = {p.pid: p for p in roots}
    for root in roots:
        try:
            found.update({c.pid: c for c in root.children(recursive=True)})
        except psutil.NoSuchProcess:
            pass
    return list(found.values())


def kill_all(processes: list) -> None:
    """SIGKILL, then wait until they are gone (a killed raylet's ports must be free before a test goes on)."""
    import psutil

    for proc in processes:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


def _group_of(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def stop(state_dir: Path) -> None:
    """Kill every node's processes and remove the session directory (idempotent)."""
    path = state_dir / STATE_FILE
    if not path.exists():
        return
    state = load(state_dir)
    for entry in reversed(state["nodes"]):
        kill_all(node_processes(entry["pgid"]))
    for temp_dir in state["temp_dirs"]:
        shutil.rmtree(temp_dir, ignore_errors=True)
    path.unlink()


def load(state_dir: Path) -> dict:
    path = state_dir / STATE_FILE
    if not path.exists():
        raise SystemExit(f"local cluster: no cluster recorded in {state_dir} (no {STATE_FILE})")
    return json.loads(path.read_text())


def _save(state_dir: Path, state: dict) -> None:
    tmp = state_dir / f".{STATE_FILE}.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_dir / STATE_FILE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="action", required=True)
    for action in ("start", "status", "stop", "kill-node", "env"):
        p = sub.add_parser(action)
        p.add_argument("--dir", type=Path, required=True, help="state directory (cluster.json, node logs)")
        if action == "start":
            p.add_argument("--workers", type=int, default=2, help="worker nodes beside the head (default 2)")
            p.add_argument("--head-cpus", type=int, default=1, help="logical CPUs of the head (default 1)")
            p.add_argument("--worker-cpus", type=int, default=2, help="logical CPUs per worker node (default 2)")
        if action == "kill-node":
            group = p.add_mutually_exclusive_group(required=True)
            group.add_argument("--node", help="node name: head, worker-1, ...")
            group.add_argument("--hosting-pid", type=int, help="kill the node that runs this process")
    args = parser.parse_args(argv)
    if args.action == "start":
        state = start(args.dir, workers=args.workers, head_cpus=args.head_cpus, worker_cpus=args.worker_cpus)
        print(f"cluster up: {len(state['nodes'])} nodes; RAY_ADDRESS={state['gcs_address']}; "
              f"jobs API {state['dashboard_url']}")
    elif args.action == "status":
        state = load(args.dir)
        print(json.dumps({**state, "alive_nodes": alive_nodes(state)}, indent=2))
    elif args.action == "kill-node":
        print(f"killed {kill_node(args.dir, node=args.node, hosting_pid=args.hosting_pid)}")
    elif args.action == "env":
        state = load(args.dir)
        print(f"export RAY_ADDRESS={state['gcs_address']} RAY_AUTH_MODE=token "
              f"RAY_API_SERVER_ADDRESS={state['dashboard_url']}")
    else:
        stop(args.dir)
        print("cluster stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
