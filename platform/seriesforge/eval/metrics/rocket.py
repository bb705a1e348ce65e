"""ROCKET-feature FID, weight-free (metrics.md §6).

Kernels follow Dempster et al. 2020 (arXiv 1910.13051) as vendored in `ML4ITS/TimeVQVAE`
`evaluation/rocket_functions.py` (`generate_kernels`, `apply_kernel(s)`), reimplemented: length ∈ {7, 9, 11}
uniformly, weights N(0, 1) then mean-centred, bias U(−1, 1), dilation ⌊2^u⌋ with u ~ U(0, log₂((L−1)/(len−1))),
padding ((len−1)·dilation)//2 with probability ½ else 0. Two features per kernel, interleaved as in the reference
([ppv₀, max₀, ppv₁, max₁, …]): PPV (share of positive outputs) and max. Univariate (channel 0 only), 1 000 kernels →
2 000 features, each row L2-normalised, then `frechet_distance` (optionally after the IsolationForest filter of §5.3).

decision: kernels are drawn from `np.random.default_rng(seed)` (seed 0 per (dataset, L), stored with
`save_kernels`) in the reference's draw order; values therefore differ from the unseeded numba RNG of the reference.
decision: when a kernel is longer than the series (L − 1 < len − 1) the reference's u-range is negative and its
dilation truncates to 0; here u's upper bound is clipped at 0 (dilation 1) and, if the kernel still does not fit,
padding ((len−1)·dilation)//2 is forced so that the output keeps L steps.
decision: convolutions run in float64 (as the reference's numba code) with torch conv1d, one grouped call per
(length, dilation, padding) combination.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .frechet import frechet_distance, isolation_forest_inliers

CANDIDATE_LENGTHS = np.array([7, 9, 11], dtype=np.int32)
FEATURE_BATCH = 1024  # series per conv call; bounds memory at N × n_group × L float64 values
_FIELDS = ("lengths", "weights", "biases", "dilations", "paddings")


@dataclass(frozen=True)
class RocketKernels:
    """A ROCKET kernel bank; `weights` holds all kernels' weights concatenated in kernel order."""

    lengths: np.ndarray  # (n,) int32
    weights: np.ndarray  # (sum(lengths),) float64
    biases: np.ndarray  # (n,) float64
    dilations: np.ndarray  # (n,) int32
    paddings: np.ndarray  # (n,) int32
    input_length: int  # the series length L the dilations were drawn for

    @property
    def n_kernels(self) -> int:
        return int(len(self.lengths))

    def kernel_weights(self, i: int) -> np.ndarray:
        start = int(self.lengths[:i].sum())
        return self.weights[start:start + int(self.lengths[i])]


def make_kernels(length: int, *, n_kernels: int = 1000, seed: int = 0) -> RocketKernels:
    """Draw `n_kernels` ROCKET kernels for series of `length` steps, deterministically from `seed`."""
    if int(length) < 2:
        raise ValueError(f"length must be ≥ 2 time steps, got {length}")
    if int(n_kernels) < 1:
        raise ValueError(f"n_kernels must be ≥ 1, got {n_kernels}")
    rng = np.random.default_rng(seed)
    lengths = rng.choice(CANDIDATE_LENGTHS, int(n_kernels)).astype(np.int32)
    weights = np.zeros(int(lengths.sum()), dtype=np.float64)
    biases = np.zeros(len(lengths), dtype=np.float64)
    dilations = np.zeros(len(lengths), dtype=np.int32)
    paddings = np.zeros(len(lengths), dtype=np.int32)
    start = 0
    for i, klen in enumerate(lengths):
        w = rng.normal(0.0, 1.0, klen)
        weights[start:start + klen] = w - w.mean()
        start += klen
        biases[i] = rng.uniform(-1.0, 1.0)
        u_max = max(np.log2((length - 1) / (klen - 1)), 0.0)  # clipped: see "decision" above
        dilations[i] = max(int(2 ** rng.uniform(0.0, u_max)), 1)
        span = (klen - 1) * int(dilations[i])
        padded = rng.integers(2) == 1 or span > length - 1  # a kernel longer than the series must be padded
        paddings[i] = span // 2 if padded else 0
    return RocketKernels(lengths, weights, biases, dilations, paddings, int(length))


