"""The Ray Serve application: a FastAPI ingress in front of a batched, multiplexed generator deployment.

Shape legend: n series per request · K variables · L length. Samples cross Ray as float32 (n, K, L) arrays.

    HTTP --> Ingress (FastAPI: auth, schema, limits)                        no model, no torch
               |  handle.options(multiplexed_model_id=NAME).generate(job)    routed to a replica holding NAME
               v
             GeneratorDeployment (autoscaled replicas)
               @serve.multiplexed  NAME -> generate.load(checkpoint)       LRU bound: replica.max_models
               @serve.batch        concurrent jobs -> sampling.run_batch   one Generator.sample per group

Checkpoints are reached only through `seriesforge.generate` (registry + safetensors); nothing from the training
stack is imported (tests/arch/test_imports.py). Entry points: `build_app(args)` for `serve run serve/config.yaml`,
`deploy(...)` for `seriesforge serve`, the tests and the benchmark.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
from collections import Counter
from typing import Any

import numpy as np
from fastapi import Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from ray import serve

from seriesforge import __version__
from seriesforge.errors import ConfigError, RequestError, SeriesforgeError
from seriesforge.serving import api, sampling
from seriesforge.serving.config import APP_NAME, HttpConfig, LimitsConfig, ServeConfig, from_args, read_api_key

logger = logging.getLogger("ray.serve")
PUBLIC_CARD_KEYS = ("family", "conditions", "max_length", "trained_lengths", "step", "scaling", "num_classes")


# ---------------------------------------------------------------------------------------------------------------
# Generator replicas
# ---------------------------------------------------------------------------------------------------------------


class _Loaded:
    """What the multiplexer caches per model. Serve calls `__del__` when it evicts a model (LRU), which is how the
    replica's stats learn of evictions; the Generator itself is freed once no batch still uses it."""

    def __init__(self, name: str, generator: Any, on_evict) -> None:
        self.name, self.generator, self._on_evict = name, generator, on_evict

    def __del__(self) -> None:
        callback, self._on_evict = self._on_evict, None  # Serve calls it, then garbage collection again
        if callback is not None:
            callback(self.name)


