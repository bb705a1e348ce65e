"""Frozen sentence encoder: offline load of the bundled all-MiniLM-L6-v2, unit-norm embeddings, clear errors."""

import numpy as np
import pytest

from seriesforge.errors import ConfigError
from seriesforge.nn.text_encoder import SentenceEncoder, load_encoder


@pytest.fixture(scope="module")
def encoder():
    # HF_HUB_OFFLINE makes any accidental hub call fail instead of touching the network.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield load_encoder("minilm")


def _cos(a, b):
    return float(np.dot(a, b))  # rows are unit-norm


def test_default_encoder_gives_unit_norm_float32(encoder):
    emb = encoder.encode(["rises steadily", "a sharp spike near the end", ""])
    assert encoder.dim == 384
    assert encoder.key == "all-MiniLM-L6-v2"
    assert emb.shape == (3, 384) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_similar_captions_are_closer_than_unrelated(encoder):
    rise, increase, spike = encoder.encode(["rises steadily", "increases steadily", "a sharp spike near the end"])
    assert _cos(rise, increase) > _cos(rise, spike) + 0.2


def test_batching_does_not_change_embeddings(encoder):
    texts = ["flat then a dip", "oscillates with growing amplitude", "rises steadily", "noisy plateau"]
    np.testing.assert_allclose(encoder.encode(texts, batch_size=3), encoder.encode(texts), atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_load_encoder_is_cached(encoder):
    assert load_encoder("minilm") is encoder


def test_local_directory_gets_path_based_key(encoder):
    other = SentenceEncoder(str(encoder.path))
    assert other.key.startswith(encoder.path.name + "-") and other.key != encoder.key
    np.testing.assert_allclose(other.encode(["rises steadily"]), encoder.encode(["rises steadily"]), atol=1e-6)


def test_missing_path_raises_config_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match="no-such-model"):
        SentenceEncoder(str(missing))
    with pytest.raises(ConfigError, match="config.json"):
        SentenceEncoder(str(tmp_path))
