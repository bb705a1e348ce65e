"""Serve fixtures: untrained tiny T2S checkpoints (nothing is trained) and free loopback ports.

The checkpoints are written through the real checkpoint writer from the `debug` preset, with weights drawn from
two different seeds so that samples tell the models apart.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch


def write_untrained_checkpoint(path: Path, *, weight_seed: int) -> Path:
    from seriesforge import checkpoint, config as C, registry

    cfg = registry.preset_config("t2s", "debug", "captions:/unused")
    torch.manual_seed(weight_seed)
    model = registry.get("t2s")(cfg.model)
    return checkpoint.write_checkpoint(path, config=C.to_dict(cfg), state_dict=model.state_dict(),
                                       meta={"family": "t2s", "stage": "denoiser", "stage_index": 1, "step": 1})


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Two final-stage T2S debug checkpoints with different (untrained) weights: name -> directory."""
    root = tmp_path_factory.mktemp("serve_ckpts")
    return {name: write_untrained_checkpoint(root / name, weight_seed=seed) for name, seed in (("a", 1), ("b", 2))}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def free_port():
    """A function returning a port nobody listens on right now (the OS picks it; the tiny race is acceptable)."""
    return _free_port


@pytest.fixture(scope="session")
def make_checkpoint():
    """`write_untrained_checkpoint(path, weight_seed=...)` as a fixture."""
    return write_untrained_checkpoint