class _Stats:
    """Counters one replica exposes (GET /v1/stats): observed batch sizes, model loads and evictions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # evictions are reported from an executor thread
        self.batch_sizes: Counter[int] = Counter()
        self.loads: Counter[str] = Counter()
        self.evictions: Counter[str] = Counter()
        self.loaded: list[str] = []

    def batch(self, size: int) -> None:
        with self._lock:
            self.batch_sizes[size] += 1

    def load(self, name: str) -> None:
        with self._lock:
            self.loads[name] += 1
            self.loaded.append(name)

    def evict(self, name: str) -> None:
        with self._lock:
            self.evictions[name] += 1
            if name in self.loaded:
                self.loaded.remove(name)

    def snapshot(self) -> dict:
        with self._lock:
            return {"batches": sum(self.batch_sizes.values()), "requests": sum(k * v for k, v in
                                                                               self.batch_sizes.items()),
                    "batch_sizes": {str(k): v for k, v in sorted(self.batch_sizes.items())},
                    "max_batch_size_seen": max(self.batch_sizes, default=0),
                    "loads": dict(self.loads), "evictions": dict(self.evictions), "loaded": list(self.loaded)}


@serve.deployment
class GeneratorDeployment:
    """Samples series. Concurrent requests are batched; checkpoints are loaded on demand, LRU-bounded."""

    def __init__(self, paths: dict[str, str], *, max_batch_size: int, batch_wait_timeout_s: float,
                 max_models: int, device: str) -> None:
        self._paths = paths  # model name -> checkpoint directory (resolved once, at build time)
        self._device = device
        self._stats = _Stats()
        self._compute = asyncio.Lock()  # sub-batches of different models would otherwise share the cores
        # Batch and LRU sizes come from the config, so they are set per instance rather than in the decorators.
        self.sample_batch.set_max_batch_size(max_batch_size)
        self.sample_batch.set_batch_wait_timeout_s(batch_wait_timeout_s)

        async def load(name: str) -> _Loaded:
            return await self._load(name)

        self._model = serve.multiplexed(max_num_models_per_replica=max_models)(load)

    async def _load(self, name: str) -> _Loaded:
        from seriesforge.generate import load  # torch and the families load in generator replicas only

        if name not in self._paths:
            raise RequestError(f"model: unknown model {name!r}")
        generator = await asyncio.to_thread(load, self._paths[name], self._device, cache=False)
        self._stats.load(name)
        return _Loaded(name, generator, self._stats.evict)

    async def generate(self, job: api.Job) -> dict:
        """One request -> {"series": (n, K, L), "batch_size": requests in its batch} or {"status", "detail"}."""
        return await self.sample_batch(job)

    @serve.batch
    async def sample_batch(self, jobs: list[api.Job]) -> list[dict]:
        self._stats.batch(len(jobs))
        models: dict[str, Any] = {}
        for name in dict.fromkeys(job.model for job in jobs):
            try:
                models[name] = await self._model(name)  # held here, so an eviction cannot pull it mid-batch
            except Exception as err:  # noqa: BLE001  (fails only the requests for this model)
                models[name] = err

        def get(name: str) -> Any:
            found = models[name]
            if isinstance(found, Exception):
                raise found
            return found.generator

        async with self._compute:
            results = await asyncio.to_thread(sampling.run_batch, jobs, get)
        return [_outcome(r, len(jobs)) for r in results]

    def stats(self) -> dict:
        import torch  # already loaded by generate in this process; Ray sizes its threads from num_cpus

        return {"replica": serve.get_replica_context().replica_id.unique_id, "device": self._device,
                "torch_threads": torch.get_num_threads(), **self._stats.snapshot()}


def _outcome(result: np.ndarray | Exception, batch_size: int) -> dict:
    if isinstance(result, np.ndarray):
        return {"series": result, "batch_size": batch_size}
    if isinstance(result, RequestError):
        return {"status": 422, "detail": str(result)}
    logger.error("generation failed", exc_info=result)
    return {"status": 500, "detail": f"internal error ({type(result).__name__}); see the server log"}


# ---------------------------------------------------------------------------------------------------------------
# HTTP ingress
# ---------------------------------------------------------------------------------------------------------------


@serve.deployment
@serve.ingress()  # the FastAPI app is built per replica (`__serve_build_asgi_app__`), closing over its settings
class Ingress:
    """Authenticates and checks requests, then forwards them to the generator replicas."""

    def __init__(self, generator: Any, models: dict[str, dict], limits: LimitsConfig, api_key: str | None) -> None:
        self.generator = generator  # DeploymentHandle of GeneratorDeployment
        self.models = models  # name -> generate.describe() card
        self.limits = limits
        self._api_key = api_key.encode() if api_key else None
        self._handles: dict[str, Any] = {}

    def authorize(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        if self._api_key is None:
            return
        given = credentials.credentials.encode() if credentials else b""
        if not hmac.compare_digest(given, self._api_key):  # constant time: no timing hints about the key
            raise api.ApiError(401, "authorization: missing or wrong API key (send 'Authorization: Bearer KEY')")

    async def sample(self, job: api.Job) -> dict:
        handle = self._handles.get(job.model)
        if handle is None:
            handle = self._handles[job.model] = self.generator.options(multiplexed_model_id=job.model)
        response = handle.generate.remote(job)
        try:
            return await asyncio.wait_for(_awaited(response), timeout=self.limits.request_timeout_s)
        except asyncio.TimeoutError:
            response.cancel()
            raise api.ApiError(504, f"request: no answer within {self.limits.request_timeout_s} s "
                                    "(limits.request_timeout_s)") from None

    def __serve_build_asgi_app__(self) -> FastAPI:
        return _http_app(self)


async def _awaited(response: Any) -> Any:
    return await response


def _http_app(ingress: Ingress) -> FastAPI:
    http = FastAPI(title="seriesforge", version=__version__,
                   description="Generate time series from trained seriesforge checkpoints. Errors are "
                               "`{\"detail\": \"FIELD: what is wrong\"}` with status 401, 404, 413, 422, 504 or 500.")
    bearer = HTTPBearer(auto_error=False, description="the API key, when the server requires one")

    @http.exception_handler(RequestValidationError)
    async def invalid(_request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": api.validation_message(list(exc.errors()))}, status_code=422)

    @http.exception_handler(api.ApiError)
    async def refused(_request, exc: api.ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    async def authorized(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        ingress.authorize(credentials)  # a route dependency: runs before the body is validated

    @http.get("/healthz", summary="liveness (no API key needed)")
    async def healthz() -> dict:
        return {"status": "ok", "models": len(ingress.models)}

    @http.get("/v1/models", summary="the models this server generates from", dependencies=[Depends(authorized)])
    async def models() -> dict:
        cards = [api.ModelCard(name=name, **{k: card[k] for k in PUBLIC_CARD_KEYS})
                 for name, card in sorted(ingress.models.items())]
        return {"models": [c.model_dump() for c in cards]}

    @http.get("/v1/stats", summary="batching and multiplexing counters of one generator replica",
              dependencies=[Depends(authorized)])
    async def stats() -> dict:
        return await ingress.generator.stats.remote()

    @http.post("/v1/generate", summary="sample series", dependencies=[Depends(authorized)],
               response_model=api.GenerateResponse,
               responses={200: {"content": {"application/octet-stream": {}},
                                "description": "JSON (format json) or np.save bytes (format npy); header "
                                               "x-batch-size: requests sampled in the same batch"}})
    async def generate(request: api.GenerateRequest) -> Response:
        job = api.check(request, ingress.models, ingress.limits)
        try:
            out = await ingress.sample(job)
        except api.ApiError:
            raise
        except Exception:  # noqa: BLE001  (a fault in one request answers 500 to it alone)
            logger.exception("request to %s failed", job.model)
            return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)
        if "status" in out:
            return JSONResponse({"detail": out["detail"]}, status_code=out["status"])
        series: np.ndarray = out["series"]  # (n, K, L) float32
        headers = {"x-batch-size": str(out["batch_size"]), "x-series-shape": ",".join(map(str, series.shape))}
        if request.format == "npy":
            return Response(api.encode_npy(series), media_type="application/octet-stream", headers=headers)
        return JSONResponse(api.encode_json(job.model, series, job.seed), headers=headers)

    return http


# ---------------------------------------------------------------------------------------------------------------
# Building and deploying
# ---------------------------------------------------------------------------------------------------------------


def build_catalog(models: dict[str, str]) -> dict[str, dict]:
    """name -> `generate.describe` card of its checkpoint (latest complete one of a run dir), no weights loaded."""
    from seriesforge.generate import describe

    if not models:
        raise ConfigError("models: nothing to serve (give --checkpoint DIR, or models: {NAME: DIR} in the config)")
    catalog = {}
    for name, path in models.items():
        try:
            catalog[name] = describe(path)
        except SeriesforgeError as err:
            raise ConfigError(f"models.{name}: {err}") from None
    return catalog


def build(cfg: ServeConfig, api_key: str | None = None, *, catalog: dict[str, dict] | None = None) -> Any:
    """The Serve application for `cfg` (an ingress bound to a generator deployment); needs a Ray connection."""
    from seriesforge.runtime import cluster_has_gpus

    catalog = catalog if catalog is not None else build_catalog(cfg.models)
    use_gpu = cfg.replica.use_gpu == "yes" or (cfg.replica.use_gpu == "auto" and cluster_has_gpus())
    scaling = cfg.autoscaling
    generator = GeneratorDeployment.options(
        autoscaling_config={"min_replicas": scaling.min_replicas, "max_replicas": scaling.max_replicas,
                            "target_ongoing_requests": scaling.target_ongoing_requests,
                            "upscale_delay_s": scaling.upscale_delay_s,
                            "downscale_delay_s": scaling.downscale_delay_s},
        max_ongoing_requests=cfg.replica.max_ongoing_requests,
        ray_actor_options={"num_cpus": cfg.replica.num_cpus, "num_gpus": cfg.replica.num_gpus if use_gpu else 0},
    ).bind({name: card["checkpoint"] for name, card in catalog.items()}, max_batch_size=cfg.max_batch_size,
           batch_wait_timeout_s=cfg.batching.batch_wait_timeout_s, max_models=cfg.replica.max_models,
           device="cuda" if use_gpu else "cpu")
    return Ingress.options(
        num_replicas=cfg.ingress.num_replicas, max_ongoing_requests=cfg.ingress.max_ongoing_requests,
        ray_actor_options={"num_cpus": cfg.ingress.num_cpus},
    ).bind(generator, catalog, cfg.limits, api_key)


def build_app(args: dict) -> Any:
    """`serve run serve/config.yaml` entry point: `args` is the application's `args` mapping (a `ServeConfig`).
    The API key, if configured, is read here from the environment of the process that builds the app."""
    cfg = from_args(args)
    return build(cfg, read_api_key(cfg))


def deploy(cfg: ServeConfig, http: HttpConfig, *, api_key: str | None = None, name: str = APP_NAME,
           route_prefix: str = "/", catalog: dict[str, dict] | None = None) -> str:
    """Start Serve's proxy on `http` (if Serve is not running yet), deploy, wait until running; returns the URL."""
    app = build(cfg, api_key, catalog=catalog)
    serve.start(http_options={"host": http.host, "port": http.port})
    serve.run(app, name=name, route_prefix=route_prefix)
    return http.url + route_prefix.rstrip("/")
