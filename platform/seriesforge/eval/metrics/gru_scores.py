"""Post-hoc GRU metrics of the benchmark suite: discriminative score (metrics.md §1) and predictive score (§2).

Mirrors `jsyoon0823/TimeGAN` `metrics/discriminative_metrics.py` and `metrics/predictive_metrics.py` (identical in
`Y-debug-sys/Diffusion-TS` `Utils/discriminative_metric.py`, `Utils/predictive_metric.py`), which build the networks
from TF1 `tf.compat.v1.nn.rnn_cell.GRUCell` + `dynamic_rnn` and `tf.contrib.layers.fully_connected` heads.

decision (GRU cell): torch's `nn.GRU` is not TF1's cell. TF1 GRUCell computes
    [r, u] = sigmoid([x, h] @ W_gates + b_gates)            W_gates (K+h, 2h), b_gates = 1
    c      = tanh([x, r * h] @ W_candidate + b_candidate)    W_candidate (K+h, h), b_candidate = 0
    h'     = u * h + (1 - u) * c
i.e. the reset gate multiplies the state *before* the recurrent matmul and there is a single bias per gate, whereas
torch (gate order r, z, n) applies r *after* the recurrent matmul and has separate input/recurrent biases
(`n = tanh(W_in x + b_in + r * (W_hn h + b_hn))`). No torch weight mapping reproduces the TF1 candidate, so
`TF1GRU` implements the TF1 cell itself. Both kernels are Glorot-uniform over the whole stacked matrix (TF fans:
fan_in = K + h, fan_out = 2h or h), gate bias 1, candidate bias 0. Heads are Linear(h -> 1) with Glorot-uniform
weight and zero bias (`fully_connected` defaults). Note: the most recent TimeGAN commit switched the discriminator to
`tf.keras.layers.GRUCell` (orthogonal recurrent kernel, zero bias, reset_after=True); metrics.md §1 asks for the
TF1 defaults the published numbers came from, so those are used here.
decision (K = 1): TimeGAN's h = int(K/2) is 0 for K = 1; the discriminator then uses h = 1 and reports
`hidden_flag = True`; the predictive score is undefined for K = 1 and raises ValueError.
decision (batches): as TimeGAN's `batch_generator`, each mini-batch is the first `batch_size` indices of a fresh
permutation (no repeats inside a batch; the whole 80 % part when it is smaller than the batch).
doubt: torch's Adam puts ε after bias correction, TF1's before (ε̂ form); with ε = 1e-8 the difference is
negligible.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

TRAIN_FRACTION = 0.8  # TimeGAN `train_test_divide(train_rate=0.8)`
TARGET_TOLERANCE = 1e-6  # slack allowed outside [0, 1] for predictive targets (fp rounding of min-max scaling)
EVAL_CHUNK = 4096  # windows per forward pass when scoring held-out / real sets


def _glorot_uniform(shape: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Glorot/Xavier-uniform for a TF-style (fan_in, fan_out) matrix."""
    limit = math.sqrt(6.0 / (shape[0] + shape[1]))
    return torch.empty(shape).uniform_(-limit, limit, generator=generator)


