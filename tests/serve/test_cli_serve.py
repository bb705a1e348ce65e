"""`seriesforge serve` as a user runs it: a foreground process that serves, then stops cleanly on SIGTERM.

It starts its own embedded Ray in a subprocess (the test's session Ray is not used), so this is the slowest serve
test (~30 s on 2 cores); it is the only check that the command's signal handling and shutdown really work.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from seriesforge.client import Client
from seriesforge.errors import EndpointError


def _lines(proc: subprocess.Popen) -> queue.Queue:
    """The process's output lines, read on a thread so the test can wait with a deadline."""
    lines: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def _wait_for(lines: queue.Queue, needle: str, seen: list[str], timeout: float) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            return None
        seen.append(line)
        if needle in line:
            return line
    return None


def test_serve_command_serves_and_stops_on_sigterm(tiny_checkpoints, free_port, tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}  # its own embedded Ray, never ours
    env.update(SF_CLI_TEST_KEY="cli-key", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "seriesforge.cli", "serve", "--checkpoint", f"m={tiny_checkpoints['a']}",
           "--port", str(port), "--api-key-env", "SF_CLI_TEST_KEY"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen: list[str] = []
    try:
        lines = _lines(proc)
        ready = _wait_for(lines, "serving 1 model(s) at", seen, timeout=120)
        assert ready, "server did not come up:\n" + "\n".join(seen[-30:])
        url = f"http://127.0.0.1:{port}"
        assert url in ready and "API key required" in ready
        assert "cli-key" not in "\n".join(seen), "the API key must never be printed"
        with Client(url, api_key="cli-key") as client:
            assert [m["name"] for m in client.models()] == ["m"]
            assert client.generate("m", length=24, captions=["up"]).shape == (1, 1, 24)
        with pytest.raises(EndpointError) as err:
            Client(url).generate("m", length=24, captions=["up"])
        assert err.value.status == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, "\n".join(seen[-30:])
        assert _wait_for(lines, "stopped", seen, timeout=5), "\n".join(seen[-30:])
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def test_serve_command_fails_early_and_named(tmp_path, capsys, monkeypatch):
    """Bad checkpoints and a missing API-key variable stop `serve` before Ray starts, as one line."""
    from seriesforge.cli import main

    monkeypatch.delenv("SF_MISSING_KEY", raising=False)
    assert main(["serve", "--checkpoint", f"x={tmp_path / 'nope'}"]) == 2
    assert "models.x: --checkpoint" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(tmp_path), "--api-key-env", "SF_MISSING_KEY"]) == 2
    assert "SF_MISSING_KEY is not set" in capsys.readouterr().err
