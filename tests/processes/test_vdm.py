"""CosineVDM checked against closed forms and exact ε oracles (no network), plus one small training run.

Oracles: for data z_0 ~ N(0, s² I), E[ε | z_t] = σ_t z_t / (α_t² s² + σ_t²); for a point mass z_0 = x*,
ε = (z_t − α_t x*) / σ_t exactly, so the sampler's last step (the x̂_0 prediction) must return x* for any start.
"""

import math
import time

import pytest
import torch

from seriesforge.nn.unet1d import TimeClassEmbedding, UNet1D
from seriesforge.processes.vdm import CosineVDM

VDM = CosineVDM()
S = 0.5
X_STAR = torch.tensor([[0.7, -1.2, 2.0], [3.0, -0.5, 0.25]])  # (C=2, W=3)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py: small ops, shared CPU


def _coef(fn, t, like):
    return fn(t).reshape(-1, *([1] * (like.dim() - 1)))


def gaussian_eps(z, t, labels):
    alpha, sigma = _coef(VDM.alpha, t, z), _coef(VDM.sigma, t, z)
    return sigma * z / (alpha**2 * S**2 + sigma**2)


def point_mass_eps(z, t, labels):
    return (z - _coef(VDM.alpha, t, z) * X_STAR) / _coef(VDM.sigma, t, z)


def test_schedule_is_variance_preserving_and_log_snr_consistent():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    alpha, sigma = VDM.alpha(t), VDM.sigma(t)
    torch.testing.assert_close(alpha**2 + sigma**2, torch.ones_like(t))
    inner = t[1:-1]
    torch.testing.assert_close(VDM.log_snr(inner), torch.log(VDM.alpha(inner) ** 2 / VDM.sigma(inner) ** 2))
    assert VDM.log_snr(torch.tensor([0.0])).item() == math.inf
    assert (VDM.log_snr(inner).diff() < 0).all()
    assert VDM.log_snr(torch.tensor([0.5])).abs().item() < 1e-6


