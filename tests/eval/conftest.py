"""Metric tests train tiny networks: one torch thread each, as the eval runner's Ray tasks use (on a shared CPU
more threads made them 5-10x slower). The caller's setting is restored afterwards."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _metrics_use_one_thread(one_torch_thread):  # tests/conftest.py
    yield
