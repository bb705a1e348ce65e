"""Serve under load: closed-loop HTTP clients on loopback against a T2S deployment, batching off and on, one run.

Each client sends a request, waits for the answer, sends the next (closed loop), so throughput is what the server
sustains at that concurrency and latency includes queueing. Requests are caption-conditioned T2S samples without a
seed (seeded requests are never batched), n=1, one length, `format: npy`. For each mode the application is deployed
alone through the platform path (`seriesforge.serving.app.deploy`: proxy -> FastAPI ingress -> generator replica),
warmed up, then driven at every concurrency level; `batching.enabled: false` is the unbatched baseline.

Prints a table (requests/s, p50/p99 latency, mean observed batch size) and a JSON summary with the device named.
Target (issue #8): at 32 clients, batched throughput >= 6x unbatched and batched p99 <= 3x p50.

    python benchmarks/serve_load.py [--checkpoint DIR | --preset small] [--clients 1,8,32] [--requests 400]

Without --checkpoint an untrained checkpoint of --preset is written to a temporary directory: sampling costs the
same with random weights, and the numbers then depend on no training run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

CAPTIONS = ["The series climbs at an accelerating pace.", "The series stays flat apart from one sharp peak.",
            "The series goes up and down in 3 regular cycles.", "A steady decline with small noise."]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="T2S run or checkpoint directory (default: untrained --preset)")
    parser.add_argument("--preset", default="small", help="T2S preset of the untrained checkpoint (default small)")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated concurrency levels (default 1,8,32)")
    parser.add_argument("--requests", type=int, default=400, help="requests per level and mode (default 400)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed requests after each deploy (default 10)")
    parser.add_argument("--length", type=int, default=48, help="series length of every request (default 48)")
    parser.add_argument("--steps", type=int, help="sampler steps per request (default: the checkpoint's); --steps 1 "
                                                  "makes sampling nearly free, which shows the HTTP path's own ceiling")
    parser.add_argument("--max-batch-size", type=int, default=32, help="batching.max_batch_size (default 32)")
    parser.add_argument("--batch-wait", type=float, default=0.01, help="batching.batch_wait_timeout_s (default 0.01)")
    parser.add_argument("--replicas", type=int, default=1, help="generator replicas, fixed (default 1)")
    parser.add_argument("--replica-cpus", type=float, default=float(os.cpu_count() or 1),
                        help="replica.num_cpus, which Ray also makes the replica's torch threads (default: all cores)")
    parser.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    return parser.parse_args()


def untrained_checkpoint(preset: str, root: Path) -> Path:
    from seriesforge import checkpoint, config as C, registry

    cfg = registry.preset_config("t2s", preset, "captions:/unused")
    model = registry.get("t2s")(cfg.model)
    return checkpoint.write_checkpoint(root / f"t2s-{preset}", config=C.to_dict(cfg), state_dict=model.state_dict(),
                                       meta={"family": "t2s", "stage": "denoiser", "stage_index": 1, "step": 0})


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def closed_loop(url: str, clients: int, total: int, length: int, steps: int | None = None) -> dict:
    """`clients` workers, each one request in flight, until `total` answers; latencies in seconds."""
    import httpx

    latencies: list[float] = []
    batch_sizes: list[int] = []
    issued = 0

    async def worker(client: httpx.AsyncClient, wid: int) -> None:
        nonlocal issued
        while issued < total:
            issued += 1
            body = {"model": "bench", "length": length, "captions": [CAPTIONS[(wid + issued) % len(CAPTIONS)]],
                    "format": "npy", **({"steps": steps} if steps else {})}
            start = time.perf_counter()
            response = await client.post(f"{url}/v1/generate", json=body)
            latencies.append(time.perf_counter() - start)
            response.raise_for_status()
            batch_sizes.append(int(response.headers["x-batch-size"]))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as client:
        start = time.perf_counter()
        await asyncio.gather(*(worker(client, i) for i in range(clients)))
        wall = time.perf_counter() - start
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {"clients": clients, "requests": len(latencies), "rps": len(latencies) / wall,
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * q[98],
            "mean_batch": statistics.fmean(batch_sizes)}


def run_mode(name: str, batched: bool, ckpt: Path, args: argparse.Namespace, levels: list[int], port: int) -> list:
    from ray import serve

    from seriesforge.serving import config as sc
    from seriesforge.serving.app import deploy

    cfg = sc.from_args({"models": {"bench": str(ckpt)},
                        "batching": {"enabled": batched, "max_batch_size": args.max_batch_size,
                                     "batch_wait_timeout_s": args.batch_wait},
                        "autoscaling": {"min_replicas": args.replicas, "max_replicas": args.replicas},
                        "replica": {"num_cpus": args.replica_cpus,
                                    "max_ongoing_requests": max(64, 2 * args.max_batch_size, max(levels))}})
    url = deploy(cfg, sc.HttpConfig(port=port), name=name, route_prefix=f"/{name}")
    try:
        asyncio.run(closed_loop(url, 1, args.warmup, args.length, args.steps))
        return [{"mode": name, **asyncio.run(closed_loop(url, c, max(args.requests, c), args.length, args.steps))}
                for c in levels]
    finally:
        serve.delete(name)  # one mode at a time: the two never compete for the cores


def device_name() -> str:
    import torch

    from seriesforge.runtime import cluster_has_gpus

    if cluster_has_gpus() and torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.machine()}, {os.cpu_count()} cores)"


def main() -> None:
    args = parse_args()
    levels = [int(c) for c in args.clients.split(",") if c.strip()]
    from seriesforge.runtime import init_ray

    init_ray(None, min_cpus=int(args.replica_cpus * args.replicas) + 1)  # logical CPUs: room for the ingress too
    port = args.port or free_port()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or untrained_checkpoint(args.preset, Path(tmp))
        rows = run_mode("unbatched", False, ckpt, args, levels, port) + run_mode("batched", True, ckpt, args, levels,
                                                                                  port)
    print(f"\n{'mode':<10} {'clients':>7} {'requests':>8} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6}")
    for r in rows:
        print(f"{r['mode']:<10} {r['clients']:>7} {r['requests']:>8} {r['rps']:>8.1f} {r['p50_ms']:>8.1f} "
              f"{r['p99_ms']:>8.1f} {r['mean_batch']:>6.1f}")
    top = max(levels)
    off, on = ({r["mode"]: r for r in rows if r["clients"] == top}[m] for m in ("unbatched", "batched"))
    print(json.dumps({
        "benchmark": "serve_load", "family": "t2s", "preset": None if args.checkpoint else args.preset,
        "checkpoint": str(args.checkpoint) if args.checkpoint else "untrained", "length": args.length, "steps": args.steps,
        "max_batch_size": args.max_batch_size, "batch_wait_timeout_s": args.batch_wait, "replicas": args.replicas,
        "replica_cpus": args.replica_cpus,
        "device": device_name(), "clients": top,
        "batched_over_unbatched_rps": round(on["rps"] / off["rps"], 2), "target_rps_ratio": ">= 6",
        "batched_p99_over_p50": round(on["p99_ms"] / on["p50_ms"], 2), "target_p99_over_p50": "<= 3",
        "rows": [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
    }, indent=2))


if __name__ == "__main__":
    main()
