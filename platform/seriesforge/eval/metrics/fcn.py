"""Supervised FCN feature extractor for the UCR metrics (metrics.md §5.1), trained by seriesforge per dataset and split.

Mirrors `danelee2601/supervised-FCN` `supervised_FCN/models/fcn.py` + `experiments/exp_train.py` (FCN v1, Wang et al.
2017, used by TimeVQVAE / TimeVQVDM) and the 6-block FCN v2 of `supervised-fcn-2==0.0.4` (used by NM-VQTSG).
The 128-d global-average-pooled activation is the FID feature; softmax(logits) feeds the Inception Score.

* v1: 3 × [Conv1d "same" → BatchNorm1d → ReLU] with (channels, kernel) = (128, 8), (256, 5), (128, 3) → GAP → Linear.
  ≈265 k parameters for K = 1. AdamW(lr 1e-3, wd 1e-5), cosine, 1 000 epochs, batch 256, final weights kept.
* v2: 6 blocks (128, 8), (256, 5) × 4, (128, 5) with Dropout(0.5) between blocks. AdamW, cosine to 1e-6, early stopping
  on validation loss (patience 10), best weights restored. seriesforge deviation (§5.1): validation = a 10 % stratified
  carve-out of the train split drawn with seed 0 (the reference validates on the test split).
* Input: dataset-standardised series, NaN → 0; the network sees channels-first `(B, K, L)`.

decision: "same" padding is an explicit ConstantPad1d of (k−1)//2 zeros on the left and k//2 on the right, exactly what
the reference `Conv1dSamePadding` does for stride 1 (one extra zero on the right for even kernels); it also avoids
PyTorch's copy warning for `padding="same"` with even kernels.
decision: v1's cosine schedule is stepped per batch with T_max = epochs·(⌈N/batch⌉ + 1), as in the reference
`ExpFCN` (so the rate never quite reaches 0); v2's is stepped per batch with T_max = epochs·⌈N_fit/batch⌉ and
eta_min 1e-6 (the reference uses its `max_steps`).
decision: both variants use `cfg.weight_decay` (1e-5); the v2 reference passes none, i.e. AdamW's default 0.01 —
set `weight_decay=0.01` in the config to reproduce that exactly.
decision: the v2 carve-out keeps at least one series of every class in the fit part; classes with one series give
none to validation. The carve-out seed is `cfg.val_seed` (0), independent of the initialisation seed `cfg.seed`, so
a re-train with another seed (§5.1 acceptance rule) keeps the same validation set.
decision: the artefact stores the whole state dict (BatchNorm running statistics included) in safetensors, and
`fcn.json` carries the SHA-256 of that file; `load_fcn` refuses weights whose hash differs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

FEATURE_DIM = 128
VARIANT_BLOCKS: dict[str, tuple[tuple[int, int], ...]] = {
    "v1": ((128, 8), (256, 5), (128, 3)),
    "v2": ((128, 8), (256, 5), (256, 5), (256, 5), (256, 5), (128, 5)),
}
VARIANT_DROPOUT = {"v1": 0.0, "v2": 0.5}
WEIGHTS_FILE = "model.safetensors"
META_FILE = "fcn.json"


class FCN(nn.Module):
    """Fully convolutional classifier; `features` is the 128-d GAP output, `forward` the class logits."""

    def __init__(self, in_channels: int, n_classes: int, variant: str = "v1") -> None:
        super().__init__()
        if variant not in VARIANT_BLOCKS:
            raise ValueError(f"variant must be one of {sorted(VARIANT_BLOCKS)}, got {variant!r}")
        if in_channels < 1 or n_classes < 1:
            raise ValueError(f"in_channels and n_classes must be ≥ 1, got {in_channels}, {n_classes}")
        self.variant, self.in_channels, self.n_classes = variant, int(in_channels), int(n_classes)
        layers: list[nn.Module] = []
        previous = in_channels
        for index, (channels, kernel) in enumerate(VARIANT_BLOCKS[variant]):
            if index > 0 and VARIANT_DROPOUT[variant] > 0:
                layers.append(nn.Dropout(VARIANT_DROPOUT[variant]))
            layers += [nn.ConstantPad1d(((kernel - 1) // 2, kernel // 2), 0.0),  # TF-style "same", stride 1
                       nn.Conv1d(previous, channels, kernel), nn.BatchNorm1d(channels), nn.ReLU()]
            previous = channels
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(FEATURE_DIM, n_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, L) → (B, 128): global average over time of the last block's activations."""
        return self.blocks(x).mean(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, K, L) → (B, n_classes) logits."""
        return self.head(self.features(x))


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


@dataclass
class FCNTrainConfig:
    """Training protocol of §5.1; defaults are the papers' values (v2 uses patience / val_fraction / val_seed)."""

    variant: str = "v1"
    epochs: int = 1000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    patience: int = 10
    val_fraction: float = 0.1
    seed: int = 0
    val_seed: int = 0
    eta_min_v2: float = 1e-6


