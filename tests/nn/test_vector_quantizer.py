"""VectorQuantizer (models.md §5 quantiser, §6 stochastic VQ): exact codes, straight-through, EMA, k-means, DDP sync.

Why: a quantiser bug does not crash, it just produces a worse tokeniser — wrong gradients, a codebook that drifts
apart across ranks, or a τ-sampler on the wrong distance (the NM-VQTSG τ grid was tuned on the squared distance).
"""

from __future__ import annotations

import math
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import seriesforge.nn.vector_quantizer as vq_module
from seriesforge.nn.vector_quantizer import VectorQuantizer, kmeans, squared_distances


# Exact comparisons of argmin assignments: one thread, so the test and the module compute distances with the same
# reduction order (a 2-thread matmul can flip a near tie; a likely cause of one failure in a combined run).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

C, D = 16, 4  # codebook size, code dimension


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _laplace_codebook(ema_count: torch.Tensor, ema_sum: torch.Tensor, eps: float) -> torch.Tensor:
    """The reference EMA → codebook step, written independently of the module."""
    total = ema_count.sum()
    smoothed = (ema_count + eps) / (total + ema_count.numel() * eps) * total
    return ema_sum / smoothed[:, None]


# ------------------------------------------------------------------------------------------- deterministic VQ
def test_rows_equal_to_codes_quantise_to_themselves():
    vq = VectorQuantizer(C, D).eval()
    with torch.no_grad():
        vq.codebook.copy_(_randn(C, D))
    chosen = torch.randint(C, (3, 7), generator=torch.Generator().manual_seed(1))  # (B, N)
    z = vq.codebook[chosen].clone()  # (B, N, d)
    out = vq(z)
    assert torch.equal(out.indices, chosen) and out.indices.dtype == torch.int64
    assert torch.equal(out.quantized, z)
    assert torch.equal(vq.nearest(z), chosen)
    assert torch.equal(vq.lookup(chosen), z)
    assert out.commit_loss.item() == 0.0
    # perplexity = exp(entropy) of the empirical usage
    probs = torch.bincount(chosen.flatten(), minlength=C).float() / chosen.numel()
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
    assert out.perplexity.item() == pytest.approx(math.exp(entropy.item()), rel=1e-5)


@pytest.mark.parametrize("commitment", [1.0, 0.25])
def test_straight_through_gradient_is_identity_plus_commitment(commitment):
    vq = VectorQuantizer(C, D, commitment=commitment).eval()
    z = _randn(2, 5, D, seed=2).requires_grad_(True)
    out = vq(z)
    upstream = _randn(2, 5, D, seed=3)
    ((out.quantized * upstream).sum() + out.commit_loss).backward()
    q = vq.lookup(out.indices)
    torch.testing.assert_close(out.quantized, q)  # forward value is the code
    expected = upstream + commitment * 2 * (z.detach() - q) / z.numel()
    torch.testing.assert_close(z.grad, expected)
    assert out.commit_loss.item() == pytest.approx(commitment * (q - z.detach()).pow(2).mean().item(), rel=1e-5)
    assert not vq.codebook.requires_grad and vq.codebook.grad is None
    assert out.perplexity.grad_fn is None


def test_low_precision_latents_keep_their_dtype():
    vq = VectorQuantizer(C, D).eval()
    z = _randn(2, 6, D, seed=4)
    out = vq(z.bfloat16())
    assert out.quantized.dtype == torch.bfloat16 and out.indices.dtype == torch.int64
    assert out.commit_loss.dtype == torch.float32
    assert torch.equal(out.indices, vq.nearest(z.bfloat16()))


def test_eval_forward_and_sampling_do_not_touch_the_codebook():
    vq = VectorQuantizer(C, D).eval()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    z = _randn(4, 8, D, seed=5)
    vq(z), vq.nearest(z), vq.sample_codes(z, tau=1.0)
    for key, value in vq.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert vq.initialised.item() == 0


# ---------------------------------------------------------------------------------------------- stochastic VQ
def test_sample_codes_at_tiny_tau_is_argmin():
    vq = VectorQuantizer(C, D).eval()
    z = _randn(8, 32, D, seed=6)
    drawn = vq.sample_codes(z, tau=1e-4, generator=torch.Generator().manual_seed(0))
    assert drawn.shape == (8, 32) and drawn.dtype == torch.int64
    assert torch.equal(drawn, vq.nearest(z))


def test_sample_codes_at_large_tau_spreads_and_is_seeded():
    vq = VectorQuantizer(C, D).eval()
    z = _randn(4, 128, D, seed=7)
    drawn = vq.sample_codes(z, tau=1e4, generator=torch.Generator().manual_seed(0))
    assert torch.unique(drawn).numel() == C
    assert (drawn != vq.nearest(z)).float().mean() > 0.8
    again = vq.sample_codes(z, tau=1e4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again)


def test_sample_codes_uses_the_squared_distance():
    # z = 0, codes at distance 1 and 2: squared logits (-1, -4) give p0 = 0.9526; plain distances (-1, -2) 0.7311.
    vq = VectorQuantizer(2, D).eval()
    with torch.no_grad():
        vq.codebook.zero_()
        vq.codebook[0, 0], vq.codebook[1, 0] = 1.0, 2.0
    z = torch.zeros(1, 8000, D)
    drawn = vq.sample_codes(z, tau=1.0, generator=torch.Generator().manual_seed(0))
    p0 = (drawn == 0).float().mean().item()
    assert p0 == pytest.approx(1 / (1 + math.exp(-3)), abs=0.012)


