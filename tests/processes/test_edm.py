"""EDM checked against exact denoisers (no network) and a tiny trained MLP.

Oracles: for a point mass x*, D(x; σ) = x*; for data x0 ~ N(μ, s²), D(x; σ) = μ + s² / (s² + σ²) · (x − μ), whose
probability-flow ODE dx/dσ = (x − D) / σ maps x(σ_max) to μ + (x(σ_max) − μ) · s / sqrt(s² + σ_max²). An oracle
raw network inverts the preconditioning: F = (D − c_skip · x) / c_out with σ = exp(4 c_noise) and x = x_in / c_in.
"""

import math

import pytest
import torch
from torch import nn

from seriesforge.nn.embeddings import timestep_embedding
from seriesforge.processes.edm import EDM

MU, S = 1.5, 0.3
X_STAR = torch.tensor([[0.7, -1.2, 2.0], [3.0, -0.5, 0.25]], dtype=torch.float64)  # (2, 3)


def _col(v, like):
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def oracle_net(edm, denoiser):
    """Raw network F whose preconditioned output D equals ``denoiser(x, sigma)``."""

    def net(x_in, c_noise):
        sigma = (4 * c_noise).exp()                                      # (B,)
        c_skip, c_out, c_in, _ = (_col(c, x_in) for c in edm.preconditioning(sigma))
        x = x_in / c_in
        return (denoiser(x, _col(sigma, x)) - c_skip * x) / c_out

    return net


def point_mass(x, sigma):
    return X_STAR.to(x.dtype).expand_as(x)


