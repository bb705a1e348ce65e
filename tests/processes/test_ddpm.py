"""GaussianDiffusion checked against closed forms: the schedules, the forward process and exact ε-predictors.

Oracles (no network): for data that is a single point x*, E[ε | x_n] = (x_n − sqrt(ᾱ_n) x*) / sqrt(1 − ᾱ_n) exactly;
for data x0 ~ N(μ, s²), E[ε | x_n] = sqrt(1 − ᾱ_n) (x_n − sqrt(ᾱ_n) μ) / (ᾱ_n s² + 1 − ᾱ_n), and the probability-flow
ODE maps a start x_T to μ + s (x_T − sqrt(ᾱ_T) μ) / sqrt(ᾱ_T s² + 1 − ᾱ_T). Both read ᾱ from the live diffusion object.
"""

import math

import pytest
import torch
from torch import nn

from seriesforge.nn.embeddings import timestep_embedding
from seriesforge.processes.ddpm import DiffusionLoss, GaussianDiffusion

MU, S = 1.5, 0.3
X_STAR = torch.tensor([[0.7, -1.2, 2.0, 0.0], [3.0, -0.5, 0.25, -2.0]], dtype=torch.float64)  # (2, 4)


def _alpha_bar(diffusion, t, like):
    ab = diffusion.alphas_cumprod.to(torch.float64)[t.long()]
    return ab.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


def point_mass_eps(diffusion):
    def eps(x, t):
        ab = _alpha_bar(diffusion, t, x)
        return (x - ab.sqrt() * X_STAR) / (1 - ab).sqrt()

    return eps


def gaussian_eps(diffusion):
    def eps(x, t):
        ab = _alpha_bar(diffusion, t, x)
        return (1 - ab).sqrt() * (x - ab.sqrt() * MU) / (ab * S**2 + 1 - ab)

    return eps


def gaussian_ode_target(diffusion, noise):
    ab_T = float(diffusion.alphas_cumprod[-1])
    return MU + S * (noise - math.sqrt(ab_T) * MU) / math.sqrt(ab_T * S**2 + 1 - ab_T)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


