"""MaskGIT masked-token modelling (Chang et al. 2022) as TimeVQVAE's stage-2 priors train and sample it.

Shape legend: B batch · N tokens per sequence · V codebook size (logit width; the mask id is V, outside it).

Training hides a random subset of a token sequence behind a ``mask_id`` and asks a bidirectional network to
predict the hidden tokens (cross-entropy on masked positions only). How many stay visible follows the cosine
schedule γ(r) = cos(πr/2) with r ~ U(0, 1) per sample; two conventions exist (models.md §5):

* ``"code"`` (default, TimeVQVAE / dome272 MaskGIT-pytorch): **kept** = clip(⌊γ(r)·N⌋, 0, N−1);
* ``"maskgit"`` (the paper): **masked** = clip(⌈γ(r)·N⌉, 1, N), kept = N − masked.

Both keep at least one position masked, so the loss is never empty.

Sampling (``iterative_decode``) starts from an all-masked sequence and, in T steps, samples every unknown
position, keeps the most confident and re-masks the ⌊N₀·cos(π/2·(t+1)/T)⌋ least confident, so the last step
unmasks everything. The network is passed in as ``logits_fn(tokens (B, N)) -> logits (B, N, V)`` and never
stored: class labels, the LF condition of the HF prior and classifier-free guidance (``guided_logits``) are
closed over by the caller.

Example:
    >>> inputs, masked = random_mask(tokens, mask_id=1024, generator=g)                      # doctest: +SKIP
    >>> loss = masked_cross_entropy(net(inputs, labels), tokens, masked)                     # doctest: +SKIP
    >>> tokens = iterative_decode(lambda s: net(s, labels), batch=8, num_tokens=8, mask_id=1024)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LogitsFn", "MaskSemantics", "kept_count", "random_mask", "masked_cross_entropy", "guided_logits",
           "iterative_decode", "remask_schedule"]

LogitsFn = Callable[[Tensor], Tensor]
MaskSemantics = Literal["code", "maskgit"]
_CONFIDENCE_EPS = 1e-5   # log(p + 1e-5), as the reference sampler: keeps log finite for p = 0
_GUMBEL_EPS = 1e-20      # clamp before each log of -log(-log U): U = 0 would give -inf


def _uniform(shape: tuple[int, ...], device: torch.device | str, generator: torch.Generator | None) -> Tensor:
    # Draw on the generator's device (a CPU generator cannot fill a CUDA tensor), then move to `device`.
    draw_device = generator.device if generator is not None else device
    return torch.rand(shape, generator=generator, device=draw_device, dtype=torch.float64).to(device)


def _rank(scores: Tensor, *, descending: bool) -> Tensor:
    """Position of each entry in its row's sort order (0 = first), shape as ``scores`` (B, N)."""
    order = scores.argsort(dim=-1, descending=descending, stable=True)  # (B, N) indices
    return order.argsort(dim=-1, stable=True)                           # (B, N) ranks


# ---------------------------------------------------------------------------------------------------------------
# Training: masking and loss
# ---------------------------------------------------------------------------------------------------------------


def kept_count(ratio: Tensor, num_tokens: int, semantics: MaskSemantics = "code") -> Tensor:
    """Number of tokens left visible for mask ratios r under the cosine schedule.

    Args:
        ratio: r in [0, 1), shape (B,).
        num_tokens: N, tokens per sequence.
        semantics: ``"code"`` (kept = clip(⌊cos(πr/2)N⌋, 0, N−1)) or ``"maskgit"`` (masked = clip(⌈cos(πr/2)N⌉, 1, N)).

    Returns:
        Kept counts, int64 of shape (B,), each in [0, N−1].
    """
    # float64: cos(0)·N must give exactly N (then clipped), not N − 1 from float32 rounding.
    gamma = torch.cos(math.pi / 2 * ratio.to(torch.float64)) * num_tokens  # (B,)
    if semantics == "code":
        return gamma.floor().clamp(0, num_tokens - 1).to(torch.int64)
    if semantics == "maskgit":
        masked = gamma.ceil().clamp(1, num_tokens).to(torch.int64)
        return num_tokens - masked
    raise ValueError(f"kept_count: semantics must be 'code' or 'maskgit', got {semantics!r}")


