"""Rectified flow on targets whose velocity field is known in closed form (no network involved).

For data x1 ~ N(μ, σ²) and ε ~ N(0, 1), x_t = t·x1 + (1−t)·ε is Gaussian with mean tμ and variance
s²(t) = t²σ² + (1−t)², and the exact velocity E[x1 − ε | x_t = x] is μ + (tσ² − (1−t)) / s² · (x − tμ).
Its ODE maps each noise value ε0 to exactly μ + σ·ε0, so samplers can be checked point by point.
"""

import pytest
import torch

from seriesforge.processes.flow_matching import RectifiedFlow, classifier_free_guidance

MU, SIGMA = 2.0, 0.5


def gaussian_velocity(x, t):
    t = t.reshape(-1, *([1] * (x.dim() - 1)))
    s2 = t**2 * SIGMA**2 + (1 - t) ** 2
    return MU + (t * SIGMA**2 - (1 - t)) / s2 * (x - t * MU)


@pytest.fixture
def noise():
    return torch.randn(512, 3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _max_error(flow, noise, steps, method):
    return (flow.sample(gaussian_velocity, noise, steps=steps, method=method) - (MU + SIGMA * noise)).abs().max()


def test_euler_with_many_steps_lands_on_target(noise):
    assert _max_error(RectifiedFlow(), noise, steps=400, method="euler") < 1e-2


@pytest.mark.parametrize("method", ["heun", "midpoint"])
def test_second_order_samplers_land_on_target_with_few_steps(noise, method):
    assert _max_error(RectifiedFlow(), noise, steps=40, method=method) < 1e-3


def test_heun_beats_euler_at_equal_function_evaluations(noise):
    flow = RectifiedFlow()
    assert flow.evaluations(10, "heun") == flow.evaluations(20, "euler") == 20
    heun, euler = _max_error(flow, noise, 10, "heun"), _max_error(flow, noise, 20, "euler")
    assert heun < euler / 10
    # second order: halving the step cuts the error about four-fold
    assert _max_error(flow, noise, 20, "heun") < heun / 3


def test_sample_calls_progress_and_counts_evaluations(noise):
    calls, seen = [], []

    def counting(x, t):
        calls.append(float(t[0]))
        return gaussian_velocity(x, t)

    RectifiedFlow().sample(counting, noise, steps=4, method="heun", progress=seen.append)
    assert seen == [0, 1, 2, 3]
    assert len(calls) == 8 and calls[0] == 0.0 and calls[-1] == 1.0


def test_sample_rejects_bad_arguments(noise):
    with pytest.raises(ValueError, match="steps"):
        RectifiedFlow().sample(gaussian_velocity, noise, steps=0)
    with pytest.raises(ValueError, match="method"):
        RectifiedFlow().sample(gaussian_velocity, noise, steps=2, method="rk4")


def test_add_noise_endpoints():
    x1, eps = torch.randn(5, 2, 7), torch.randn(5, 2, 7)
    assert torch.equal(RectifiedFlow.add_noise(x1, eps, torch.ones(5)), x1)
    assert torch.equal(RectifiedFlow.add_noise(x1, eps, torch.zeros(5)), eps)
    half = RectifiedFlow.add_noise(x1, eps, torch.full((5,), 0.5))
    assert torch.allclose(half, 0.5 * (x1 + eps))


def test_training_loss_of_exact_field_for_point_mass_is_zero():
    # Every path to x1 = c is straight, so v(x, t) = (c − x) / (1 − t) equals x1 − ε exactly for t < 1;
    # continuous t (t_grid=0) never draws t = 1, where the field is undefined.
    c = torch.full((64, 3, 5), 1.5, dtype=torch.float64)

    def point_mass_velocity(x, t):
        return (c - x) / (1 - t.reshape(-1, 1, 1))

    gen = torch.Generator().manual_seed(0)
    loss = RectifiedFlow(t_grid=0).training_loss(point_mass_velocity, c, generator=gen)
    assert loss.item() < 1e-12
    assert RectifiedFlow().training_loss(lambda x, t: torch.zeros_like(x), c, generator=gen).item() > 1.0


def test_training_times_lie_on_the_grid():
    flow = RectifiedFlow(t_grid=10)
    t = flow.sample_time(5000, generator=torch.Generator().manual_seed(0))
    k = t * 10
    assert torch.allclose(k, k.round(), atol=1e-5)
    assert set(k.round().int().tolist()) == set(range(11))

    seen = []
    flow.training_loss(lambda x, t: seen.append(t) or torch.zeros_like(x), torch.randn(256, 4))
    assert torch.allclose(seen[0] * 10, (seen[0] * 10).round(), atol=1e-5)

    continuous = RectifiedFlow(t_grid=0).sample_time(1000, generator=torch.Generator().manual_seed(0))
    assert len(set(continuous.tolist())) == 1000 and 0 < continuous.min() and continuous.max() < 1


def test_training_loss_is_reproducible_with_a_generator():
    x1 = torch.randn(32, 4, 6)
    losses = [RectifiedFlow().training_loss(lambda x, t: x * 0.3, x1, generator=torch.Generator().manual_seed(7))
              for _ in range(2)]
    assert torch.equal(losses[0], losses[1])
    with pytest.raises(ValueError, match="t_grid"):
        RectifiedFlow(t_grid=-1)


def test_classifier_free_guidance():
    v_c, v_u = torch.randn(2, 3), torch.randn(2, 3)
    assert torch.allclose(classifier_free_guidance(v_c, v_u, 1.0), v_c)
    assert torch.equal(classifier_free_guidance(v_c, v_u, 0.0), v_u)
    assert torch.allclose(classifier_free_guidance(v_c, v_u, 3.0), v_u + 3 * (v_c - v_u))
