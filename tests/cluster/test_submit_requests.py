"""`seriesforge submit` without a cluster: the entrypoint and runtime environment a job gets, the refusals that
protect outputs, the token and address rules. (The real Jobs API round trips are in test_cluster_jobs.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from seriesforge.cli import build_parser
from seriesforge.errors import ConfigError
from seriesforge.submit import jobs_client
from seriesforge.submit.commands import request_from_args

ROOT = Path(__file__).resolve().parents[2]


def _request(*argv: str):
    args = build_parser().parse_args(["submit", *argv])
    return request_from_args(args), args


def test_options_after_kind_are_taken_out_and_the_rest_passes_through():
    req, args = _request("train", "t2s", "--data", "captions:/c", "--out", "/mnt/r", "--set", "a.b=1",
                         "--address", "http://head:8265", "--env", "X=1", "--pip", "einops")
    assert args.address == "http://head:8265" and req.env == {"X": "1"} and req.pip == ("einops",)
    assert req.args == ["t2s", "--data", "captions:/c", "--out", "/mnt/r", "--set", "a.b=1"]
    assert jobs_client.entrypoint(req, ROOT) == "python -m seriesforge train t2s --data captions:/c --out /mnt/r " \
                                                "--set a.b=1"


@pytest.mark.parametrize("out", [["--out", "runs/x"], ["--out=runs/x"], ["--resume", "runs/x"]])
def test_relative_outputs_are_refused_without_storage(out):
    req, _ = _request("train", "t2s", "--data", "sines:24", *out)
    with pytest.raises(ConfigError, match=r"(--out|--resume) runs/x is relative"):
        jobs_client.entrypoint(req, ROOT)
    req.storage = "/mnt/shared"  # with --storage the job runs there and the path resolves under it
    assert jobs_client.entrypoint(req, ROOT).startswith("mkdir -p /mnt/shared && cd /mnt/shared && "
                                                        "python -m seriesforge train ")


def test_spec_jobs_use_the_jobs_entrypoints_and_check_their_outputs(tmp_path):
    req, _ = _request("tune", "--spec", str(ROOT / "jobs/specs/t2s_asha32.yaml"), "--storage", "/mnt/shared")
    assert jobs_client.entrypoint(req, ROOT) == "python jobs/sweep.py jobs/specs/t2s_asha32.yaml"
    req.storage = None  # its out: is relative
    with pytest.raises(ConfigError, match="out: sweeps/t2s-asha32 is relative"):
        jobs_client.entrypoint(req, ROOT)
    with pytest.raises(ConfigError, match="kind: tune, but this entrypoint runs train specs"):
        jobs_client.entrypoint(jobs_client.JobRequest("train", [], spec=req.spec, storage="/mnt/shared"), ROOT)
    outside = tmp_path / "spec.yaml"
    outside.write_text("kind: train\n")
    with pytest.raises(ConfigError, match="must lie inside the project"):
        jobs_client.entrypoint(jobs_client.JobRequest("train", [], spec=outside), ROOT)
    with pytest.raises(ConfigError, match="the spec holds the job's arguments"):
        jobs_client.entrypoint(jobs_client.JobRequest("train", ["--out", "/x"], spec=outside), ROOT)


def test_runtime_env_uploads_this_checkout_without_environments_or_outputs():
    req = jobs_client.JobRequest("train", [], storage="/mnt/shared", env={"A": "b"})
    env = jobs_client.runtime_env(req, jobs_client.project_root())
    assert Path(env["working_dir"]) == ROOT and env["py_modules"] == [str(ROOT / "platform" / "seriesforge")]
    assert {".venv", ".git", "runs"} <= set(env["excludes"])
    assert env["env_vars"]["SERIESFORGE_STORAGE"] == "/mnt/shared" and env["env_vars"]["A"] == "b"
    assert env["env_vars"]["ARROW_DEFAULT_MEMORY_POOL"] == "system"  # the cluster's workers, as embedded ones
    assert "pip" not in env
    mine = jobs_client.JobRequest("train", [], env={"ARROW_DEFAULT_MEMORY_POOL": "jemalloc"})
    assert jobs_client.runtime_env(mine, None)["env_vars"]["ARROW_DEFAULT_MEMORY_POOL"] == "jemalloc"


def test_the_token_comes_from_env_path_or_home_unless_disabled(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    assert jobs_client.cluster_token() is None  # no token anywhere: nothing to send
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("home-token\n")
    assert jobs_client.cluster_token() == "home-token"
    (tmp_path / "other").write_text("path-token")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "other"))
    assert jobs_client.cluster_token() == "path-token"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "env-token")
    assert jobs_client.cluster_token() == "env-token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert jobs_client.cluster_token() is None


def test_jobs_address_precedence(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")  # a GCS address is not the Jobs API
    assert jobs_client.jobs_address(None) == jobs_client.DEFAULT_ADDRESS
    monkeypatch.setenv("RAY_ADDRESS", "http://head:8265")
    assert jobs_client.jobs_address(None) == "http://head:8265"
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", "http://api:8265")
    assert jobs_client.jobs_address(None) == "http://api:8265"
    assert jobs_client.jobs_address("http://flag:1") == "http://flag:1"
