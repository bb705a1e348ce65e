"""T2S DiT-stage training throughput: a bare single-process PyTorch loop vs Ray Train + DeepSpeed (1 worker).

Both sides train the same denoiser on the same in-memory batch with the same number of intra-op threads, so the
ratio isolates what the platform adds (Ray's processes, the Train worker, the DeepSpeed engine, our loop and its
reporting), not data loading. Target: ratio >= 0.9.

A 2-core VM's speed drifts by about +-10% from minute to minute, so each side runs `--rounds` timed rounds and
the medians are compared. To say where a shortfall comes from, the Ray worker also times the bare loop itself,
alternating with the platform loop, and the driver times the platform loop without Ray (a one-process group):
    bare (driver, no Ray running)  ->  bare inside the Ray Train worker  ->  platform loop with DeepSpeed
    `ray_tax` = 2nd / 1st (Ray's own processes sharing the cores), `engine_tax` = 3rd / 2nd (DeepSpeed + our
    loop), `engine_tax_no_ray` = the same without Ray running.

    python benchmarks/train_overhead.py [--preset small] [--batch 64] [--steps 200] [--rounds 4] [--zero 2]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from seriesforge import config as C
from seriesforge import registry

STAGE = "denoiser"


def make_batch(cfg: C.RunConfig, batch: int, length: int) -> dict[str, torch.Tensor]:
    family = registry.get(cfg.family)
    return family.example_batch(cfg.model, batch_size=batch, length=length, generator=torch.Generator().manual_seed(0))


class BareLoop:
    """Plain PyTorch: forward (the loss), backward, clip, AdamW step; nothing else."""

    def __init__(self, cfg: C.RunConfig, batch: int, length: int) -> None:
        torch.manual_seed(0)
        self.model = registry.get(cfg.family)(cfg.model)
        self.params = self.model.set_stage(STAGE)
        self.opt = torch.optim.AdamW(self.params, lr=cfg.stages[STAGE].optim.lr)
        self.data = make_batch(cfg, batch, length)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            loss = self.model(self.data).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)


class PlatformLoop:
    """The platform's strategy (DeepSpeed here) and generic stage loop, as a training worker runs them."""

    def __init__(self, cfg: C.RunConfig, batch: int, length: int, device: torch.device) -> None:
        from seriesforge.train.strategy import build_strategy

        torch.manual_seed(0)
        model = registry.get(cfg.family)(cfg.model)
        params = model.set_stage(STAGE)
        self.strategy = build_strategy(cfg.strategy, device=device)
        self.wrapped = self.strategy.prepare(model, params, cfg.stages[STAGE])
        self.batches = itertools.repeat(make_batch(cfg, batch, length))

    def run(self, steps: int) -> None:
        from seriesforge.train.loop import StagePlan, fit_stage

        plan = StagePlan(STAGE, 1, 0, steps, log_every=steps, checkpoint_every=10**9)
        fit_stage(self.wrapped, self.strategy, self.batches, plan, on_log=lambda *_: None,
                  on_checkpoint=lambda *_: None)


def timed_rounds(loops: dict[str, BareLoop | PlatformLoop], steps: int, warmup: int, rounds: int) -> dict[str, list]:
    """Alternate the loops in ABBA order, so a steady drift in machine speed hits each alike. Steps/s per round."""
    for loop in loops.values():
        loop.run(warmup)
    rates: dict[str, list[float]] = {name: [] for name in loops}
    order = list(loops.items())
    for i in range(rounds):
        for name, loop in (order if i % 2 == 0 else order[::-1]):
            tic = time.perf_counter()
            loop.run(steps)
            rates[name].append(steps / (time.perf_counter() - tic))
    return rates


def driver_rates(cfg: C.RunConfig, args: argparse.Namespace) -> dict[str, list[float]]:
    """Before Ray starts: the bare loop, and the platform loop in a one-process group (DeepSpeed's own cost)."""
    import torch.distributed as dist

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    launcher_env = {"LOCAL_RANK": "0", "RANK": "0", "WORLD_SIZE": "1"}  # what a launcher sets; DeepSpeed checks
    os.environ.update(launcher_env)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="tcp://127.0.0.1:29571",
                            rank=0, world_size=1)
    try:
        loops = {"bare": BareLoop(cfg, args.batch, args.length),
                 "platform_no_ray": PlatformLoop(cfg, args.batch, args.length, device)}
        return timed_rounds(loops, args.steps, args.warmup, args.rounds)
    finally:
        dist.destroy_process_group()
        for key in launcher_env:
            os.environ.pop(key, None)


