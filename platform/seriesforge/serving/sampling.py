"""Turning one batch of requests into as few `Generator.sample` calls as possible, and back.

Shape legend: n series per request · N = sum of n over a group · K variables · L length.

A batch handed over by `@serve.batch` may mix models, lengths, step counts and guidance scales. Requests that agree
on all of those form a group: their captions are concatenated, the group is sampled in one call (N, K, L), and the
rows are split back in request order. Ray Serve already splits batches by multiplexed model id; grouping by model
here as well keeps this module correct on its own (and testable without Serve).

Seeds: `Generator.sample` draws a group's noise from one seed, so a request's rows depend on who shares its call.
A request that gives a seed therefore forms a group of its own and gets exactly what `seriesforge generate --seed`
gives on the same checkpoint; requests without a seed are batched and share one fresh random seed.
"""

from __future__ import annotations

import secrets
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from seriesforge.serving.api import Job


def group_key(job: Job, index: int) -> Hashable:
    """Requests with equal keys are sampled together; a seeded request's key is unique to it."""
    # labelled and unlabelled requests to one class model are sampled apart (conditional vs null class)
    shared = (job.model, job.length, job.steps, job.guidance, job.labels is None, job.refine)
    return (*shared, "seed", job.seed, index) if job.seed is not None else shared


def group_jobs(jobs: Sequence[Job]) -> list[list[int]]:
    """Indices of `jobs` grouped by `group_key`, groups in order of first appearance."""
    groups: dict[Hashable, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(group_key(job, i), []).append(i)
    return list(groups.values())


def sample_group(generator: Any, jobs: Sequence[Job]) -> list[np.ndarray]:
    """One `Generator.sample` call for jobs sharing a group key -> one float32 (n_i, K, L) array per job."""
    first = jobs[0]
    total = sum(j.n for j in jobs)
    captions = [c for j in jobs for c in j.captions] if first.captions is not None else None
    labels = [c for j in jobs for c in j.labels] if first.labels is not None else None
    seed = first.seed if first.seed is not None else secrets.randbelow(2**63)
    extra = {**({"labels": labels} if labels is not None else {}), **({"refine": True} if first.refine else {})}
    out = generator.sample(n=total, length=first.length, captions=captions, steps=first.steps, seed=seed,
                           guidance=first.guidance, **extra)  # (N, K, L)
    bounds = np.cumsum([0] + [j.n for j in jobs])
    return [out[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def run_batch(jobs: Sequence[Job], get_generator: Callable[[str], Any],
              sample: Callable[[Any, Sequence[Job]], list[np.ndarray]] = sample_group) -> list[np.ndarray | Exception]:
    """Every job's samples, or the exception that job alone caused.

    A group whose call fails is retried one job at a time, so one bad request (say, a length the family refuses)
    fails only itself and never its batch-mates.
    """
    results: list[np.ndarray | Exception | None] = [None] * len(jobs)
    for idx in group_jobs(jobs):
        members = [jobs[i] for i in idx]
        try:
            for i, arr in zip(idx, sample(get_generator(members[0].model), members)):
                results[i] = arr
            continue
        except Exception as err:  # noqa: BLE001  (isolated below, per request)
            if len(idx) == 1:
                results[idx[0]] = err
                continue
        for i in idx:
            try:
                results[i] = sample(get_generator(jobs[i].model), [jobs[i]])[0]
            except Exception as err:  # noqa: BLE001
                results[i] = err
    return results  # type: ignore[return-value]
