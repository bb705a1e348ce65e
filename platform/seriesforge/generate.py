"""Load a checkpoint through the registry and sample from it. The one sampler of a process: the CLI, evaluation
and Serve all call `Generator.sample`, which calls the family's own `sample`.

No training code and no Ray are imported here; weights come from safetensors, never from a pickle.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from seriesforge import registry
from seriesforge.checkpoint import CheckpointInfo, load_weights, resolve
from seriesforge.config import RunConfig
from seriesforge.errors import CheckpointError, ConfigError, RequestError


@dataclass
class Generator:
    info: CheckpointInfo
    cfg: RunConfig
    model: Any  # the family module, in eval mode

    @property
    def family(self) -> str:
        return self.cfg.family

    @property
    def conditions(self) -> str:
        return self.model.conditions

    @property
    def max_length(self) -> int:
        return self.model.max_length(self.cfg.model)

    def describe(self) -> dict:
        return _description(self.info, self.cfg, type(self.model))

    @property
    def num_classes(self) -> int:
        return int(self.model.num_classes(self.cfg.model))

    def sample(self, *, n: int, length: int, captions: Sequence[str] | None = None,
               labels: Sequence[int] | None = None, steps: int | None = None, seed: int = 0,
               guidance: float | None = None, refine: bool = False, progress=None) -> np.ndarray:
        """`n` series of `length` points: float32 (n, K, L). With captions or class labels, n must equal their count.

        T2S output is in per-series [0, 1] units (the training scaling, `data.scaling`); UCR families' output is in
        the dataset-standardised units they trained on. `refine` applies a family's post-hoc refiner (TimeVQVAE's
        neural mapper); families without one refuse it.
        """
        self._check_request(n=n, length=length, captions=captions, steps=steps)
        self._check_labels(n, labels)
        condition = list(captions) if captions else ([int(v) for v in labels] if labels is not None else None)
        extra = {"refine": True} if refine else {}
        if refine and not getattr(self.model, "can_refine", False):
            raise RequestError(f"refine: the {self.family} model has no trained refiner")
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        with torch.no_grad():
            out = self.model.sample(n=n, length=length, condition=condition, steps=steps, guidance=guidance,
                                    generator=generator, progress=progress, **extra)
        return out.float().cpu().numpy()

    def _check_labels(self, n: int, labels: Sequence[int] | None) -> None:
        if labels is None:
            return
        if self.conditions != "class":
            raise RequestError(f"labels: the {self.family} model is not class-conditioned")
        if len(labels) != n:
            raise RequestError(f"labels: got {len(labels)} class labels for n={n} (give one per series)")
        for i, v in enumerate(labels):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= int(v) < self.num_classes:
                raise RequestError(f"labels[{i}]: must be a class in [0, {self.num_classes - 1}], got {v!r}")

    def _check_request(self, *, n: int, length: int, captions: Sequence[str] | None, steps: int | None) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise RequestError(f"n: must be a positive integer, got {n!r}")
        if isinstance(length, bool) or not isinstance(length, int) or length <= 0 or length > self.max_length:
            raise RequestError(f"length: must be in [1, {self.max_length}] (the checkpoint's model.max_length), "
                               f"got {length!r}")
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0):
            raise RequestError(f"steps: must be a positive integer, got {steps!r}")
        if captions is not None:
            if self.conditions != "caption":
                raise RequestError(f"captions: the {self.family} model does not take captions")
            for i, c in enumerate(captions):
                if not isinstance(c, str) or not c.strip():
                    raise RequestError(f"captions[{i}]: empty caption")


def load(path: str | Path, device: str = "cpu", *, cache: bool = True) -> Generator:
    """A checkpoint directory, or a run directory (its latest complete checkpoint) -> `Generator`.

    `cache=False` builds a fresh model every call: Serve's multiplexing keeps its own LRU of loaded models, and a
    second cache here would keep evicted models alive.
    """
    info = resolve(path)
    return (_load_cached if cache else _load)(str(info.path), device)


def describe(path: str | Path) -> dict:
    """What `load(path).describe()` returns, read from config.json and meta.json only (no weights are loaded):
    the Serve ingress validates requests with it without holding any model."""
    info = resolve(path)
    cfg, family = _checked_config(info)
    return _description(info, cfg, family)


def _description(info: CheckpointInfo, cfg: RunConfig, family: Any) -> dict:
    return {"family": cfg.family, "checkpoint": str(info.path), "stage": info.meta["stage"],
            "step": info.meta["step"], "conditions": family.conditions, "max_length": family.max_length(cfg.model),
            "trained_lengths": list(cfg.data.lengths), "scaling": cfg.data.scaling,
            "num_classes": int(family.num_classes(cfg.model))}


def _checked_config(info: CheckpointInfo) -> tuple[RunConfig, Any]:
    """The checkpoint's resolved config and family class; refuses checkpoints of a stage that cannot generate."""
    try:
        cfg = registry.resolve_config({k: v for k, v in info.config.items() if k != "schema_version"})
    except ConfigError as err:
        raise CheckpointError(f"checkpoint {info.path}/config.json: {err}") from None
    family = registry.get(cfg.family)
    needed = getattr(family, "sampling_stage", None) or family.stages[-1]
    stage = info.meta["stage"]
    if stage not in family.stages or family.stages.index(stage) < family.stages.index(needed):
        raise CheckpointError(f"checkpoint {info.path}: saved during stage {stage!r}; {cfg.family} "
                              f"generates once its stage {needed!r} has trained (pass a later checkpoint)")
    return cfg, family


def _load(path: str, device: str) -> Generator:
    info = resolve(path)
    cfg, family = _checked_config(info)
    model = family(cfg.model)
    weights = load_weights(info)
    expected = set(model.state_dict())
    missing, extra = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or extra:
        raise CheckpointError(f"checkpoint {info.path}: weights do not match family {cfg.family!r} "
                              f"(missing {missing[:3]}, unexpected {extra[:3]})")
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {info.path}: weights do not fit the config ({str(err)[:200]})") from None
    model.set_stage(info.meta["stage"])
    model.eval().to(device)
    return Generator(info=info, cfg=cfg, model=model)


_load_cached = lru_cache(maxsize=8)(_load)  # the CLI and evaluation load the same checkpoint repeatedly
