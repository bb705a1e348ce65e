"""Serve fixtures: free loopback ports (the untrained tiny checkpoints live in tests/conftest.py)."""

from __future__ import annotations

import socket

import pytest


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """A function returning a port nobody listens on right now (the OS picks it; the tiny race is acceptable)."""
    return _free_port
