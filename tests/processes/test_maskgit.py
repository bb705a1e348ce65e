"""MaskGIT masking, loss and iterative decoding checked against the formulas of models.md §5 (no network).

Oracles: kept counts by hand from cos(πr/2)·N; the decoder's per-step unknown counts from the schedule
u₀ = N, u_{t+1} = clamp(min(⌊N cos(π/2 (t+1)/T)⌋, u_t − 1), 0); logits functions with known distributions.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from seriesforge.processes.maskgit import (guided_logits, iterative_decode, kept_count, masked_cross_entropy,
                                           random_mask)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------------
# kept_count
# ---------------------------------------------------------------------------------------------------------------


def test_kept_count_code_semantics_hand_values():
    r = torch.tensor([0.0, 0.5, 0.9, 0.999])
    # floor(10·cos(πr/2)): 10 → clipped to 9, 7.07 → 7, 1.56 → 1, 0.016 → 0
    assert kept_count(r, 10).tolist() == [9, 7, 1, 0]
    assert kept_count(r, 10).dtype == torch.int64


def test_kept_count_maskgit_semantics_hand_values():
    r = torch.tensor([0.0, 0.5, 0.9, 0.999])
    # masked = ceil(10·cos(πr/2)) clipped to [1, 10]: 10, 8, 2, 1 → kept 0, 2, 8, 9
    assert kept_count(r, 10, "maskgit").tolist() == [0, 2, 8, 9]


def test_kept_count_monotone_and_always_masks_one():
    r = torch.linspace(0, 0.9999, 2001)
    for n in (1, 5, 64):
        code = kept_count(r, n, "code")
        assert (code[1:] <= code[:-1]).all(), "code: kept must not increase with r"
        assert code[0] == n - 1 and code[-1] == 0
        paper = kept_count(r, n, "maskgit")
        assert (paper[1:] >= paper[:-1]).all(), "maskgit: masked = ceil(cos·N) falls with r, so kept rises"
        for kept in (code, paper):
            assert ((kept >= 0) & (kept <= n - 1)).all(), "at least one token is always masked"


def test_kept_count_rejects_unknown_semantics():
    with pytest.raises(ValueError):
        kept_count(torch.tensor([0.3]), 8, "paper")


# ---------------------------------------------------------------------------------------------------------------
# random_mask
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("semantics", ["code", "maskgit"])
def test_random_mask_counts_follow_kept_count(semantics):
    b, n, mask_id = 256, 12, 99
    tokens = torch.randint(0, 20, (b, n), generator=_gen(1))
    inputs, masked = random_mask(tokens, mask_id, semantics=semantics, generator=_gen(7))
    # r is the generator's first draw (B float64 uniforms): replay it to get each row's expected kept count.
    r = torch.rand(b, generator=_gen(7), dtype=torch.float64)
    assert torch.equal((~masked).sum(1), kept_count(r, n, semantics))
    assert masked.any(1).all()
    assert torch.equal(inputs[~masked], tokens[~masked])
    assert (inputs[masked] == mask_id).all()
    assert inputs.dtype == torch.int64 and masked.dtype == torch.bool


def test_random_mask_positions_are_uniform_and_deterministic():
    b, n = 4000, 8
    tokens = torch.zeros(b, n, dtype=torch.int64)
    inputs, masked = random_mask(tokens, 5, generator=_gen(3))
    again, masked_again = random_mask(tokens, 5, generator=_gen(3))
    assert torch.equal(inputs, again) and torch.equal(masked, masked_again)
    _, other = random_mask(tokens, 5, generator=_gen(4))
    assert not torch.equal(masked, other)
    # top-k of i.i.d. noise: every position is equally likely to be hidden.
    rate = masked.double().mean(0)                                     # (N,)
    assert (rate - rate.mean()).abs().max() < 0.04, rate
    # E[masked fraction] under code semantics: 1 − E[clip(⌊cos(πr/2)·8⌋, 0, 7)]/8, by quadrature over r.
    grid = (torch.arange(100000, dtype=torch.float64) + 0.5) / 100000
    expected = 1 - kept_count(grid, n).double().mean() / n
    assert abs(masked.double().mean() - expected) < 0.02


# ---------------------------------------------------------------------------------------------------------------
# masked_cross_entropy, guided_logits
# ---------------------------------------------------------------------------------------------------------------


def test_masked_cross_entropy_uses_masked_positions_only():
    g = _gen(0)
    logits = torch.randn(4, 6, 10, generator=g)
    targets = torch.randint(0, 10, (4, 6), generator=g)
    masked = torch.rand(4, 6, generator=g) < 0.5
    masked[0, 0] = True
    loss = masked_cross_entropy(logits, targets, masked)
    assert torch.allclose(loss, F.cross_entropy(logits[masked], targets[masked]))
    changed = logits.clone()
    changed[~masked] = torch.randn(int((~masked).sum()), 10, generator=g) * 50
    assert torch.allclose(masked_cross_entropy(changed, targets, masked), loss)
    changed[masked] += torch.randn(int(masked.sum()), 10, generator=g)
    assert not torch.allclose(masked_cross_entropy(changed, targets, masked), loss)


def test_masked_cross_entropy_without_masked_positions_is_zero_with_graph():
    logits = torch.randn(2, 3, 4, requires_grad=True)
    loss = masked_cross_entropy(logits, torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and logits.grad is not None


def test_guided_logits_endpoints_and_extrapolation():
    cond, null = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    assert torch.equal(guided_logits(cond, null, 1.0), cond)
    assert torch.equal(guided_logits(cond, null, 0.0), null)
    assert torch.allclose(guided_logits(cond, null, 3.0), null + 3 * (cond - null))


# ---------------------------------------------------------------------------------------------------------------
# iterative_decode
# ---------------------------------------------------------------------------------------------------------------


def expected_unknown_counts(n: int, steps: int) -> list[int]:
    """Mask ids the network sees at each call, from the schedule written out independently of the module."""
    unknown, seen = n, []
    for t in range(steps):
        seen.append(unknown)
        unknown = max(0, min(math.floor(n * math.cos(math.pi / 2 * (t + 1) / steps)), unknown - 1))
    return seen


class Recorder:
    """A logits_fn with fixed logits (N, V) that records the mask-id count of every row at every call."""

    def __init__(self, logits, mask_id):
        self.logits, self.mask_id, self.counts, self.inputs = logits, mask_id, [], []

    def __call__(self, tokens):
        self.counts.append((tokens == self.mask_id).sum(1).tolist())
        self.inputs.append(tokens.clone())
        return self.logits.expand(tokens.shape[0], -1, -1)


@pytest.mark.parametrize("n, steps, temperature", [(16, 10, 0.0), (16, 10, 10.0), (5, 10, 4.0), (3, 10, 0.0),
                                                   (64, 4, 10.0), (7, 1, 0.0)])
def test_decode_follows_cosine_schedule_and_unmasks_all(n, steps, temperature):
    mask_id = 11
    fn = Recorder(torch.zeros(1, n, mask_id), mask_id)
    out = iterative_decode(fn, batch=3, num_tokens=n, mask_id=mask_id, steps=steps,
                           choice_temperature=temperature, generator=_gen(0))
    assert fn.counts == [[c] * 3 for c in expected_unknown_counts(n, steps)]
    assert out.shape == (3, n) and out.dtype == torch.int64
    assert ((out >= 0) & (out < mask_id)).all()
    # decoded tokens are never changed later: every visible token of a call survives to the output
    for seen in fn.inputs:
        visible = seen != mask_id
        assert torch.equal(seen[visible], out[visible])


def test_decode_reproduces_a_peaked_target():
    target = torch.tensor([3, 0, 9, 9, 4, 1, 7, 2, 8, 5])
    logits = torch.where(F.one_hot(target, 10).bool(), 0.0, -1e4)[None]   # (1, N, V) near one-hot
    for temperature in (0.0, 10.0):
        out = iterative_decode(lambda s: logits.expand(s.shape[0], -1, -1), batch=5, num_tokens=10, mask_id=10,
                               choice_temperature=temperature, generator=_gen(1))
        assert torch.equal(out, target.expand(5, -1))


def test_decode_keeps_most_confident_first():
    # Position i is uniform over i + 1 tokens, so its sampled token has probability 1/(i+1) whatever is drawn:
    # with no Gumbel noise the decoded set must grow as a prefix 0, 1, 2, ...
    n = 8
    allowed = torch.arange(n)[None, :] <= torch.arange(n)[:, None]         # (N, V=N): row i allows 0..i
    fn = Recorder(torch.where(allowed, 0.0, -math.inf)[None], n)
    iterative_decode(fn, batch=4, num_tokens=n, mask_id=n, steps=n, generator=_gen(2))
    for seen in fn.inputs[1:]:
        decoded = (seen != n).sum(1)                                        # (B,)
        prefix = torch.arange(n)[None, :] < decoded[:, None]
        assert torch.equal(seen != n, prefix)


def test_decode_samples_from_softmax_and_never_zero_probability_ids():
    logits = torch.log(torch.tensor([[[0.5, 0.3, 0.0, 0.2]]]))             # (1, 1, 4)
    out = iterative_decode(lambda s: logits.expand(s.shape[0], -1, -1), batch=8000, num_tokens=1, mask_id=4,
                           steps=1, generator=_gen(5))
    freq = torch.bincount(out[:, 0], minlength=4).double() / 8000
    assert freq[2] == 0
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.0, 0.2], dtype=torch.float64), atol=0.02)


def test_decode_is_deterministic_for_a_seed():
    logits = torch.randn(1, 12, 30, generator=_gen(0))

    def run(seed):
        return iterative_decode(lambda s: logits.expand(s.shape[0], -1, -1), batch=6, num_tokens=12, mask_id=30,
                                choice_temperature=4.0, generator=_gen(seed))

    assert torch.equal(run(3), run(3))
    assert not torch.equal(run(3), run(4))
