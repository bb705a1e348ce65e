"""The HTTP API's schemas and rules: request/response models, request checks, error bodies, response encoding.

Shape legend: n series per request · K variables · L length. Samples travel as float32 (n, K, L).

Every rejection is an `ApiError` with an HTTP status and a message that starts with the field it is about
(``"captions[2]: empty caption"``), so the caller sees at once what to change. Status codes:
404 unknown model · 413 n x length over the server's limit · 422 anything else wrong with the request ·
401 missing or wrong API key (checked in `app.py`) · 504 over the request timeout · 500 a server fault.

Nothing here imports Ray or torch: the checks run in the ingress, which never holds a model.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from seriesforge.serving.config import LimitsConfig

SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes a signed 64-bit seed; keep to the non-negative half


class GenerateRequest(BaseModel):
    """`POST /v1/generate`. Strict types: "24" is not a length and 1.0 is not a count."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(description="a name from GET /v1/models")
    length: int = Field(description="points per series, 1 <= length <= the model's max_length")
    n: int | None = Field(None, description="number of series; defaults to len(captions), else 1")
    captions: list[str] | None = Field(None, description="one caption per series, for caption-conditioned models")
    class_labels: list[int] | None = Field(None, description="one label per series, for class-conditioned models")
    seed: int | None = Field(None, description="fixes the draw; a seeded request is sampled alone (not batched)")
    steps: int | None = Field(None, description="sampler steps (default: the checkpoint's config)")
    guidance: float | None = Field(None, description="classifier-free guidance scale (default: the config's)")
    refine: bool = Field(False, description="apply the model's refiner (TimeVQVAE's neural mapper, if trained)")
    format: Literal["json", "npy"] = Field("json", description="json: nested lists; npy: np.save bytes")


class GenerateResponse(BaseModel):
    """The JSON body of a `format: json` answer; `series` has the nesting of `shape` (n, K, L)."""

    model: str
    shape: list[int]
    series: list[list[list[float]]]
    seed: int | None


class ModelCard(BaseModel):
    """One entry of `GET /v1/models`: what a request to this model may contain."""

    name: str
    family: str
    conditions: str  # "caption" | "class" | "none": which of captions / class_labels / nothing a request carries
    max_length: int
    trained_lengths: list[int]
    step: int  # training step of the served checkpoint (its path stays private to the server)
    scaling: str
    num_classes: int = 0  # class-conditioned models: class_labels are 0..num_classes-1


class ApiError(Exception):
    """A request the server refuses; `detail` names the field first."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Job:
    """A checked request as the generator deployment receives it (plain values: it crosses a Ray call)."""

    model: str
    n: int
    length: int
    captions: tuple[str, ...] | None
    seed: int | None
    steps: int | None
    guidance: float | None
    labels: tuple[int, ...] | None = None  # class labels (class-conditioned models)
    refine: bool = False  # pass samples through the family's refiner


def check(req: GenerateRequest, models: dict[str, dict], limits: LimitsConfig) -> Job:
    """Apply the API's rules to a well-typed request; raise `ApiError` (404/413/422) naming the field."""
    card = models.get(req.model)
    if card is None:
        known = ", ".join(sorted(models)) or "none"
        raise ApiError(404, f"model: unknown model {req.model!r} (known: {known})")
    n = _check_condition(req, card)
    if not 1 <= n <= limits.max_n:
        raise ApiError(422, f"n: must be in [1, {limits.max_n}], got {n}")
    if not 1 <= req.length <= card["max_length"]:
        raise ApiError(422, f"length: must be in [1, {card['max_length']}] (the model's max_length), "
                            f"got {req.length}")
    if n * req.length > limits.max_points:
        raise ApiError(413, f"n x length: {n} x {req.length} = {n * req.length} points exceeds this server's "
                            f"limit of {limits.max_points} per request (ask for fewer or shorter series)")
    if req.steps is not None and not 1 <= req.steps <= limits.max_steps:
        raise ApiError(422, f"steps: must be in [1, {limits.max_steps}], got {req.steps}")
    if req.seed is not None and not 0 <= req.seed < SEED_LIMIT:
        raise ApiError(422, f"seed: must be in [0, 2**63), got {req.seed}")
    if req.guidance is not None and not req.guidance >= 0:
        raise ApiError(422, f"guidance: must be >= 0, got {req.guidance}")
    return Job(model=req.model, n=n, length=req.length,
               captions=tuple(req.captions) if req.captions is not None else None,
               seed=req.seed, steps=req.steps, guidance=req.guidance,
               labels=tuple(req.class_labels) if req.class_labels is not None else None, refine=req.refine)


def _check_condition(req: GenerateRequest, card: dict) -> int:
    """Captions xor class labels xor nothing, as the model's family conditions; returns n."""
    conditions, family = card["conditions"], card["family"]
    if req.class_labels is not None:
        if conditions != "class":
            raise ApiError(422, f"class_labels: the {family} model {req.model!r} does not take class labels")
        if req.captions is not None:
            raise ApiError(422, f"captions: the {family} model {req.model!r} does not take captions")
        if req.n is not None and req.n != len(req.class_labels):
            raise ApiError(422, f"class_labels: got {len(req.class_labels)} labels for n={req.n} (one per series)")
        classes = int(card.get("num_classes", 0))
        for i, label in enumerate(req.class_labels):
            if not 0 <= label < classes:
                raise ApiError(422, f"class_labels[{i}]: the {family} model {req.model!r} has classes "
                                    f"0..{classes - 1}, got {label}")
        return len(req.class_labels)
    if conditions == "caption":
        if req.captions is None:
            raise ApiError(422, f"captions: the {family} model {req.model!r} generates from captions; give one "
                                "caption per series")
        if req.n is not None and req.n != len(req.captions):
            raise ApiError(422, f"captions: got {len(req.captions)} captions for n={req.n} (give one per series)")
        for i, caption in enumerate(req.captions):
            if not caption.strip():
                raise ApiError(422, f"captions[{i}]: empty caption")
        return len(req.captions)
    if req.captions is not None:
        raise ApiError(422, f"captions: the {family} model {req.model!r} does not take captions")
    return 1 if req.n is None else req.n  # class-conditioned models without labels sample unconditionally


def validation_message(errors: list[dict[str, Any]]) -> str:
    """Pydantic/FastAPI validation errors -> one line naming the first bad field (``captions[1]: ...``)."""
    if not errors:
        return "body: invalid request"
    first = errors[0]
    loc = [p for p in first.get("loc", ()) if p != "body"]
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".") or "body"
    if first.get("type") == "json_invalid":
        field = "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {first.get('msg', 'invalid value')}{more}"


def encode_json(model: str, series: np.ndarray, seed: int | None) -> dict:
    """float32 (n, K, L) -> the `GenerateResponse` body (float32 values widen exactly to JSON doubles)."""
    return {"model": model, "shape": list(series.shape), "series": series.tolist(), "seed": seed}


def encode_npy(series: np.ndarray) -> bytes:
    """float32 (n, K, L) -> np.save bytes (no pickle: plain dtype)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(series, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def decode_npy(body: bytes) -> np.ndarray:
    """The inverse of `encode_npy`, for clients; refuses pickled payloads."""
    return np.load(io.BytesIO(body), allow_pickle=False)