def to_channels_first(x: np.ndarray, name: str = "x") -> np.ndarray:
    """(N, L) or time-major (N, L, K) → float32 (N, K, L) with NaN → 0 (§5.1 input rule); ±inf is an error."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 2:
        x = x[:, None, :]  # (N, 1, L)
    elif x.ndim == 3:
        x = np.transpose(x, (0, 2, 1))  # (N, L, K) → (N, K, L)
    else:
        raise ValueError(f"{name} must be (N, L) or (N, L, K), got shape {x.shape}")
    if len(x) == 0:
        raise ValueError(f"{name} is empty")
    if np.isinf(x).any():
        raise ValueError(f"{name} contains ±inf")
    return np.ascontiguousarray(np.nan_to_num(x, nan=0.0))


def _check_labels(y: np.ndarray, n_rows: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n_rows:
        raise ValueError(f"{name} must be 1-D with {n_rows} entries, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise ValueError(f"{name} must hold non-negative integer class indices 0..C−1")
    return y.astype(np.int64)


def stratified_carve_out(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (fit, validation): round(fraction·n_c) series of each class go to validation, ≥ 1 stays in fit."""
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        n_val = min(int(round(fraction * len(members))), len(members) - 1)
        val.append(members[:n_val])
        fit.append(members[n_val:])
    fit_idx, val_idx = np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))
    if len(val_idx) == 0:
        raise ValueError(f"y_train too small for a {fraction:.0%} stratified validation carve-out")
    return fit_idx, val_idx


def _mean_loss(model: FCN, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(x[start:start + batch_size])
            total += float(nn.functional.cross_entropy(logits, y[start:start + batch_size], reduction="sum"))
    return total / len(x)


def _accuracy(model: FCN, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            correct += int((model(x[start:start + batch_size]).argmax(-1) == y[start:start + batch_size]).sum())
    return correct / len(x)


def _run_epochs(model: FCN, x: torch.Tensor, y: torch.Tensor, cfg: FCNTrainConfig, validation, generator,
                progress: Callable[[int, dict], None] | None) -> dict:
    """The epoch loop shared by v1 and v2; `validation` is None (v1) or (x_val, y_val) for early stopping (v2)."""
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if validation is None:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs * (steps_per_epoch + 1))
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs * steps_per_epoch,
                                                               eta_min=cfg.eta_min_v2)
    best_loss, best_state, best_epoch, stale = math.inf, None, 0, 0
    epoch, train_loss = 0, math.nan
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator).to(x.device)
        losses = []
        for start in range(0, len(x), cfg.batch_size):
            batch = order[start:start + cfg.batch_size]
            loss = nn.functional.cross_entropy(model(x[batch]), y[batch])  # x[batch]: (B, K, L)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item() * len(batch))
        train_loss = sum(losses) / len(x)
        log = {"train_loss": train_loss, "lr": optimizer.param_groups[0]["lr"]}
        if validation is not None:
            log["val_loss"] = _mean_loss(model, *validation, cfg.batch_size)
            if log["val_loss"] < best_loss:
                best_loss, best_epoch, stale = log["val_loss"], epoch, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                stale += 1
        if progress is not None:
            progress(epoch, log)
        if validation is not None and stale >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)  # v2: restore the weights with the lowest validation loss
    return {"epochs_run": epoch, "final_train_loss": train_loss,
            "best_epoch": best_epoch if validation is not None else epoch,
            "best_val_loss": best_loss if validation is not None else None}