def _noise(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ----- schedules -----------------------------------------------------------------------------------------------


def test_cosine_schedule_decreases_from_one_to_zero_and_matches_closed_form():
    d = GaussianDiffusion(num_steps=1000, schedule="cosine", cosine_s=0.008)
    acp = d.alphas_cumprod
    assert acp.dtype == torch.float32 and acp.shape == (1000,)
    assert torch.all(acp[1:] < acp[:-1])
    assert acp[0] > 0.9999 and acp[-1] < 1e-6
    f = lambda n: math.cos((n / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    closed = torch.tensor([f(n + 1) / f(0) for n in range(999)], dtype=torch.float64)  # index n carries ᾱ(n+1)
    assert torch.allclose(acp[:999].double(), closed, rtol=1e-5, atol=1e-7)
    assert d.betas.max() <= 0.999 + 1e-7 and d.betas[-1] == pytest.approx(0.999)


def test_linear_schedule_endpoints():
    d = GaussianDiffusion(num_steps=1000, schedule="linear", beta_start=1e-4, beta_end=0.02)
    assert d.betas[0].item() == pytest.approx(1e-4) and d.betas[-1].item() == pytest.approx(0.02)
    assert d.alphas_cumprod[0].item() == pytest.approx(1 - 1e-4, abs=1e-7)
    expected_last = math.exp(sum(math.log1p(-b) for b in torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)))
    assert d.alphas_cumprod[-1].item() == pytest.approx(expected_last, rel=1e-4)  # ≈ 4.0e-5
    assert torch.all(d.alphas_cumprod[1:] < d.alphas_cumprod[:-1])


# ----- forward process and loss --------------------------------------------------------------------------------


def test_q_sample_and_predict_x0_are_inverse_for_any_trailing_shape():
    d = GaussianDiffusion()
    g = torch.Generator().manual_seed(1)
    for shape in [(6, 3), (6, 2, 5), (6, 1, 4, 3)]:
        x0, eps = torch.randn(shape, generator=g), torch.randn(shape, generator=g)
        t = d.sample_timesteps(6, "cpu", generator=g)
        x_t = d.q_sample(x0, t, eps)
        assert x_t.shape == shape
        assert torch.allclose(d.predict_x0(x_t, t, eps), x0, atol=1e-4)
    t = torch.tensor([0, 999])
    x_t = d.q_sample(torch.ones(2, 3), t, torch.zeros(2, 3))
    assert x_t[0].tolist() == pytest.approx([float(d.alphas_cumprod[0]) ** 0.5] * 3)


def test_sample_timesteps_cover_the_range_and_follow_the_generator():
    d = GaussianDiffusion(num_steps=10)
    t = d.sample_timesteps(5000, "cpu", generator=torch.Generator().manual_seed(0))
    assert t.dtype == torch.long and t.min() == 0 and t.max() == 9
    assert torch.bincount(t, minlength=10).min() > 400  # about 500 each
    again = d.sample_timesteps(5000, "cpu", generator=torch.Generator().manual_seed(0))
    assert torch.equal(t, again)


def test_training_loss_fields_and_oracle_zero():
    d = GaussianDiffusion()
    x0 = X_STAR.expand(16, -1, -1).clone()
    seen = []

    def oracle(x, t):
        seen.append(t)
        return point_mass_eps(d)(x, t)

    out = d.training_loss(oracle, x0, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, DiffusionLoss)
    assert out.loss.item() < 1e-12
    assert out.t.dtype == torch.long and torch.equal(seen[0], out.t.to(seen[0].dtype))
    assert seen[0].is_floating_point()
    assert torch.allclose(out.x_t, d.q_sample(x0, out.t, out.noise))
    assert torch.allclose(d.predict_x0(out.x_t, out.t, out.eps_hat), x0, atol=1e-6)
    zero = d.training_loss(lambda x, t: torch.zeros_like(x), x0, generator=torch.Generator().manual_seed(0))
    assert zero.loss.item() == pytest.approx(out.noise.pow(2).mean().item())


# ----- samplers ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [200, 1000])
def test_ddim_with_point_mass_oracle_returns_the_point(steps):
    d = GaussianDiffusion(num_steps=1000)
    out = d.sample(point_mass_eps(d), _noise(8, 2, 4), method="ddim", steps=steps, eta=0.0)
    assert (out - X_STAR).abs().max() < 1e-4


def test_ddpm_with_point_mass_oracle_lands_on_the_point():
    d = GaussianDiffusion(num_steps=1000)
    out = d.sample(point_mass_eps(d), _noise(8, 2, 4), method="ddpm", generator=torch.Generator().manual_seed(0))
    assert (out - X_STAR).abs().max() < 1e-3


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_ddim_follows_the_probability_flow_ode_of_gaussian_data(schedule):
    d = GaussianDiffusion(schedule=schedule)
    noise = _noise(2048, 2)
    target = gaussian_ode_target(d, noise)
    err_200 = (d.sample(gaussian_eps(d), noise, steps=200) - target).abs().max()
    err_1000 = (d.sample(gaussian_eps(d), noise, steps=1000) - target).abs().max()
    assert err_200 < 5e-2 and err_1000 < 1e-2
    assert err_1000 < err_200 / 3  # first order in the step size


def test_ddpm_samples_gaussian_data_and_equals_ddim_eta_one():
    d = GaussianDiffusion()
    noise = _noise(4096, 2)
    ddpm = d.sample(gaussian_eps(d), noise, method="ddpm", generator=torch.Generator().manual_seed(1))
    assert ddpm.mean().item() == pytest.approx(MU, abs=0.02)
    assert ddpm.std().item() == pytest.approx(S, abs=0.015)
    ddim = d.sample(gaussian_eps(d), noise, method="ddim", eta=1.0, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ddpm, ddim, atol=1e-8)  # Song et al.: eta = 1 over all N steps is DDPM with β̃


def test_ddim_eta_controls_randomness():
    d = GaussianDiffusion()
    noise = _noise(64, 2)
    a = d.sample(gaussian_eps(d), noise, steps=50, generator=torch.Generator().manual_seed(0))
    b = d.sample(gaussian_eps(d), noise, steps=50, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    c = d.sample(gaussian_eps(d), noise, steps=50, eta=1.0, generator=torch.Generator().manual_seed(0))
    e = d.sample(gaussian_eps(d), noise, steps=50, eta=1.0, generator=torch.Generator().manual_seed(1))
    assert (c - e).abs().max() > 0.05


def test_both_samplers_read_the_same_alphas_cumprod():
    cosine, linear = GaussianDiffusion(schedule="cosine"), GaussianDiffusion(schedule="linear")
    noise = _noise(256, 2)

    def run(diffusion, method):
        return diffusion.sample(gaussian_eps(diffusion), noise, method=method, steps=None,
                                eta=0.0, generator=torch.Generator().manual_seed(0))

    before = {m: run(cosine, m) for m in ("ddpm", "ddim")}
    cosine.alphas_cumprod = linear.alphas_cumprod  # swap the one table; nothing else is changed
    for method in ("ddpm", "ddim"):
        after = run(cosine, method)
        assert torch.equal(after, run(linear, method))
        assert (after - before[method]).abs().max() > 1e-3


def test_sample_calls_progress_and_passes_float_timesteps():
    d = GaussianDiffusion()
    seen, times = [], []

    def eps(x, t):
        times.append(t)
        return gaussian_eps(d)(x, t)

    d.sample(eps, _noise(4, 2).float(), steps=5, progress=seen.append)
    assert seen == [0, 1, 2, 3, 4]
    assert d.ddim_timesteps(5) == [999, 749, 500, 250, 0]
    assert [float(t[0]) for t in times] == [999.0, 749.0, 500.0, 250.0, 0.0]
    assert all(t.dtype == torch.float32 and t.shape == (4,) for t in times)


def test_bad_arguments_name_the_parameter():
    d = GaussianDiffusion(num_steps=100)
    eps = gaussian_eps(d)
    x = _noise(2, 2)
    for kwargs, name in [
        ({"steps": 0}, "steps"),
        ({"steps": 101}, "steps"),
        ({"method": "euler"}, "method"),
        ({"eta": -0.5}, "eta"),
        ({"method": "ddpm", "steps": 50}, "steps"),
    ]:
        with pytest.raises(ValueError, match=name):
            d.sample(eps, x, **kwargs)
    with pytest.raises(ValueError, match="num_steps"):
        GaussianDiffusion(num_steps=0)
    with pytest.raises(ValueError, match="schedule"):
        GaussianDiffusion(schedule="quadratic")
    with pytest.raises(ValueError, match="beta_start"):
        GaussianDiffusion(schedule="linear", beta_start=0.05, beta_end=0.02)


# ----- a tiny network learns ------------------------------------------------------------------------------------


class TinyEpsNet(nn.Module):
    def __init__(self, num_steps: int, dim: int = 2, width: int = 64) -> None:
        super().__init__()
        self.num_steps = num_steps
        self.mlp = nn.Sequential(nn.Linear(dim + 16, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, dim))

    def forward(self, x, t):
        emb = timestep_embedding(t / self.num_steps, 16)  # (B, 16); the network embeds the float index
        return self.mlp(torch.cat([x, emb], dim=-1))


def test_tiny_mlp_reduces_training_loss_on_two_points():
    torch.manual_seed(0)
    d = GaussianDiffusion(num_steps=100)
    net = TinyEpsNet(100)
    points = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
    data = points[torch.arange(512) % 2]                               # (512, 2)

    def held_out_loss():
        with torch.no_grad():
            return d.training_loss(net, data, generator=torch.Generator().manual_seed(123)).loss.item()

    before = held_out_loss()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(200):
        loss = d.training_loss(net, data[torch.randperm(512)[:128]]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss()
    assert after < 0.6 * before, (before, after)


def test_x0_bound_keeps_a_wrong_network_within_the_data_range():
    """A network that is slightly wrong everywhere diverges on the cosine schedule's last steps; bounding x̂0 by
    the data's range keeps every step's prediction, and so the sample, inside it."""
    torch.manual_seed(0)
    diffusion = GaussianDiffusion(num_steps=1000, schedule="cosine")
    noise = torch.randn(64, 8)

    def wrong(x, t):  # the right ε for data at 0, plus an error that is small in distribution and grows outside
        return x / torch.sqrt(1 - diffusion.alphas_cumprod[t.long()])[:, None] + 0.02 * (1 + x**2)

    free = diffusion.sample(wrong, noise, method="ddim", steps=50)
    bounded = diffusion.sample(wrong, noise, method="ddim", steps=50, x0_bound=torch.full((8,), 2.0))
    assert not (free.abs().max() < 10)  # the unbounded sampler leaves the data range by far (or overflows)
    assert bounded.abs().max() <= 2.0 + 1e-5
