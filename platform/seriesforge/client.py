"""A small Python client of the seriesforge Serve API (what `seriesforge generate --endpoint` uses).

    from seriesforge.client import Client
    with Client("http://127.0.0.1:8000", api_key=os.environ.get("SERIESFORGE_API_KEY")) as c:
        c.models()                                              # [{"name": ..., "conditions": "caption", ...}]
        x = c.generate("gunpoint-t2s", length=96, captions=["rises then falls"])   # float32 (1, K, 96)

Samples travel as np.save bytes (`format: npy`): exact float32 and far smaller than JSON lists. A refused request
raises `EndpointError` carrying the HTTP status and the server's message, which names the field at fault.
Needs only httpx and numpy: no Ray, no torch.
"""

from __future__ import annotations

from typing import Any, Sequence

import httpx
import numpy as np

from seriesforge.errors import EndpointError
from seriesforge.serving.api import decode_npy


class Client:
    """Talks to one Serve deployment at `url` (scheme, host, port and any route prefix)."""

    def __init__(self, url: str, api_key: str | None = None, *, timeout: float = 120.0) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def health(self) -> dict:
        return self._json("GET", "/healthz")

    def models(self) -> list[dict]:
        """The served models: name, family, conditions ("caption" | "class" | "none"), max_length, ..."""
        return self._json("GET", "/v1/models")["models"]

    def stats(self) -> dict:
        """Counters of one generator replica: batch sizes seen, model loads and evictions."""
        return self._json("GET", "/v1/stats")

    def generate(self, model: str, *, length: int, captions: Sequence[str] | None = None, n: int | None = None,
                 seed: int | None = None, steps: int | None = None, guidance: float | None = None,
                 class_labels: Sequence[int] | None = None, refine: bool = False) -> np.ndarray:
        """Sample series: float32 (n, K, length). n defaults to len(captions) (caption models) or 1."""
        body: dict[str, Any] = {"model": model, "length": length, "format": "npy"}
        optional = {"captions": list(captions) if captions is not None else None, "n": n, "seed": seed,
                    "steps": steps, "guidance": guidance,
                    "class_labels": list(class_labels) if class_labels is not None else None,
                    "refine": True if refine else None}
        body.update({k: v for k, v in optional.items() if v is not None})
        response = self._send("POST", "/v1/generate", json=body)
        return decode_npy(response.content)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _json(self, method: str, path: str) -> Any:
        return self._send(method, path).json()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise EndpointError(f"{self.url}{path}: cannot reach the server ({type(err).__name__}: {err})") from None
        if response.status_code >= 400:
            raise EndpointError(f"{self.url}{path}: {response.status_code} {_detail(response)}",
                                status=response.status_code)
        return response


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else (response.reason_phrase or "error")