def train_fcn(x_train: np.ndarray, y_train: np.ndarray, cfg: FCNTrainConfig, *, x_test: np.ndarray | None = None,
              y_test: np.ndarray | None = None, n_classes: int | None = None, device: str = "cpu",
              progress: Callable[[int, dict], None] | None = None) -> tuple[FCN, dict]:
    """Train an FCN on `x_train` (N, L) or (N, L, K) with labels 0..C−1; returns (model in eval mode, info)."""
    if cfg.variant not in VARIANT_BLOCKS:
        raise ValueError(f"cfg.variant must be one of {sorted(VARIANT_BLOCKS)}, got {cfg.variant!r}")
    if cfg.epochs < 1 or cfg.batch_size < 1:
        raise ValueError(f"cfg.epochs and cfg.batch_size must be ≥ 1, got {cfg.epochs}, {cfg.batch_size}")
    x_np = to_channels_first(x_train, "x_train")  # (N, K, L)
    y_np = _check_labels(y_train, len(x_np), "y_train")
    n_classes = int(n_classes if n_classes is not None else y_np.max() + 1)
    if y_np.max() >= n_classes:
        raise ValueError(f"y_train holds class {y_np.max()} but n_classes is {n_classes}")
    if (x_test is None) != (y_test is None):
        raise ValueError("x_test and y_test must be given together")

    devices = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # seed init + dropout without touching the caller's RNG
        torch.manual_seed(cfg.seed)
        model = FCN(x_np.shape[1], n_classes, cfg.variant).to(device)
        generator = torch.Generator().manual_seed(cfg.seed)  # CPU generator for the epoch shuffles
        x_all = torch.from_numpy(x_np).to(device)
        y_all = torch.from_numpy(y_np).to(device)
        validation = None
        if cfg.variant == "v2":
            fit_idx, val_idx = stratified_carve_out(y_np, cfg.val_fraction, cfg.val_seed)
            validation = (x_all[val_idx], y_all[val_idx])
            x_all, y_all = x_all[fit_idx], y_all[fit_idx]
        history = _run_epochs(model, x_all, y_all, cfg, validation, generator, progress)
    model.eval()

    info = {"variant": cfg.variant, "n_classes": n_classes, "in_channels": int(x_np.shape[1]),
            "length": int(x_np.shape[2]), "n_train": int(len(x_all)),
            "n_val": int(len(validation[0])) if validation is not None else 0,
            "n_params": count_parameters(model), "seed": cfg.seed, "config": asdict(cfg), **history,
            "test_accuracy": None}
    if x_test is not None:
        xt = to_channels_first(x_test, "x_test")
        if xt.shape[1:] != x_np.shape[1:]:
            raise ValueError(f"x_test has (K, L) = {xt.shape[1:]}, x_train {x_np.shape[1:]}")
        yt = _check_labels(y_test, len(xt), "y_test")
        info["test_accuracy"] = _accuracy(model, torch.from_numpy(xt).to(device), torch.from_numpy(yt).to(device),
                                          cfg.batch_size)
        info["n_test"] = int(len(xt))
    return model, info


def fcn_outputs(model: FCN, x: np.ndarray, *, batch_size: int = 256,
                device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode (features (N, 128), softmax probabilities (N, C)) of `x` (N, L) or (N, L, K), as float64."""
    x_np = to_channels_first(x, "x")
    if x_np.shape[1] != model.in_channels:
        raise ValueError(f"x has {x_np.shape[1]} channels, the FCN expects {model.in_channels}")
    was_training = model.training
    model.eval().to(device)
    features, probabilities = [], []
    with torch.no_grad():
        for start in range(0, len(x_np), batch_size):
            batch = torch.from_numpy(x_np[start:start + batch_size]).to(device)  # (B, K, L)
            feats = model.features(batch)  # (B, 128)
            features.append(feats.double().cpu().numpy())
            probabilities.append(torch.softmax(model.head(feats).double(), dim=-1).cpu().numpy())
    model.train(was_training)
    return np.concatenate(features), np.concatenate(probabilities)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_fcn(model: FCN, info: dict, directory: str | os.PathLike) -> Path:
    """Write `model.safetensors` + `fcn.json` into `directory` atomically (temp dir, then rename); returns the path."""
    from safetensors.torch import save_file

    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(staging / WEIGHTS_FILE))
        meta = {"variant": model.variant, "n_classes": model.n_classes, "in_channels": model.in_channels,
                "length": info.get("length"), "test_accuracy": info.get("test_accuracy"), "seed": info.get("seed"),
                "epochs": info.get("epochs_run"), "n_params": count_parameters(model),
                "sha256": _sha256(staging / WEIGHTS_FILE), "info": info}
        (staging / META_FILE).write_text(json.dumps(meta, indent=2, default=_json_default))
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _swap_into_place(staging: Path, target: Path) -> None:
    """Rename `staging` to `target`; an existing `target` is moved aside first and removed only afterwards."""
    if not target.exists():
        os.replace(staging, target)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.replace(target, retired / target.name)
    os.replace(staging, target)
    shutil.rmtree(retired, ignore_errors=True)


def _json_default(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def load_fcn(directory: str | os.PathLike, *, device: str = "cpu") -> tuple[FCN, dict]:
    """Load an artefact written by `save_fcn`; ValueError naming the file when the weights' SHA-256 differs."""
    from safetensors.torch import load_file

    directory = Path(directory)
    weights, meta_path = directory / WEIGHTS_FILE, directory / META_FILE
    for path in (weights, meta_path):
        if not path.is_file():
            raise ValueError(f"FCN artefact incomplete: {path} is missing")
    meta = json.loads(meta_path.read_text())
    actual = _sha256(weights)
    if actual != meta.get("sha256"):
        raise ValueError(f"SHA-256 mismatch for {weights}: expected {meta.get('sha256')}, found {actual}")
    model = FCN(meta["in_channels"], meta["n_classes"], meta["variant"])
    model.load_state_dict(load_file(str(weights), device="cpu"))
    return model.to(device).eval(), meta