def gaussian(x, sigma):
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _noise(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_preconditioning_identities():
    edm = EDM(sigma_data=0.5)
    sigma = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm.preconditioning(sigma)
    assert c_skip[1].item() == pytest.approx(0.5) and c_noise[1].item() == pytest.approx(math.log(0.5) / 4)
    assert torch.allclose(c_skip + (c_out / 0.5) ** 2, torch.ones(3, dtype=torch.float64))
    assert torch.allclose(c_in * (sigma**2 + 0.25).sqrt(), torch.ones(3, dtype=torch.float64))
    assert torch.allclose(edm.loss_weight(sigma) * c_out**2, torch.ones(3, dtype=torch.float64))


def test_denoise_with_oracle_net_returns_the_point():
    edm = EDM()
    x = X_STAR + 5.0 * _noise(2, 3)
    for sigma in [0.002, 0.1, 1.0, 80.0]:
        assert torch.allclose(edm.denoise(oracle_net(edm, point_mass), x, sigma), X_STAR, atol=1e-8)
    per_sample = torch.tensor([0.01, 30.0], dtype=torch.float64)
    assert torch.allclose(edm.denoise(oracle_net(edm, point_mass), x, per_sample), X_STAR, atol=1e-8)


@pytest.mark.parametrize("s_churn", [0.0, 1.0])
def test_heun_sampler_with_point_mass_oracle_returns_the_point(s_churn):
    edm = EDM(s_churn=s_churn)
    noise = _noise(8, 2, 3).float()
    out = edm.sample(oracle_net(edm, point_mass), noise, steps=50, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.float32
    assert (out.double() - X_STAR).abs().max() < 1e-3


def test_deterministic_heun_follows_the_ode_with_second_order_error():
    edm = EDM(s_churn=0.0)
    noise = _noise(2048, 2)
    target = MU + (80.0 * noise - MU) * S / math.sqrt(S**2 + 80.0**2)

    def error(steps):
        return (edm.sample(oracle_net(edm, gaussian), noise, steps=steps) - target).abs().max().item()

    e18, e36 = error(18), error(36)
    assert error(50) < 2e-2
    assert e36 < e18 / 3  # second order: halving the step cuts the error about four-fold


def test_churn_sampler_draws_the_data_distribution_and_uses_the_generator():
    edm = EDM()  # S_churn = 1
    noise = _noise(4096, 2)
    net = oracle_net(edm, gaussian)
    out = edm.sample(net, noise, steps=50, generator=torch.Generator().manual_seed(3))
    assert out.mean().item() == pytest.approx(MU, abs=0.02)
    assert out.std().item() == pytest.approx(S, abs=0.015)
    again = edm.sample(net, noise, steps=50, generator=torch.Generator().manual_seed(3))
    other = edm.sample(net, noise, steps=50, generator=torch.Generator().manual_seed(4))
    assert torch.equal(out, again) and (out - other).abs().max() > 1e-3


def test_sigma_grid_and_network_calls():
    edm = EDM()
    sigmas = edm.sigma_steps(50)
    assert len(sigmas) == 51 and sigmas[-1] == 0.0
    assert sigmas[0] == pytest.approx(80.0) and sigmas[-2] == pytest.approx(0.002)
    assert all(a > b for a, b in zip(sigmas, sigmas[1:]))
    mid = (80 ** (1 / 7) + 0.5 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert edm.sigma_steps(3)[1] == pytest.approx(mid)
    c_noises, seen = [], []

    def counting(x_in, c_noise):
        c_noises.append(float(c_noise[0]))
        return oracle_net(edm, point_mass)(x_in, c_noise)

    EDM(s_churn=0.0).sample(counting, _noise(4, 2, 3), steps=5, progress=seen.append)
    assert seen == [0, 1, 2, 3, 4]
    assert len(c_noises) == EDM.evaluations(5) == 9
    assert c_noises[0] == pytest.approx(math.log(80.0) / 4)


def test_training_loss_is_zero_for_the_oracle_and_finite_otherwise():
    edm = EDM()
    x0 = X_STAR.expand(64, -1, -1).clone()
    loss = edm.training_loss(oracle_net(edm, point_mass), x0, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and loss.item() < 1e-10
    zero = edm.training_loss(lambda x, c: torch.zeros_like(x), x0, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(zero) and zero.item() > 0.1
    sigma = edm.sample_sigma(20000, generator=torch.Generator().manual_seed(0))
    assert sigma.log().mean().item() == pytest.approx(-1.2, abs=0.03)
    assert sigma.log().std().item() == pytest.approx(1.2, abs=0.03)


def test_bad_arguments_name_the_parameter():
    edm = EDM()
    with pytest.raises(ValueError, match="steps"):
        edm.sample(oracle_net(edm, point_mass), _noise(2, 2, 3), steps=0)
    for kwargs, name in [
        ({"sigma_data": 0.0}, "sigma_data"),
        ({"sigma_max": 0.001}, "sigma_max"),
        ({"sigma_min": -1.0}, "sigma_min"),
        ({"p_std": 0.0}, "p_std"),
        ({"rho": 0.0}, "rho"),
        ({"s_churn": -1.0}, "s_churn"),
    ]:
        with pytest.raises(ValueError, match=name):
            EDM(**kwargs)


class TinyDenoiser(nn.Module):
    def __init__(self, dim: int = 2, width: int = 64) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim + 16, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, dim))

    def forward(self, x_in, c_noise):
        # c_noise = ln σ / 4 lies in about [−1.6, 1.1]; scale 10 spreads it over the sinusoids.
        return self.mlp(torch.cat([x_in, timestep_embedding(c_noise, 16, scale=10.0)], dim=-1))


def test_loss_falls_when_training_a_tiny_net():
    torch.manual_seed(0)
    edm = EDM()
    net = TinyDenoiser()
    points = torch.tensor([[0.5, 0.5], [-0.5, -0.5]])
    data = points[torch.arange(512) % 2]                               # (512, 2)

    def held_out_loss():
        with torch.no_grad():
            return edm.training_loss(net, data, generator=torch.Generator().manual_seed(123)).item()

    before = held_out_loss()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(200):
        loss = edm.training_loss(net, data[torch.randperm(512)[:128]])
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss()
    # about 1.03 -> 0.35; the exact denoiser of the two points scores 0.27 (at σ ≈ σ_data the point is uncertain)
    assert after < 0.5 * before, (before, after)
