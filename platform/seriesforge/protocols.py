"""Contracts between families and the rest of the platform. Nothing here runs; it only names shapes.

Shape legend: B batch · K variables · L length · E text-embedding width.

A family is an `nn.Module` holding every network of every stage (so one checkpoint can generate). The loop
trains one stage at a time: `set_stage` freezes the rest and returns what to optimise, and `forward(batch)`
*is* the training loss of that stage, so DDP/DeepSpeed wrappers see every call (design.md §2.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Literal, Protocol, Sequence

import torch

Condition = Literal["none", "class", "caption"]


@dataclass
class LossOutput:
    """What a family's forward returns: the scalar to backpropagate and detached metrics to log."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class DataNeeds:
    """What a family needs from the data pipeline beyond the series themselves."""

    text_encoder: str | None = None  # caption embeddings from this encoder ("minilm" or a local HF path)
    kinds: tuple[str, ...] = ("captions",)  # data SPEC kinds the family trains on (see data/specs.py)
    columns: tuple[str, ...] = ("series",)  # row columns every training batch carries (ucr also has "label")
    channels: int | None = None  # K the model is built for, checked against the data before training starts
    num_classes: int | None = None  # C of a class-conditioned model, checked against a ucr: SPEC likewise
    length: int | None = None  # L of a fixed-length model trained on ucr: data (window SPECs name theirs)


@dataclass(frozen=True)
class Preset:
    """A named, complete starting config; `build(data_spec)` returns a `RunConfig`."""

    name: str
    summary: str
    build: Callable[[str], Any]


class Family(Protocol):
    """The interface every registered family implements (see families/t2s/family.py)."""

    name: ClassVar[str]  # registry key
    Config: ClassVar[type]  # the family's model config dataclass
    stages: ClassVar[tuple[str, ...]]  # trained in this order
    conditions: ClassVar[Condition]  # decides the Serve request schema
    # the stage after which a checkpoint can generate; None = the last stage (later stages refine, e.g. NM)
    sampling_stage: ClassVar[str | None]

    def __init__(self, cfg: Any) -> None: ...

    @classmethod
    def presets(cls) -> dict[str, Preset]: ...

    @classmethod
    def data_needs(cls, cfg: Any) -> DataNeeds: ...

    @classmethod
    def search_space(cls) -> dict[str, dict]:
        """The default `seriesforge tune` space: dotted config key -> {distribution: args}."""

    @classmethod
    def max_length(cls, cfg: Any) -> int: ...

    @classmethod
    def example_batch(cls, cfg: Any, *, batch_size: int, length: int,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A random batch with the keys and shapes training feeds (the batch contract, used by tests)."""

    @classmethod
    def data_init(cls, cfg: Any, series: Any) -> dict[str, torch.Tensor]:
        """State-dict entries derived from training data, loaded before the first stage on every rank.

        `series`: (N, L, K) float32 numpy training series (a deterministic sample, computed once on the driver, so
        every rank starts from the same values), or None for caption corpora. Return {} when nothing is derived.
        """

    @classmethod
    def num_classes(cls, cfg: Any) -> int:
        """Classes a class-conditioned model samples (labels 0..C-1); 0 for other families."""

    def prepare_stage(self, stage: str, reference: Any, *, seed: int) -> dict[str, float]:
        """Called on every rank before `stage` starts fresh (not on a mid-stage resume), with the earlier stages'
        weights loaded: data-derived work between stages (TimeVQVDM's latent scalers, NM's τ search).
        `reference`: the driver's deterministic (N, L, K) training sample (as `data_init`), or None. Must give
        the same result on every rank (seeded by `seed`); results live in buffers; returns values to log."""

    @classmethod
    def validate(cls, run: Any) -> None:
        """Cross-section checks of a whole RunConfig (raise ConfigError naming the dotted path)."""

    def set_stage(self, stage: str) -> list[torch.nn.Parameter]:
        """Freeze every other stage's parameters; return the ones to optimise."""

    def forward(self, batch: dict[str, torch.Tensor]) -> LossOutput:
        """Training loss of the current stage. batch["series"]: (B, L) from caption corpora, (B, L, K) from
        ucr/sines/csv SPECs; extra keys per `data_needs`."""

    def after_step(self) -> None:
        """Called on the unwrapped module after every optimiser step (e.g. a weight EMA); may do nothing."""

    def observe(self, metrics: dict[str, float]) -> dict[str, float]:
        """Called at every log step with the metrics averaged over workers (identical on every rank), so
        schedules driven by them (TimeLDM's adaptive beta) stay in step; returns extra metrics to log."""

    def sample(self, *, n: int, length: int, condition: Sequence[Any] | None = None, steps: int | None = None,
               guidance: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw `n` series of `length` points in normalised units: (n, K, L)."""