# ------------------------------------------------------------------------------------------- k-means and EMA
def test_kmeans_init_is_deterministic_and_seeded_from_the_batch():
    z = _randn(4, 32, D, seed=8)
    books = []
    for module_seed in (0, 1):  # different random initial codebooks must not matter
        torch.manual_seed(module_seed)
        vq = VectorQuantizer(C, D, decay=0.99).train()
        vq._init_codebook(z.reshape(-1, D))
        assert vq.initialised.item() == 1
        books.append(vq.codebook.clone())
    assert torch.equal(books[0], books[1])
    torch.testing.assert_close(books[0], kmeans(z.reshape(-1, D), C, 10))
    # Lloyd iterations lower the quantisation error of the raw random-row draw.
    flat = z.reshape(-1, D)
    error = squared_distances(flat, books[0]).min(1).values.mean()
    raw = kmeans(flat, C, 0)
    assert error < 0.9 * squared_distances(flat, raw).min(1).values.mean()


def test_decay_zero_makes_each_used_code_the_mean_of_its_vectors():
    vq = VectorQuantizer(C, D, decay=0.0).train()
    vq(_randn(4, 32, D, seed=9))  # first batch: k-means init (+ one update)
    z = 0.3 * _randn(2, 32, D, seed=13) + 0.5  # a narrower batch reaches only some of the codes
    out = vq(z)
    flat, idx = z.reshape(-1, D), out.indices.flatten()
    used = torch.unique(idx)
    assert 2 <= used.numel() < C
    for code in used.tolist():
        torch.testing.assert_close(vq.codebook[code], flat[idx == code].mean(0), rtol=1e-3, atol=1e-4)
    unused = torch.ones(C, dtype=torch.bool)
    unused[used] = False
    # With decay 0 an unused code's EMA sum is 0, and no dead-code restart revives it.
    assert vq.codebook[unused].abs().max().item() == 0.0


def test_ema_step_matches_reference_formula():
    decay, eps = 0.8, 1e-5
    vq = VectorQuantizer(C, D, decay=decay, eps=eps).train()
    z = _randn(2, 40, D, seed=10)
    flat = z.reshape(-1, D)
    init = kmeans(flat, C, 10)
    out = vq(z)
    idx = squared_distances(flat, init).argmin(1)
    assert torch.equal(out.indices.flatten(), idx)  # assignment uses the pre-update codebook
    torch.testing.assert_close(out.quantized.reshape(-1, D), init[idx])
    counts = torch.bincount(idx, minlength=C).float()
    sums = torch.zeros(C, D).index_add_(0, idx, flat)
    ema_count = decay * 1.0 + (1 - decay) * counts
    ema_sum = decay * init + (1 - decay) * sums
    torch.testing.assert_close(vq.ema_count, ema_count)
    torch.testing.assert_close(vq.codebook, _laplace_codebook(ema_count, ema_sum, eps))


def test_state_dict_round_trip_restores_codebook_and_skips_kmeans(monkeypatch):
    vq = VectorQuantizer(C, D).train()
    vq(_randn(2, 40, D, seed=11))
    state = vq.state_dict()
    assert {"codebook", "ema_count", "ema_sum", "initialised"} <= set(state)

    torch.manual_seed(123)
    restored = VectorQuantizer(C, D)
    restored.load_state_dict(state)
    for key in ("codebook", "ema_count", "ema_sum", "initialised"):
        assert torch.equal(getattr(restored, key), getattr(vq, key)), key
    assert restored.initialised.item() == 1

    def no_kmeans(*args, **kwargs):
        raise AssertionError("k-means must not run again after a restore")

    monkeypatch.setattr(vq_module, "kmeans", no_kmeans)
    restored.train()(_randn(2, 40, D, seed=12))  # a training step continues the EMA instead


# -------------------------------------------------------------------------------------------------- DDP (gloo)
DDP_CODES, DDP_DIM, DDP_DECAY = 8, 3, 0.5


def _rank_batch(rank: int) -> torch.Tensor:
    # Different data per rank (shifted means), so pooled and per-rank statistics differ.
    return _randn(2, 24, DDP_DIM, seed=100 + rank) + 1.5 * rank


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(rank)  # different initial codebooks: only the broadcast may make them agree
        vq = VectorQuantizer(DDP_CODES, DDP_DIM, decay=DDP_DECAY).train()
        out = vq(_rank_batch(rank))
        torch.save({"codebook": vq.codebook.clone(), "indices": out.indices.clone()},
                   Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_gloo_ranks_end_with_the_pooled_ema_codebook(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert torch.equal(results[0]["codebook"], results[1]["codebook"])

    # Reference: k-means on rank 0's batch, both ranks assign against it, statistics pooled, one EMA step.
    batches = [_rank_batch(r).reshape(-1, DDP_DIM) for r in range(2)]
    init = kmeans(batches[0], DDP_CODES, 10)
    counts, sums = torch.zeros(DDP_CODES), torch.zeros(DDP_CODES, DDP_DIM)
    for rank, flat in enumerate(batches):
        idx = squared_distances(flat, init).argmin(1)
        assert torch.equal(results[rank]["indices"].flatten(), idx)
        counts += torch.bincount(idx, minlength=DDP_CODES).float()
        sums.index_add_(0, idx, flat)
    expected = _laplace_codebook(DDP_DECAY + (1 - DDP_DECAY) * counts, DDP_DECAY * init + (1 - DDP_DECAY) * sums,
                                 1e-5)
    torch.testing.assert_close(results[0]["codebook"], expected)

    # Rank 0's statistics alone give a clearly different codebook, so the pooling is what the test sees.
    solo = VectorQuantizer(DDP_CODES, DDP_DIM, decay=DDP_DECAY).train()
    solo(_rank_batch(0))
    assert (solo.codebook - expected).abs().max().item() > 1e-2