def ray_worker(config: dict) -> None:
    import ray.train
    import ray.train.torch

    torch.set_num_threads(config["threads"])
    cfg = registry.resolve_config(config["run"])
    loops = {"bare_in_worker": BareLoop(cfg, config["batch"], config["length"]),
             "platform": PlatformLoop(cfg, config["batch"], config["length"], ray.train.torch.get_device())}
    rates = timed_rounds(loops, config["steps"], config["warmup"], config["rounds"])
    # Ray Train 2.60 keeps a report's metrics in the Result only when the report carries a checkpoint.
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "rates.json").write_text(json.dumps(rates))
        ray.train.report({}, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def ray_rates(cfg_dict: dict, args: argparse.Namespace, storage: str) -> dict[str, list[float]]:
    import ray.train
    from ray.train.torch import TorchTrainer

    from seriesforge.runtime import init_ray

    init_ray(None, min_cpus=args.threads + 1)
    trainer = TorchTrainer(
        ray_worker,
        train_loop_config={"run": cfg_dict, "batch": args.batch, "length": args.length, "steps": args.steps,
                           "warmup": args.warmup, "rounds": args.rounds, "threads": args.threads},
        scaling_config=ray.train.ScalingConfig(num_workers=1, resources_per_worker={"CPU": args.threads}),
        run_config=ray.train.RunConfig(storage_path=storage, name="overhead"))
    result = trainer.fit()
    with result.checkpoint.as_directory() as ckpt:
        return json.loads(Path(ckpt, "rates.json").read_text())


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small", help="T2S preset whose DiT is timed (default: small)")
    parser.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    parser.add_argument("--length", type=int, default=96, help="series length (default 96)")
    parser.add_argument("--steps", type=int, default=200, help="timed steps per round (default 200)")
    parser.add_argument("--rounds", type=int, default=4, help="timed rounds per side; medians compared (default 4)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps before the first round")
    parser.add_argument("--zero", type=int, default=2, help="DeepSpeed ZeRO stage on the Ray side (default 2)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads on both sides")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    cfg = registry.build_run_config("t2s", preset=args.preset, data_spec="captions:/unused",
                                    sets=[f"strategy.zero_stage={args.zero}", "strategy.kind=deepspeed",
                                          "scaling.num_workers=1", f"stages.{STAGE}.batch_size={args.batch}"])
    torch.set_num_threads(args.threads)
    bare = driver_rates(cfg, args)
    with tempfile.TemporaryDirectory() as storage:
        inside = ray_rates(C.to_dict(cfg), args, storage)
    median = {name: statistics.median(r) for name, r in {**bare, **inside}.items()}
    device = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
              else f"CPU ({platform.machine()}, {os.cpu_count()} cores)")
    print(json.dumps({
        "benchmark": "train_overhead", "family": "t2s", "stage": STAGE, "preset": args.preset, "batch": args.batch,
        "length": args.length, "steps_per_round": args.steps, "rounds": args.rounds, "threads": args.threads,
        "zero_stage": args.zero, "device": device,
        "bare_steps_per_s": round(median["bare"], 2),
        "ray_deepspeed_steps_per_s": round(median["platform"], 2),
        "ratio": round(median["platform"] / median["bare"], 3), "target": ">= 0.9",
        "bare_in_ray_worker_steps_per_s": round(median["bare_in_worker"], 2),
        "ray_tax": round(median["bare_in_worker"] / median["bare"], 3),
        "engine_tax": round(median["platform"] / median["bare_in_worker"], 3),
        "platform_no_ray_steps_per_s": round(median["platform_no_ray"], 2),
        "engine_tax_no_ray": round(median["platform_no_ray"] / median["bare"], 3),
        "rounds_steps_per_s": {name: [round(x, 2) for x in r] for name, r in {**bare, **inside}.items()},
    }, indent=2))


if __name__ == "__main__":
    main()
