"""NM-VQTSG's choice of the stochastic-VQ temperature τ (models.md §6, "τ search").

Shape legend: N training series · M prior samples · K channels · L length · P = 2 x kernels ROCKET features.

    M unconditional prior samples X̂ (M, K, L) --ROCKET--> (M, P)
    for τ in the grid: X̃'_τ = D(SVQ_τ(E(X_train))) (N, K, L) --ROCKET--> (N, P); FID against X̂
    τ* = argmin FID

The samples, the stochastic draws and the ROCKET kernels are all seeded from one seed, so every rank (and a rerun)
picks the same τ; the reference's kernels are unseeded, which can flip τ* between runs.
"""

from __future__ import annotations

import numpy as np
import torch

from seriesforge.eval.metrics.frechet import frechet_distance
from seriesforge.eval.metrics.rocket import make_kernels, rocket_features

CHUNK = 256  # series per forward pass


@torch.no_grad()
def search_tau(model, reference: np.ndarray, *, seed: int) -> tuple[float, dict[float, float]]:
    """(τ*, {τ: FID}) for a TimeVQVAE family module with trained stages 1-2; `reference` (N, L, K) training series."""
    cfg = model.cfg
    device = next(model.parameters()).device
    generator = torch.Generator(device="cpu").manual_seed(seed)
    kernels = make_kernels(cfg.length, n_kernels=cfg.rocket_kernels, seed=seed)
    samples = torch.cat([model.sample(n=min(CHUNK, cfg.tau_samples - start), length=cfg.length, generator=generator)
                         for start in range(0, cfg.tau_samples, CHUNK)])  # (M, K, L)
    sample_features = rocket_features(samples.transpose(1, 2).cpu().numpy(), kernels)  # (M, P)
    real = torch.tensor(np.array(reference), dtype=torch.float32).transpose(1, 2)  # (N, K, L)
    scores: dict[float, float] = {}
    for tau in cfg.tau_grid:
        draw = torch.Generator(device="cpu").manual_seed(seed + 1)  # the same uniforms for every τ
        recon = torch.cat([_stochastic(model, real[i:i + CHUNK].to(device), tau, draw)
                           for i in range(0, len(real), CHUNK)])  # (N, K, L)
        features = rocket_features(recon.transpose(1, 2).cpu().numpy(), kernels)
        scores[float(tau)] = float(frechet_distance(features, sample_features)["value"])
    best = min(scores, key=scores.get)
    return best, scores


def _stochastic(model, x: torch.Tensor, tau: float, generator: torch.Generator) -> torch.Tensor:
    return model.tokenizer.stochastic_reconstruction(x, tau, generator).cpu()
