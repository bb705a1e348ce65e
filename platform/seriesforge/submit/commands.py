"""`seriesforge submit` and `seriesforge jobs`: parsers and commands (lazy imports: --help starts no Ray)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

EXAMPLES_SUBMIT = """examples:
  seriesforge submit train t2s --preset small --data captions:/mnt/seriesforge/corpus \\
      --out /mnt/seriesforge/runs/t2s --address http://HEAD:8265
  seriesforge submit train --spec jobs/specs/t2s_600k_zero2.yaml --storage /mnt/seriesforge --follow
  seriesforge submit tune --spec jobs/specs/t2s_asha32.yaml --storage /mnt/seriesforge
  seriesforge submit eval --spec jobs/specs/ucr_many_eval.yaml --storage /mnt/seriesforge

Everything after KIND that is not a submit option is passed to `seriesforge KIND` on the cluster (see
`seriesforge KIND --help`). The job runs with RAY_ADDRESS set, so it joins the cluster. Outputs must go to storage
every node sees: absolute paths, or --storage ROOT (the job runs there; relative paths resolve under it).
Token authentication: the client sends the cluster token from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
~/.ray/auth_token (the file `ray get-auth-token --generate` writes, or a copy of the head's); RAY_AUTH_MODE=disabled
turns that off.
"""

EXAMPLES_JOBS = """examples:
  seriesforge jobs list
  seriesforge jobs logs raysubmit_XYZ --follow
  seriesforge jobs status raysubmit_XYZ      # exit 1 when FAILED or STOPPED, with the log's last lines
  seriesforge jobs stop raysubmit_XYZ
The address is --address, else RAY_API_SERVER_ADDRESS, else an http:// RAY_ADDRESS, else http://127.0.0.1:8265.
"""

STATUS_TAIL_LINES = 20


def _submit_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", metavar="URL", help="the cluster's Jobs API (dashboard), e.g. http://HEAD:8265")
    parser.add_argument("--spec", type=Path, metavar="YAML",
                        help="run a job spec from jobs/specs/ with the jobs/ entrypoint of KIND")
    parser.add_argument("--storage", metavar="ROOT",
                        help="storage every node sees (NFS mount, bucket mount): the job runs there")
    parser.add_argument("--pip", action="append", default=[], metavar="REQ",
                        help="extra requirement installed into the job's environment (repeatable)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="environment variable of the job (repeatable; never put credentials here)")
    parser.add_argument("--submission-id", help="job id to use (default: Ray picks raysubmit_...)")
    parser.add_argument("--follow", action="store_true", help="stream the log until the job ends; exit 1 "
                                                              "unless it SUCCEEDED")


def add_parsers(sub) -> None:
    submit = sub.add_parser(
        "submit", help="submit train/tune/eval to a Ray cluster through the Jobs API", epilog=EXAMPLES_SUBMIT,
        formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False,
        description="Submit a seriesforge command (or a job spec) as a Ray job, with this checkout as its\n"
                    "runtime environment (working_dir: the project; py_modules: the seriesforge package).\n"
                    "Prints the job id; follow it with `seriesforge jobs logs ID --follow`.")
    _submit_options(submit)
    submit.add_argument("kind", choices=["train", "tune", "eval"], help="what the job runs")
    submit.add_argument("args", nargs=argparse.REMAINDER, help="arguments of `seriesforge KIND`")
    submit.set_defaults(func=cmd_submit, parser=submit)

    jobs = sub.add_parser("jobs", help="list, follow, inspect and stop cluster jobs", epilog=EXAMPLES_JOBS,
                          formatter_class=argparse.RawDescriptionHelpFormatter,
                          description="Jobs on a Ray cluster (any job, not only seriesforge's).")
    actions = jobs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="one line per job: id, status, start, entrypoint")
    logs = actions.add_parser("logs", help="a job's log (--follow: until it ends)")
    logs.add_argument("--follow", action="store_true", help="stream until the job ends")
    status = actions.add_parser("status", help="a job's status; the error's last lines when it failed")
    stop = actions.add_parser("stop", help="stop a job and wait until it has stopped")
    for parser in (logs, status, stop):
        parser.add_argument("job_id", metavar="ID", help="the submission id (raysubmit_...)")
    for parser in (listing, logs, status, stop):
        parser.add_argument("--address", metavar="URL", help="the cluster's Jobs API, e.g. http://HEAD:8265")
    jobs.set_defaults(func=cmd_jobs)


def cmd_submit(args) -> int:
    from seriesforge.submit import jobs_client

    if any(a in ("-h", "--help") for a in args.args):
        args.parser.print_help()
        return 0
    req = request_from_args(args)
    job_id = jobs_client.submit(req, args.address)
    print(job_id, flush=True)
    if not args.follow:
        return 0
    final = jobs_client.follow(job_id, args.address)
    print(f"\njob {job_id}: {final}")
    return 0 if final == "SUCCEEDED" else 1


def request_from_args(args):
    """The JobRequest of a parsed `submit` command line; submit options may also follow KIND (`submit train ...
    --address URL`), so they are taken out of the pass-through arguments here (and set on `args`)."""
    from seriesforge.errors import ConfigError
    from seriesforge.submit.jobs_client import JobRequest

    late = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _submit_options(late)
    found, passthrough = late.parse_known_args(args.args)
    for name, value in vars(found).items():
        if value not in (None, [], False):
            setattr(args, name, getattr(args, name) + value if isinstance(value, list) else value)
    env = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    return JobRequest(kind=args.kind, args=passthrough, spec=args.spec, storage=args.storage, pip=tuple(args.pip),
                      env=env, submission_id=args.submission_id)


def cmd_jobs(args) -> int:
    from seriesforge.submit import jobs_client

    if args.action == "list":
        rows = jobs_client.list_jobs(args.address)
        print(f"{'ID':<32} {'STATUS':<10} {'STARTED':<20} ENTRYPOINT")
        for job in rows:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime((job.start_time or 0) / 1000))
            print(f"{job.submission_id or job.job_id or '-':<32} {job.status.value:<10} {started:<20} "
                  f"{_short(job.entrypoint, 80)}")
        return 0
    if args.action == "logs":
        if args.follow:
            final = jobs_client.follow(args.job_id, args.address)
            print(f"\njob {args.job_id}: {final}")
        else:
            print(jobs_client.logs(args.job_id, args.address), end="")
        return 0
    if args.action == "stop":
        print(f"job {args.job_id}: {jobs_client.stop(args.job_id, args.address)}")
        return 0
    return _print_status(args.job_id, args.address)


def _print_status(job_id: str, address: str | None) -> int:
    from seriesforge.submit import jobs_client

    info = jobs_client.info(job_id, address)
    status = info.status.value
    print(f"job {job_id}: {status}")
    print(f"  entrypoint  {info.entrypoint}")
    if info.start_time:
        end = info.end_time or time.time() * 1000
        print(f"  ran for     {(end - info.start_time) / 1000:.0f} s")
    if status not in ("FAILED", "STOPPED"):
        return 0
    # Ray's message: why, then the log as the job manager read it when the entrypoint ended (complete, unlike the
    # log endpoint right after the status turns FAILED, which may still lag the last lines)
    message = (info.message or "").strip().splitlines()
    print(f"  reason      {message[0] if message else status}" + (f" ({info.error_type})" if info.error_type else ""))
    logged = message[1:] if len(message) > 1 else jobs_client.logs(job_id, address).rstrip().splitlines()
    tail = logged[-STATUS_TAIL_LINES:]
    print(f"  last {len(tail)} log lines:")
    for line in tail:
        print(f"    {line}")
    return 1


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."