class TF1GRU(nn.Module):
    """Single-layer GRU with TF1 `GRUCell` semantics and initialisation (see module docstring)."""

    def __init__(self, input_size: int, hidden_size: int, generator: torch.Generator) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        stacked = input_size + hidden_size
        self.gate_kernel = nn.Parameter(_glorot_uniform((stacked, 2 * hidden_size), generator))
        self.gate_bias = nn.Parameter(torch.ones(2 * hidden_size))
        self.candidate_kernel = nn.Parameter(_glorot_uniform((stacked, hidden_size), generator))
        self.candidate_bias = nn.Parameter(torch.zeros(hidden_size))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, L, K) -> (outputs (B, L, h), last state (B, h)); zero initial state as `dynamic_rnn`."""
        k = self.input_size
        # Input halves of [x, h] @ W for every step at once: (B, L, 2h) and (B, L, h).
        gate_from_x = x @ self.gate_kernel[:k] + self.gate_bias
        candidate_from_x = x @ self.candidate_kernel[:k] + self.candidate_bias
        gate_from_h, candidate_from_h = self.gate_kernel[k:], self.candidate_kernel[k:]
        state = x.new_zeros(x.shape[0], self.hidden_size)  # (B, h)
        outputs = []
        for t in range(x.shape[1]):
            gates = torch.sigmoid(gate_from_x[:, t] + state @ gate_from_h)  # (B, 2h)
            reset, update = gates.chunk(2, dim=1)  # TF1 order: r first, then u
            candidate = torch.tanh(candidate_from_x[:, t] + (reset * state) @ candidate_from_h)  # (B, h)
            state = update * state + (1.0 - update) * candidate
            outputs.append(state)
        return torch.stack(outputs, dim=1), state


def _glorot_linear(hidden: int, generator: torch.Generator) -> nn.Linear:
    """Linear(h -> 1) with `fully_connected` defaults: Glorot-uniform weight, zero bias."""
    head = nn.Linear(hidden, 1)
    with torch.no_grad():
        head.weight.copy_(_glorot_uniform((hidden, 1), generator).T)  # torch stores (out, in)
        head.bias.zero_()
    return head


class _Discriminator(nn.Module):
    """GRU -> last hidden state -> Linear(h -> 1) logit."""

    def __init__(self, features: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        self.rnn = TF1GRU(features, hidden, generator)
        self.head = _glorot_linear(hidden, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = self.rnn(x)  # (B, h)
        return self.head(last).squeeze(-1)  # (B,) logits


class _Predictor(nn.Module):
    """GRU -> Linear(h -> 1) on every step -> sigmoid."""

    def __init__(self, features: int, hidden: int, generator: torch.Generator) -> None:
        super().__init__()
        self.rnn = TF1GRU(features, hidden, generator)
        self.head = _glorot_linear(hidden, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, _ = self.rnn(x)  # (B, L-1, h)
        return torch.sigmoid(self.head(outputs))  # (B, L-1, 1)


def _check_pair(real: np.ndarray, generated: np.ndarray, min_windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate two (N, L, K) sets with equal L and K; return float32 copies."""
    arrays = []
    for name, x in (("real", real), ("generated", generated)):
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3:
            raise ValueError(f"{name} must be 3-D (N, L, K), got shape {x.shape}")
        if x.shape[0] < min_windows:
            raise ValueError(f"{name} needs at least {min_windows} windows, got {x.shape[0]}")
        if x.shape[1] < 1 or x.shape[2] < 1:
            raise ValueError(f"{name} has an empty time or feature axis: shape {x.shape}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{name} contains NaN or inf")
        arrays.append(x)
    if arrays[0].shape[1:] != arrays[1].shape[1:]:
        raise ValueError(
            f"real and generated must share (L, K): real has {arrays[0].shape[1:]}, generated {arrays[1].shape[1:]}"
        )
    return arrays[0], arrays[1]