def test_low_discrepancy_times_fill_one_point_per_slot():
    for n in (1, 7, 128):
        t = VDM.low_discrepancy_times(n, generator=torch.Generator().manual_seed(n))
        assert t.shape == (n,) and (t >= 0).all() and (t < 1).all()
        assert sorted((t * n).floor().long().tolist()) == list(range(n))
        gaps = torch.sort(t).values.diff()
        torch.testing.assert_close(gaps, torch.full_like(gaps, 1.0 / n), atol=1e-5, rtol=0)
    a = VDM.low_discrepancy_times(8, generator=torch.Generator().manual_seed(1))
    b = VDM.low_discrepancy_times(8, generator=torch.Generator().manual_seed(1))
    c = VDM.low_discrepancy_times(8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_training_loss_forward_process_and_class_dropout():
    seen = {}

    def recover_noise(z, t, labels):
        seen["labels"], seen["t"] = labels, t
        return z / _coef(VDM.sigma, t, z)  # exact ε when z_0 = 0, since then z_t = σ_t ε

    labels = torch.randint(0, 3, (4000,), generator=torch.Generator().manual_seed(0))
    z0 = torch.zeros(4000, 2, 5)
    loss = VDM.training_loss(recover_noise, z0, labels, null_label=3, generator=torch.Generator().manual_seed(0))
    assert loss.dim() == 0 and loss.item() < 1e-8
    assert seen["labels"].dtype == torch.int64
    dropped = (seen["labels"] == 3).float().mean().item()
    assert 0.08 < dropped < 0.12                                         # p_uncond = 0.1
    kept = seen["labels"] != 3
    assert torch.equal(seen["labels"][kept], labels[kept])
    for p_uncond, expected in ((0.0, 0.0), (1.0, 1.0)):
        VDM.training_loss(recover_noise, z0, labels, null_label=3, p_uncond=p_uncond)
        assert (seen["labels"] == 3).float().mean().item() == expected
    # With the zero predictor the loss is E[ε²] = 1.
    zero = VDM.training_loss(lambda z, t, y: torch.zeros_like(z), torch.randn(4000, 2, 5), labels, null_label=3)
    assert abs(zero.item() - 1.0) < 0.05


def test_training_loss_falls_on_a_tiny_set():
    torch.manual_seed(0)
    grid = torch.linspace(0, 1, 16)
    labels = torch.arange(16) % 2
    freq = torch.where(labels == 0, 1.0, 3.0)[:, None, None]               # class sets the frequency
    phase = torch.rand(16, 1, 1) * 0.5
    z0 = torch.cat([torch.sin(2 * math.pi * freq * grid + phase), torch.cos(2 * math.pi * freq * grid)], dim=1)
    embed = TimeClassEmbedding(num_classes=2, dim=16)
    net = UNet1D(in_channels=2, out_channels=2, dim=8, dim_mults=(1, 2), cond_dim=embed.out_dim, attention=False)
    eps_fn = lambda z, t, y: net(z, embed(t, y))  # noqa: E731
    params = list(net.parameters()) + list(embed.parameters())
    opt = torch.optim.Adam(params, lr=3e-3)

    def held_out_loss() -> float:
        # Same (t, ε, dropout) draws before and after training, averaged over 8 batches.
        with torch.no_grad():
            return sum(VDM.training_loss(eps_fn, z0, labels, null_label=2,
                                         generator=torch.Generator().manual_seed(100 + k)).item()
                       for k in range(8)) / 8

    start, before = time.time(), held_out_loss()
    for step in range(150):
        loss = VDM.training_loss(eps_fn, z0, labels, null_label=2, generator=torch.Generator().manual_seed(step))
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = held_out_loss()
    print(f"VDM eps-loss {before:.3f} -> {after:.3f} in {time.time() - start:.1f} s")
    assert after < 0.7 * before


@pytest.mark.parametrize("steps", [1, 5])
def test_last_step_returns_the_x0_prediction_exactly(steps):
    labels = torch.zeros(4, dtype=torch.long)
    out = VDM.sample(point_mass_eps, (4, 2, 3), labels, null_label=0, steps=steps, gamma=0.0,
                     generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, X_STAR.expand(4, 2, 3), atol=1e-4, rtol=1e-4)


def test_sampler_matches_gaussian_oracle_std():
    labels = torch.zeros(4000, dtype=torch.long)
    out = VDM.sample(gaussian_eps, (4000, 2, 4), labels, null_label=0, steps=200, t_max=0.999, gamma=0.0,
                     generator=torch.Generator().manual_seed(0))
    assert abs(out.std().item() - S) < 0.05 * S
    assert abs(out.mean().item()) < 0.02
    renormed = VDM.sample(gaussian_eps, (4000, 2, 4), labels, null_label=0, steps=200, t_max=0.999, gamma=0.1,
                          generator=torch.Generator().manual_seed(0))
    # γ pulls each sample's std towards 1 at every step, so data with std 0.5 come out near std 1.
    print(f"oracle std (s = {S}): gamma 0 -> {out.std().item():.3f}, gamma 0.1 -> {renormed.std().item():.3f}")
    assert torch.isfinite(renormed).all()


def _constant_eps(calls):
    def eps_fn(z, t, labels):
        calls.append(labels.clone())
        value = torch.where(labels == 3, 0.3, 1.7 + labels.float())            # null → 0.3, class y → 1.7 + y
        return value.reshape(-1, 1, 1).expand_as(z)

    return eps_fn


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guidance_combines_null_and_conditional_predictions(w):
    calls = []
    labels = torch.tensor([0, 1, 2, 3])                                      # the last sample is unconditional
    t_max, gen_seed = 0.99, 7
    out = VDM.sample(_constant_eps(calls), (4, 2, 3), labels, null_label=3, steps=1, t_max=t_max, guidance=w,
                     gamma=0.0, generator=torch.Generator().manual_seed(gen_seed))
    z_start = torch.randn((4, 2, 3), generator=torch.Generator().manual_seed(gen_seed))
    alpha, sigma = math.cos(math.pi * t_max / 2), math.sin(math.pi * t_max / 2)
    eps_used = (z_start - alpha * out) / sigma                                # invert out = (z − σ ε̂)/α
    cond = 1.7 + labels.float()
    expected = torch.where(labels == 3, 0.3, (1 - w) * 0.3 + w * cond)
    torch.testing.assert_close(eps_used, expected.reshape(-1, 1, 1).expand(4, 2, 3), atol=1e-4, rtol=1e-4)
    seen = torch.cat(calls)
    if w == 1.0:
        assert len(calls) == 1 and torch.equal(seen, labels)                 # null branch never called
    if w == 0.0:
        assert (seen == 3).all()


def test_all_null_labels_use_one_call_per_step():
    calls = []
    labels = torch.full((5,), 3)
    VDM.sample(_constant_eps(calls), (5, 1, 4), labels, null_label=3, steps=6, guidance=3.0,
               generator=torch.Generator().manual_seed(0))
    assert len(calls) == 6 and all(c.shape == (5,) and (c == 3).all() for c in calls)


def test_same_seed_gives_identical_samples_and_progress_is_reported():
    labels = torch.tensor([0, 1, 0, 1])
    ticks = []
    run = lambda seed, **kw: VDM.sample(gaussian_eps, (4, 3, 6), labels, null_label=2, steps=10, guidance=2.0,  # noqa: E731
                                        generator=torch.Generator().manual_seed(seed), **kw)
    a = run(0, progress=lambda done, total: ticks.append((done, total)))
    assert torch.equal(a, run(0)) and not torch.equal(a, run(1))
    assert ticks == [(k, 10) for k in range(1, 11)]


def test_invalid_arguments_raise():
    labels = torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="steps"):
        VDM.sample(gaussian_eps, (2, 1, 3), labels, null_label=1, steps=0)
    with pytest.raises(ValueError, match="t_max"):
        VDM.sample(gaussian_eps, (2, 1, 3), labels, null_label=1, steps=4, t_max=1.5)
    with pytest.raises(ValueError, match="labels"):
        VDM.sample(gaussian_eps, (3, 1, 3), labels, null_label=1, steps=4)
    with pytest.raises(ValueError, match="p_uncond"):
        VDM.training_loss(gaussian_eps, torch.zeros(2, 1, 3), labels, null_label=1, p_uncond=2.0)