def save_kernels(kernels: RocketKernels, path: str | os.PathLike) -> None:
    """Write the kernel bank as .npz atomically (temporary file in the same folder, then os.replace)."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".rocket-", suffix=".npz.tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, input_length=np.int64(kernels.input_length),
                     **{name: getattr(kernels, name) for name in _FIELDS})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def load_kernels(path: str | os.PathLike) -> RocketKernels:
    """Read a kernel bank written by `save_kernels`, checking that its arrays agree."""
    with np.load(os.fspath(path)) as data:
        missing = [name for name in (*_FIELDS, "input_length") if name not in data.files]
        if missing:
            raise ValueError(f"kernel file {path} lacks arrays {missing}")
        kernels = RocketKernels(
            lengths=data["lengths"].astype(np.int32), weights=data["weights"].astype(np.float64),
            biases=data["biases"].astype(np.float64), dilations=data["dilations"].astype(np.int32),
            paddings=data["paddings"].astype(np.int32), input_length=int(data["input_length"]))
    n = kernels.n_kernels
    if not all(len(getattr(kernels, name)) == n for name in ("biases", "dilations", "paddings")) \
            or len(kernels.weights) != int(kernels.lengths.sum()):
        raise ValueError(f"kernel file {path} has inconsistent array lengths")
    return kernels


def _univariate(x: np.ndarray, name: str) -> np.ndarray:
    """(N, L) or (N, L, K) → (N, L) float64, channel 0."""
    x = np.asarray(x)
    if x.ndim == 3:
        x = x[:, :, 0]
    if x.ndim != 2:
        raise ValueError(f"{name} must be (N, L) or (N, L, K), got shape {x.shape}")
    if len(x) < 1:
        raise ValueError(f"{name} holds no series")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _kernel_groups(kernels: RocketKernels) -> dict[tuple[int, int, int], np.ndarray]:
    """Kernel indices grouped by (length, dilation, padding): each group is one conv1d call."""
    keys = np.stack([kernels.lengths, kernels.dilations, kernels.paddings], axis=1)
    groups: dict[tuple[int, int, int], np.ndarray] = {}
    for key in np.unique(keys, axis=0):
        groups[tuple(int(v) for v in key)] = np.flatnonzero(np.all(keys == key, axis=1))
    return groups


def _raw_features(series: torch.Tensor, kernels: RocketKernels, device: torch.device) -> torch.Tensor:
    """(N, L) float64 → (N, 2·n_kernels) unnormalised [ppv, max] pairs."""
    n, length = series.shape
    starts = np.concatenate([[0], np.cumsum(kernels.lengths)[:-1]])
    out = torch.empty(n, kernels.n_kernels, 2, dtype=torch.float64, device=device)
    x = series.unsqueeze(1)  # (N, 1, L)
    for (klen, dilation, padding), idx in _kernel_groups(kernels).items():
        if length + 2 * padding - (klen - 1) * dilation < 1:
            raise ValueError(f"series of length {length} are too short for a kernel of length {klen}, "
                             f"dilation {dilation}, padding {padding} (kernels drawn for L={kernels.input_length})")
        w = np.stack([kernels.weights[s:s + klen] for s in starts[idx]])  # (G, len)
        w = torch.as_tensor(w, device=device).unsqueeze(1)  # (G, 1, len)
        b = torch.as_tensor(kernels.biases[idx], device=device)  # (G,)
        conv = F.conv1d(x, w, bias=b, padding=padding, dilation=dilation)  # (N, G, L_out)
        where = torch.as_tensor(idx, device=device)
        out[:, where, 0] = (conv > 0).to(torch.float64).mean(dim=2)  # PPV
        out[:, where, 1] = conv.amax(dim=2)  # max
    return out.reshape(n, -1)


@torch.no_grad()
def rocket_features(x: np.ndarray, kernels: RocketKernels, *, device: str = "cpu") -> np.ndarray:
    """ROCKET features of channel 0 of `x` (N, L) or (N, L, K) → (N, 2·n_kernels), each row L2-normalised."""
    series = _univariate(x, "x")
    dev = torch.device(device)
    parts = []
    for start in range(0, len(series), FEATURE_BATCH):
        chunk = torch.as_tensor(series[start:start + FEATURE_BATCH], device=dev)
        parts.append(F.normalize(_raw_features(chunk, kernels, dev), p=2.0, dim=1).cpu())
    return torch.cat(parts).numpy()


def rocket_fid(real: np.ndarray, generated: np.ndarray, *, kernels: RocketKernels, iforest: bool = False,
               device: str = "cpu") -> dict:
    """FID of ROCKET features (metrics.md §6); `iforest` keeps only IsolationForest inliers of each set first.

    Deterministic for given kernels (the IsolationForest uses random_state 0), so there is no seed argument.
    """
    real_feat = rocket_features(_univariate(real, "real"), kernels, device=device)
    gen_feat = rocket_features(_univariate(generated, "generated"), kernels, device=device)
    if iforest:
        real_feat, gen_feat = isolation_forest_inliers(real_feat), isolation_forest_inliers(gen_feat)
    fid = frechet_distance(real_feat, gen_feat)
    return {
        "value": fid["value"],
        "regularized": fid["regularized"],
        "iforest": bool(iforest),
        "n_real": fid["n_real"],
        "n_generated": fid["n_generated"],
        "n_kernels": kernels.n_kernels,
    }
