"""BidirectionalTransformer (TimeVQVAE MaskGIT prior): shapes, that class label and LF condition reach the logits,
and that a tiny prior trained with the masking process learns a fixed sequence that iterative decoding recovers."""

import pytest
import torch

from seriesforge.nn.maskgit_transformer import BidirectionalTransformer, ffn_width
from seriesforge.processes.maskgit import iterative_decode, masked_cross_entropy, random_mask

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(seed=0, **overrides):
    torch.manual_seed(seed)
    kwargs = dict(num_codes=16, num_tokens=8, num_classes=3, dim=32, depth=2, heads=2, ff_mult=1.0)
    kwargs.update(overrides)
    return BidirectionalTransformer(**kwargs).eval()


def _tokens(b, n, high, seed=0):
    return torch.randint(0, high, (b, n), generator=torch.Generator().manual_seed(seed))


def test_output_shape_and_properties():
    model = _model()
    tokens = _tokens(5, 8, 17)                                   # 16 = mask id included
    logits = model(tokens, torch.tensor([0, 1, 2, 3, 3]))
    assert logits.shape == (5, 8, 16) and torch.isfinite(logits).all()
    assert model.null_class == 3 and model.mask_id == 16
    assert ffn_width(128, 1.0) == 341


def test_label_reaches_logits_and_null_class_is_its_own_row():
    model = _model()
    tokens = _tokens(4, 8, 17)
    by_label = [model(tokens, torch.full((4,), c)) for c in range(4)]   # 0, 1, 2 and null = 3
    for a in range(4):
        for b in range(a + 1, 4):
            assert (by_label[a] - by_label[b]).abs().max() > 1e-3, (a, b)
    with pytest.raises(IndexError):
        model(tokens, torch.full((4,), 4))


def test_mask_id_and_visible_tokens_change_predictions_bidirectionally():
    model = _model()
    tokens = _tokens(2, 8, 16)
    base = model(tokens, torch.zeros(2, dtype=torch.int64))
    changed = tokens.clone()
    changed[:, -1] = 16                                           # mask the last token only
    out = model(changed, torch.zeros(2, dtype=torch.int64))
    # no causal mask: position 0 sees the last position
    assert (out[:, 0] - base[:, 0]).abs().max() > 1e-4


def test_cond_tokens_reach_logits_and_are_required():
    model = _model(num_tokens=12, cond_tokens=5, depth=1, heads=1)
    tokens, labels = _tokens(3, 12, 17), torch.full((3,), 3)
    cond = _tokens(3, 5, 16, seed=1)
    other = cond.clone()
    other[:, 2] = (other[:, 2] + 1) % 16
    out = model(tokens, labels, cond)
    assert out.shape == (3, 12, 16)
    assert (out - model(tokens, labels, other)).abs().max() > 1e-4
    with pytest.raises(ValueError):
        model(tokens, labels)
    with pytest.raises(ValueError):
        model(tokens, labels, cond[:, :4])
    with pytest.raises(ValueError):
        _model()(tokens[:, :8], labels, cond)


def test_dropout_only_in_training_and_mask_embedding_not_dropped():
    model = _model(dropout=0.5)
    tokens = torch.full((2, 8), 16)                               # all masked
    labels = torch.zeros(2, dtype=torch.int64)
    assert torch.equal(model(tokens, labels), model(tokens, labels))
    emb = model.train()._embed_tokens(tokens)
    assert torch.equal(emb, model.token_emb(tokens))              # mask embeddings pass untouched
    visible = _tokens(2, 8, 16)
    assert not torch.equal(model._embed_tokens(visible), model.token_emb(visible))


def test_tiny_prior_learns_a_sequence_that_decoding_recovers():
    target = torch.tensor([3, 14, 0, 7, 7, 9, 1, 12])
    model = _model(seed=0, depth=1, num_classes=2)           # default dropout 0.3
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    batch, labels = target.expand(32, -1), torch.zeros(32, dtype=torch.int64)
    all_masked = torch.full((32, 8), model.mask_id)
    everything = torch.ones(32, 8, dtype=torch.bool)

    def full_mask_loss():
        with torch.no_grad():
            return masked_cross_entropy(model.eval()(all_masked, labels), batch, everything).item()

    before = full_mask_loss()
    model.train()
    for _ in range(100):
        inputs, masked = random_mask(batch, model.mask_id, generator=gen)
        loss = masked_cross_entropy(model(inputs, labels), batch, masked)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = full_mask_loss()
    assert after < before / 3, (before, after)

    model.eval()
    out = iterative_decode(lambda s: model(s, torch.zeros(s.shape[0], dtype=torch.int64)), batch=64,
                           num_tokens=8, mask_id=model.mask_id, choice_temperature=10.0,
                           generator=torch.Generator().manual_seed(1))
    accuracy = (out == target).double().mean().item()
    assert accuracy >= 0.9, accuracy
