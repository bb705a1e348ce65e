"""The on-disk checkpoint format. Loading needs only this module and the registry: no unpickling.

    step_000500/
      config.json                 resolved RunConfig (+ schema_version)
      meta.json                   family, stage, step, metrics, versions, data fingerprint, file manifest
      weights/model.safetensors   every network of every stage the family needs to generate
      train_state/                strategy-owned optimizer/engine state, only for resuming

A checkpoint is written under a temporary name and renamed when complete; `meta.json` is written last and
lists every file with its size, so a reader can tell a complete checkpoint from a half-copied one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from seriesforge.errors import CheckpointError

SCHEMA_VERSION = 1
WEIGHTS = "weights/model.safetensors"


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    config: dict
    meta: dict

    @property
    def family(self) -> str:
        return self.meta["family"]

    @property
    def order(self) -> tuple[int, int]:
        """Sort key: later stage first, then later step."""
        return (int(self.meta.get("stage_index", 0)), int(self.meta.get("step", 0)))


def write_checkpoint(path: str | Path, *, config: dict, meta: dict, state_dict: dict[str, torch.Tensor]) -> Path:
    """Write config, weights and meta to `path` atomically (temporary directory, then rename)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "weights").mkdir(parents=True)
    _write_json(tmp / "config.json", {**config, "schema_version": SCHEMA_VERSION})
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(tmp / WEIGHTS), metadata={"family": str(meta.get("family", ""))})
    manifest = {rel: (tmp / rel).stat().st_size for rel in ("config.json", WEIGHTS)}
    _write_json(tmp / "meta.json", {**meta, "files": manifest, "created": time.time()})
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)
    return path


def add_train_state_dir(path: str | Path) -> Path:
    """The folder a strategy writes its resume state into (not part of the manifest: resume only)."""
    d = Path(path) / "train_state"
    d.mkdir(parents=True, exist_ok=True)
    return d


def read_checkpoint(path: str | Path) -> CheckpointInfo:
    """Read and verify one checkpoint directory. Raises `CheckpointError` naming the missing or bad file."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path}: not a directory")
    meta = _read_json(path / "meta.json")
    config = _read_json(path / "config.json")
    for rel, size in meta.get("files", {}).items():
        f = path / rel
        if not f.is_file():
            raise CheckpointError(f"checkpoint {path}: missing file {rel} (incomplete checkpoint)")
        if f.stat().st_size != size:
            raise CheckpointError(f"checkpoint {path}: {rel} is {f.stat().st_size} bytes, manifest says {size}")
    if not (path / WEIGHTS).is_file():
        raise CheckpointError(f"checkpoint {path}: missing file {WEIGHTS}")
    for key in ("family", "stage", "step"):
        if key not in meta:
            raise CheckpointError(f"checkpoint {path}/meta.json: missing field {key!r}")
    if config.get("family") != meta["family"]:
        raise CheckpointError(f"checkpoint {path}: config.json family {config.get('family')!r} "
                              f"differs from meta.json family {meta['family']!r}")
    return CheckpointInfo(path=path, config=config, meta=meta)


def load_weights(info: CheckpointInfo) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(info.path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {info.path}/{WEIGHTS}: unreadable weights ({err})") from None


def find_checkpoints(run_dir: str | Path) -> list[CheckpointInfo]:
    """Every complete checkpoint below `run_dir` (incomplete ones are skipped), oldest first."""
    found = []
    for meta in sorted(Path(run_dir).rglob("meta.json")):
        if any(part.startswith(".") for part in meta.relative_to(run_dir).parts):
            continue  # temporary directories of writes in progress
        try:
            found.append(read_checkpoint(meta.parent))
        except CheckpointError:
            continue
    return sorted(found, key=lambda c: (c.order, c.meta.get("created", 0)))


def resolve(path: str | Path) -> CheckpointInfo:
    """A checkpoint directory, or a run directory -> its latest complete checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"--checkpoint {path}: no such file or directory")
    if (path / "meta.json").exists():
        return read_checkpoint(path)
    found = find_checkpoints(path)
    if not found:
        raise CheckpointError(f"--checkpoint {path}: no complete checkpoint found in this directory")
    return found[-1]


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())


def _read_json(path: Path) -> dict:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path.parent}: missing file {path.name}") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"checkpoint {path}: corrupt JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"checkpoint {path}: expected a JSON object")
    return data
