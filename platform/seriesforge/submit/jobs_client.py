"""Cluster jobs through the Ray Jobs API: submit a seriesforge command or job spec, list, follow, inspect, stop.

A job = an entrypoint run by the cluster's job server on the head node, with RAY_ADDRESS set so that the
seriesforge code inside joins the cluster instead of starting an embedded Ray. Two kinds of entrypoint:

    python -m seriesforge train|tune|eval ARGS...      (submit KIND ARGS...: the CLI, verbatim)
    python jobs/train.py|sweep.py|evaluate.py SPEC     (submit KIND --spec SPEC: a job spec in jobs/specs/)

The runtime environment carries this checkout: `working_dir` is the project root (jobs/ and the specs) and
`py_modules` is the seriesforge package, so the job runs exactly the code that submitted it even where the
nodes have an older install. Paths in a job are the cluster's: outputs must go to storage every node sees
(`--storage ROOT`, or absolute paths), never into the job's temporary working directory.

Token authentication: Ray's HTTP job client sends the cluster token only when RAY_AUTH_MODE=token was set before
ray was first imported, although `ray.init` enables it by itself when a token exists. So the client here reads the
token itself (`cluster_token`) and sends it as a bearer header, whatever the process imported before.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

from seriesforge.errors import ConfigError, JobsError

KINDS = {"train": "jobs/train.py", "tune": "jobs/sweep.py", "eval": "jobs/evaluate.py"}
DEFAULT_ADDRESS = "http://127.0.0.1:8265"
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# never uploaded: environments, VCS data, run outputs and caches (the job writes to shared storage instead)
UPLOAD_EXCLUDES = [".venv", ".git", "runs", "demo_out", "bench_data", "sweeps", "**/__pycache__", "*.egg-info",
                   ".pytest_cache", "_seriesforge_cache"]
OUTPUT_FLAGS = ("--out", "--resume")


def cluster_token() -> str | None:
    """The token Ray's own clients would send: RAY_AUTH_TOKEN, else the file RAY_AUTH_TOKEN_PATH, else
    ~/.ray/auth_token; None when there is none or RAY_AUTH_MODE=disabled (the user's explicit choice)."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def jobs_address(address: str | None) -> str:
    """--address, else RAY_API_SERVER_ADDRESS (what `ray job` reads), else an http RAY_ADDRESS, else local."""
    ray_address = os.environ.get("RAY_ADDRESS", "")
    return (address or os.environ.get("RAY_API_SERVER_ADDRESS")
            or (ray_address if ray_address.startswith("http") else None) or DEFAULT_ADDRESS)


def project_root() -> Path | None:
    """The checkout this seriesforge was imported from (platform/seriesforge -> root), or None when installed."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").exists() and (root / "jobs").is_dir() else None


@dataclass
class JobRequest:
    kind: str  # train | tune | eval
    args: list[str]  # CLI arguments after KIND (without --spec)
    spec: Path | None = None  # a job spec YAML inside the project
    storage: str | None = None  # where the job runs and relative paths resolve (shared by every node)
    pip: tuple[str, ...] = ()  # extra requirements installed into the job's environment
    env: dict[str, str] | None = None
    submission_id: str | None = None


def entrypoint(req: JobRequest, root: Path | None) -> str:
    """The shell command the job server runs (in the uploaded working directory)."""
    if req.kind not in KINDS:
        raise ConfigError(f"submit: KIND must be one of {', '.join(KINDS)}, got {req.kind!r}")
    if req.spec is not None:
        if req.args:
            raise ConfigError(f"submit {req.kind} --spec: the spec holds the job's arguments; also got "
                              f"{shlex.join(req.args)}")
        if root is None:
            raise ConfigError("submit --spec: needs a seriesforge checkout (jobs/ and jobs/specs/) to upload")
        spec = req.spec.resolve()
        if not spec.is_file():
            raise ConfigError(f"--spec {req.spec}: no such file")
        try:
            rel = spec.relative_to(root)
        except ValueError:
            raise ConfigError(f"--spec {req.spec}: must lie inside the project ({root}), which is what the job "
                              "uploads") from None
        _check_spec(spec, req.kind, req.storage)
        return f"python {KINDS[req.kind]} {shlex.quote(str(rel))}"
    _check_output_flags(req.args, req.storage)
    command = f"python -m seriesforge {req.kind} {shlex.join(req.args)}".rstrip()
    if not req.storage:
        return command
    where = shlex.quote(req.storage)
    return f"mkdir -p {where} && cd {where} && {command}"


def _check_output_flags(args: list[str], storage: str | None) -> None:
    for i, arg in enumerate(args):
        for flag in OUTPUT_FLAGS:
            value = args[i + 1] if arg == flag and i + 1 < len(args) else (
                arg.split("=", 1)[1] if arg.startswith(flag + "=") else None)
            if value is not None:
                _refuse_relative(f"submit: {flag} {value}", value, storage)


def _check_spec(spec: Path, kind: str, storage: str | None) -> None:
    """The spec is checked here, before upload: its kind must be KIND's, its keys known, its output reachable."""
    from seriesforge.submit.specs import load_spec

    out = str(load_spec(spec, kind).out)
    _refuse_relative(f"--spec {spec}: out: {out}", out, storage)


def _refuse_relative(what: str, path: str, storage: str | None) -> None:
    if not storage and not Path(path).is_absolute():
        raise ConfigError(f"{what} is relative, so it would land in the job's temporary working directory on the "
                          "head node; give an absolute path on storage every node sees, or --storage ROOT to run "
                          "the job there")


def runtime_env(req: JobRequest, root: Path | None) -> dict:
    from seriesforge.runtime import worker_env  # imports Ray: only when a job is submitted

    env_vars = {"PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **worker_env(),
                **(req.env or {})}
    if req.storage:
        env_vars["SERIESFORGE_STORAGE"] = req.storage
    env: dict = {"env_vars": env_vars}
    if root is not None:
        env["working_dir"] = str(root)
        env["py_modules"] = [str(root / "platform" / "seriesforge")]
        env["excludes"] = UPLOAD_EXCLUDES
    if req.pip:
        env["pip"] = list(req.pip)
    return env


def client(address: str | None):
    from ray.job_submission import JobSubmissionClient

    url = jobs_address(address)
    token = cluster_token()
    try:
        return JobSubmissionClient(url, headers={"Authorization": f"Bearer {token}"} if token else None)
    except Exception as exc:  # noqa: BLE001  (connection refused, auth, wrong port: one line naming the address)
        raise JobsError(f"cannot reach the Ray Jobs API at {url}: {_first_line(exc)}") from exc


def submit(req: JobRequest, address: str | None = None) -> str:
    root = project_root()
    command = entrypoint(req, root)
    jobs = client(address)
    try:
        return jobs.submit_job(entrypoint=command, runtime_env=runtime_env(req, root),
                               submission_id=req.submission_id,
                               metadata={"seriesforge_kind": req.kind})
    except Exception as exc:  # noqa: BLE001
        raise JobsError(f"submit to {jobs_address(address)} refused: {_first_line(exc)}") from exc


def _lookup(job_id: str, address: str | None):
    """One client and the job's info: an unknown id fails with its name, not with an HTTP body."""
    jobs = client(address)
    try:
        return jobs, jobs.get_job_info(job_id)
    except Exception as exc:  # noqa: BLE001  (the SDK raises RuntimeError for an unknown id)
        raise JobsError(f"job {job_id}: {_first_line(exc)}") from exc


def info(job_id: str, address: str | None = None):
    return _lookup(job_id, address)[1]


def logs(job_id: str, address: str | None = None) -> str:
    jobs, _ = _lookup(job_id, address)
    return jobs.get_job_logs(job_id)


def follow(job_id: str, address: str | None = None, write=print) -> str:
    """Stream the job's log until it ends; returns its final status."""
    jobs, _ = _lookup(job_id, address)

    async def stream() -> None:
        async for chunk in jobs.tail_job_logs(job_id):
            write(chunk, end="", flush=True)

    asyncio.run(stream())
    return str(jobs.get_job_status(job_id).value)


def list_jobs(address: str | None = None) -> list:
    return sorted(client(address).list_jobs(), key=lambda j: j.start_time or 0)


def stop(job_id: str, address: str | None = None, timeout_s: float = 60) -> str:
    import time

    jobs, _ = _lookup(job_id, address)
    jobs.stop_job(job_id)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = str(jobs.get_job_status(job_id).value)
        if status in TERMINAL:
            return status
        time.sleep(0.5)
    return str(jobs.get_job_status(job_id).value)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