def random_mask(tokens: Tensor, mask_id: int, *, semantics: MaskSemantics = "code",
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Hide a cosine-scheduled random subset of each sequence behind ``mask_id``.

    Per sample: r ~ U(0, 1), k = ``kept_count(r)``; the k positions with the largest uniform noise stay visible.

    Args:
        tokens: Token ids, int64 of shape (B, N).
        mask_id: Id written at masked positions (the codebook size in TimeVQVAE).
        semantics: See ``kept_count``.
        generator: Source of all randomness (r and the noise); None uses the global RNG.

    Returns:
        ``(inputs, masked)``: inputs (B, N) int64 with masked positions set to ``mask_id``; masked (B, N) bool,
        True where hidden. Every row has at least one masked position.
    """
    b, n = tokens.shape
    ratio = _uniform((b,), tokens.device, generator)                      # (B,)
    noise = _uniform((b, n), tokens.device, generator)                    # (B, N)
    kept = kept_count(ratio, n, semantics)                                # (B,)
    visible = _rank(noise, descending=True) < kept[:, None]               # (B, N) top-k of the noise per row
    masked = ~visible
    inputs = tokens.masked_fill(masked, mask_id)                          # (B, N)
    return inputs, masked


def masked_cross_entropy(logits: Tensor, targets: Tensor, masked: Tensor) -> Tensor:
    """Mean cross-entropy over masked positions only (visible positions carry no loss).

    Args:
        logits: Predictions, shape (B, N, V).
        targets: True token ids, int64 of shape (B, N).
        masked: True where the input was hidden, bool of shape (B, N).

    Returns:
        Scalar loss (float32 or wider). With no masked position at all it is 0, still attached to the graph.
    """
    if not bool(masked.any()):
        return logits.sum() * 0.0
    # float(): CE in half precision loses the small probabilities that dominate its gradient.
    return F.cross_entropy(logits[masked].float(), targets[masked].long())  # (M, V), (M,) -> ()


def guided_logits(cond: Tensor, null: Tensor, scale: float) -> Tensor:
    """Classifier-free guidance in logit space: ℓ_null + s·(ℓ_cond − ℓ_null); s = 1 gives ℓ_cond (guidance off).

    The endpoints are returned as is: in floating point ℓ_null + (ℓ_cond − ℓ_null) is not exactly ℓ_cond, and
    −∞ logits would turn into NaN through the difference.
    """
    if scale == 1.0:
        return cond
    if scale == 0.0:
        return null
    return null + scale * (cond - null)


# ---------------------------------------------------------------------------------------------------------------
# Sampling: iterative decoding
# ---------------------------------------------------------------------------------------------------------------


def remask_schedule(num_masked_at_start: int, step: int, steps: int) -> int:
    """⌊N₀ · cos(π/2 · (t+1)/T)⌋ before clamping: how many positions step t leaves masked (0 at t = T−1)."""
    return math.floor(num_masked_at_start * math.cos(math.pi / 2 * (step + 1) / steps))


def _sample_categorical(logits: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """One draw per position from Categorical(softmax(logits)) by inverse CDF; also the drawn token's probability.

    Inverse CDF needs one uniform per position (B, N) instead of (B, N, V) Gumbel draws, so drawing on a CPU
    generator and moving to the GPU stays cheap. Returns ids (B, N) int64 and p(id) (B, N) float64.
    """
    probs = torch.softmax(logits.to(torch.float64), dim=-1)               # (B, N, V)
    cdf = probs.cumsum(dim=-1)                                            # (B, N, V)
    u = _uniform(tuple(logits.shape[:-1]), logits.device, generator)     # (B, N)
    # right=True picks the first index whose CDF exceeds u, which always has p > 0 (zero-probability ids are
    # never drawn); clamp guards u·total rounding up to the total.
    target = (u * cdf[..., -1]).unsqueeze(-1)                             # (B, N, 1)
    ids = torch.searchsorted(cdf, target, right=True).squeeze(-1).clamp(max=logits.shape[-1] - 1)  # (B, N)
    chosen = probs.gather(-1, ids.unsqueeze(-1)).squeeze(-1)              # (B, N)
    return ids, chosen


def _gumbel(shape: tuple[int, ...], device: torch.device | str, generator: torch.Generator | None) -> Tensor:
    u = _uniform(shape, device, generator)                                # (B, N)
    return -torch.log((-torch.log(u.clamp(min=_GUMBEL_EPS))).clamp(min=_GUMBEL_EPS))


@torch.no_grad()
def iterative_decode(logits_fn: LogitsFn, *, batch: int, num_tokens: int, mask_id: int, steps: int = 10,
                     choice_temperature: float = 0.0, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> Tensor:
    """MaskGIT iterative decoding from an all-masked sequence (TimeVQVAE's sampler, models.md §5).

    Step t = 0 … T−1: sample every position from the network's logits (decoded ones keep their token); score each
    newly sampled position by log(p + 1e-5) + τ·(1 − (t+1)/T)·Gumbel (decoded positions score +∞); re-mask the
    ``remask_schedule`` least confident, clamped to [0, unknown − 1] so each step decodes at least one token and
    the last step decodes all.

    Args:
        logits_fn: ``tokens (B, N) int64 -> logits (B, N, V)``; tokens contain ``mask_id`` where unknown.
        batch: B, sequences to sample.
        num_tokens: N, tokens per sequence.
        mask_id: The mask token id (not a valid output id).
        steps: T, decoding steps.
        choice_temperature: τ, Gumbel noise on the confidences (TimeVQVAE: LF 10, HF 0).
        generator: Source of all randomness; the same seeded generator gives the same tokens.
        device: Where the tokens live and ``logits_fn`` is called.

    Returns:
        Token ids, int64 of shape (B, N), no ``mask_id`` left.
    """
    if steps < 1:
        raise ValueError(f"iterative_decode: steps must be >= 1, got {steps}")
    tokens = torch.full((batch, num_tokens), mask_id, dtype=torch.int64, device=device)  # (B, N) all masked
    masked_at_start = num_tokens
    for t in range(steps):
        unknown = tokens == mask_id                                           # (B, N)
        logits = logits_fn(tokens)                                            # (B, N, V)
        sampled, prob = _sample_categorical(logits, generator)                # (B, N), (B, N)
        sampled = torch.where(unknown, sampled, tokens)                       # keep decoded tokens

        confidence = torch.log(prob + _CONFIDENCE_EPS)                        # (B, N)
        noise_scale = choice_temperature * (1.0 - (t + 1) / steps)
        if noise_scale != 0.0:
            confidence = confidence + noise_scale * _gumbel(tuple(confidence.shape), device, generator)
        confidence = confidence.masked_fill(~unknown, math.inf)               # decoded tokens are never re-masked

        # (B,) per row: at most unknown − 1 (progress every step), at least 0.
        limit = unknown.sum(dim=-1) - 1                                       # (B,)
        mask_len = limit.clamp(max=remask_schedule(masked_at_start, t, steps)).clamp(min=0)  # (B,)
        remask = _rank(confidence, descending=False) < mask_len[:, None]      # (B, N) least confident first
        tokens = sampled.masked_fill(remask, mask_id)                         # (B, N)
    return tokens