def _split(x: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Permute and cut at int(0.8 N): (train, test), as TimeGAN `train_test_divide`."""
    order = rng.permutation(len(x))
    cut = int(len(x) * TRAIN_FRACTION)
    return x[order[:cut]], x[order[cut:]]


def _batch(x: np.ndarray, batch_size: int, rng: np.random.Generator, device: str) -> torch.Tensor:
    """First `batch_size` rows of a fresh permutation (TimeGAN `batch_generator`) as a tensor (B, L, K)."""
    rows = rng.permutation(len(x))[:batch_size]
    return torch.from_numpy(x[rows]).to(device)


@torch.no_grad()
def _predict_in_chunks(model: nn.Module, x: np.ndarray, device: str) -> np.ndarray:
    """Model outputs for every row of x, EVAL_CHUNK windows at a time, as float64 numpy."""
    parts = [model(torch.from_numpy(x[i : i + EVAL_CHUNK]).to(device)).cpu() for i in range(0, len(x), EVAL_CHUNK)]
    return torch.cat(parts).double().numpy()


def _check_positive(name: str, value: int) -> None:
    if int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")


def discriminative_score(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    seed: int,
    iterations: int = 2000,
    batch_size: int = 128,
    device: str = "cpu",
) -> dict:
    """|accuracy − 0.5| of a post-hoc GRU real/fake classifier on held-out windows (metrics.md §1).

    real (N, L, K) and generated (M, L, K); each set is split 80/20 by its own permutation; the classifier trains
    on the 80 % parts and is scored on all held-out windows of both sets at threshold 0.5.
    """
    real, generated = _check_pair(real, generated, min_windows=2)  # 2 → at least one train and one test window
    _check_positive("iterations", iterations)
    _check_positive("batch_size", batch_size)
    features = real.shape[2]
    hidden = features // 2
    hidden_flag = hidden == 0
    hidden = max(hidden, 1)

    rng = np.random.default_rng(seed)
    real_train, real_test = _split(real, rng)
    fake_train, fake_test = _split(generated, rng)
    model = _Discriminator(features, hidden, torch.Generator().manual_seed(seed)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)

    loss = torch.zeros(())
    for _ in range(iterations):
        real_batch = _batch(real_train, batch_size, rng, device)  # (B, L, K)
        fake_batch = _batch(fake_train, batch_size, rng, device)  # (B', L, K)
        # One pass over both batches: windows are independent, so this equals two passes, at half the step overhead.
        real_logits, fake_logits = model(torch.cat([real_batch, fake_batch])).split([len(real_batch), len(fake_batch)])
        loss = F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.eval()
    real_prob = 1.0 / (1.0 + np.exp(-_predict_in_chunks(model, real_test, device)))  # (N_test,)
    fake_prob = 1.0 / (1.0 + np.exp(-_predict_in_chunks(model, fake_test, device)))  # (M_test,)
    real_correct = int(np.sum(real_prob > 0.5))
    fake_correct = int(np.sum(~(fake_prob > 0.5)))
    accuracy = (real_correct + fake_correct) / (len(real_test) + len(fake_test))
    return {
        "value": float(abs(accuracy - 0.5)),
        "accuracy": float(accuracy),
        "real_accuracy": real_correct / len(real_test),
        "fake_accuracy": fake_correct / len(fake_test),
        "hidden": int(hidden),
        "hidden_flag": bool(hidden_flag),
        "n_real_test": int(len(real_test)),
        "n_generated_test": int(len(fake_test)),
        "iterations": int(iterations),
        "final_train_loss": float(loss.detach().cpu()),
        "seed": int(seed),
    }


def _check_targets(name: str, targets: np.ndarray) -> None:
    """Predictive targets pass through a sigmoid, so they must lie in [0, 1] (metrics.md §2)."""
    low, high = float(targets.min()), float(targets.max())
    if low < -TARGET_TOLERANCE or high > 1.0 + TARGET_TOLERANCE:
        raise ValueError(
            f"{name}: predictive targets (last feature) must lie in [0, 1] (map the data to [0, 1] first), "
            f"got range [{low:.4g}, {high:.4g}]"
        )


def _io_pairs(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inputs (N, L−1, K−1): features 0..K−2 at steps 0..L−2; targets (N, L−1, 1): last feature at steps 1..L−1."""
    return np.ascontiguousarray(x[:, :-1, :-1]), np.ascontiguousarray(x[:, 1:, -1:])


def predictive_score(
    real: np.ndarray,
    generated: np.ndarray,
    *,
    seed: int,
    iterations: int = 5000,
    batch_size: int = 128,
    device: str = "cpu",
) -> dict:
    """Train-on-generated, test-on-real one-step-ahead MAE of a post-hoc GRU (metrics.md §2).

    real (N, L, K) and generated (M, L, K) with K ≥ 2, L ≥ 2 and the last feature in [0, 1]; score = mean over
    real windows of the per-window mean absolute error.
    """
    real, generated = _check_pair(real, generated, min_windows=1)
    _check_positive("iterations", iterations)
    _check_positive("batch_size", batch_size)
    length, features = real.shape[1], real.shape[2]
    if features < 2:
        raise ValueError(f"predictive score is undefined for K = {features} features (needs K >= 2)")
    if length < 2:
        raise ValueError(f"predictive score needs sequence length L >= 2, got L = {length}")
    gen_inputs, gen_targets = _io_pairs(generated)
    real_inputs, real_targets = _io_pairs(real)
    _check_targets("real", real_targets)
    # Generated targets outside [0, 1] (an unclipped sampler) are clipped: the sigmoid head cannot reach them, and
    # under the L1 loss a target beyond 1 pulls with exactly the gradient a target at 1 does, so training is the
    # reference's; only the reported train loss differs. The fraction clipped is reported.
    outside = float(np.mean((gen_targets < 0.0) | (gen_targets > 1.0)))
    gen_targets = np.clip(gen_targets, 0.0, 1.0)
    hidden = max(features // 2, 1)

    rng = np.random.default_rng(seed)
    model = _Predictor(features - 1, hidden, torch.Generator().manual_seed(seed)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    loss = torch.zeros(())
    for _ in range(iterations):
        rows = rng.permutation(len(generated))[:batch_size]
        inputs = torch.from_numpy(gen_inputs[rows]).to(device)  # (B, L-1, K-1)
        targets = torch.from_numpy(gen_targets[rows]).to(device)  # (B, L-1, 1)
        loss = F.l1_loss(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    model.eval()
    predictions = _predict_in_chunks(model, real_inputs, device)  # (N, L-1, 1)
    per_window_mae = np.abs(predictions - real_targets.astype(np.float64)).mean(axis=(1, 2))  # (N,)
    return {
        "value": float(per_window_mae.mean()),
        "per_window_mae_std": float(per_window_mae.std()),
        "hidden": int(hidden),
        "n_generated_train": int(len(generated)),
        "generated_targets_clipped": outside,  # fraction of generated targets outside [0, 1], clipped to it
        "n_real_test": int(len(real)),
        "iterations": int(iterations),
        "final_train_loss": float(loss.detach().cpu()),
        "seed": int(seed),
    }
