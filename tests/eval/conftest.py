"""Metric tests train tiny networks: one torch thread each, as the eval runner's Ray tasks use (on a shared CPU
more threads made them 5-10x slower). The caller's setting is restored afterwards."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
