"""Shared fixtures: tiny corpora generated in the test run (never ../shared), one Ray per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Ray reads the auth mode when it is first imported in a process; the cluster tests query a token-protected local
# cluster's state API from this process (embedded Rays turn token auth on by themselves anyway)
os.environ.setdefault("RAY_AUTH_MODE", "token")


@pytest.fixture(autouse=True)
def _isolate_torch_state():
    """Restore dtype and RNG so tests do not leak into each other."""
    dtype = torch.get_default_dtype()
    rng = torch.get_rng_state()
    yield
    torch.set_default_dtype(dtype)
    torch.set_rng_state(rng)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """600 caption–series pairs at lengths 24 and 48, internal parquet schema."""
    from seriesforge.data.sources.captions_synth import write_parquet_corpus

    out = tmp_path_factory.mktemp("corpus") / "captions"
    write_parquet_corpus(out, 600, seed=0, lengths=(24, 48))
    return out


@pytest.fixture(scope="session")
def tiny_tsfragment(tmp_path_factory) -> Path:
    """The same kind of corpus in the published TSFragment-600K CSV layout."""
    from seriesforge.data.sources.captions_synth import write_tsfragment_corpus

    out = tmp_path_factory.mktemp("corpus") / "tsfragment"
    write_tsfragment_corpus(out, 600, seed=1, lengths=(24, 48))
    return out


def write_ucr_dataset(parent: Path, name: str, train: list, test: list) -> Path:
    """parent/NAME/NAME_TRAIN.tsv and NAME_TEST.tsv; rows are (label, values) or raw tab-separated strings."""
    folder = parent / name
    folder.mkdir(parents=True)
    for split, rows in (("TRAIN", train), ("TEST", test)):
        lines = [row if isinstance(row, str) else "\t".join([str(row[0]), *(repr(float(v)) for v in row[1])])
                 for row in rows]
        (folder / f"{name}_{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="session")
def make_ucr_dataset():
    """`write_ucr_dataset` as a fixture, for tiny UCR folders written in a test's tmp_path."""
    return write_ucr_dataset


@pytest.fixture(scope="session")
def ray_local():
    """One embedded Ray for every test that needs it (starting Ray costs ~10 s)."""
    import ray

    from seriesforge.runtime import init_ray

    init_ray(None, min_cpus=4)
    yield ray
    ray.shutdown()


# Untrained tiny T2S checkpoints (nothing is trained), written through the real checkpoint writer from the
# `debug` preset with weights from different seeds, so that samples tell the models apart (serve, eval).

def write_untrained_checkpoint(path: Path, *, weight_seed: int) -> Path:
    from seriesforge import checkpoint, config as C, registry

    cfg = registry.preset_config("t2s", "debug", "captions:/unused")
    torch.manual_seed(weight_seed)
    model = registry.get("t2s")(cfg.model)
    return checkpoint.write_checkpoint(path, config=C.to_dict(cfg), state_dict=model.state_dict(),
                                       meta={"family": "t2s", "stage": "denoiser", "stage_index": 1, "step": 1})


def write_untrained_window_checkpoint(path: Path, family: str, *, weight_seed: int = 0) -> Path:
    """A final-stage debug checkpoint of a fixed-length family: a window family (timeldm, stdiff) on sines:24
    (K = 5), with its data-derived values (`data_init`) from 64 Sines windows, as a trained run would carry; or a
    UCR family (timevqvae, timevqvdm) at the UCR placeholder shape (L = 150, 2 classes)."""
    from seriesforge import checkpoint, config as C, registry
    from seriesforge.data.sources.windows import sines

    cls = registry.get(family)
    ucr = "ucr" in cls.data_needs(cls.Config()).kinds
    cfg = registry.preset_config(family, "debug", "ucr:/unused" if ucr else "sines:24")
    torch.manual_seed(weight_seed)
    model = cls(cfg.model)
    model.load_state_dict(cls.data_init(cfg.model, sines(64, 24, seed=0)), strict=False)
    last = cls.stages[-1]
    return checkpoint.write_checkpoint(path, config=C.to_dict(cfg), state_dict=model.state_dict(),
                                       meta={"family": family, "stage": last, "stage_index": len(cls.stages) - 1,
                                             "step": 1})


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """Two final-stage T2S debug checkpoints with different (untrained) weights: name -> directory."""
    root = tmp_path_factory.mktemp("serve_ckpts")
    return {name: write_untrained_checkpoint(root / name, weight_seed=seed) for name, seed in (("a", 1), ("b", 2))}


@pytest.fixture(scope="session")
def make_window_checkpoint():
    """`write_untrained_window_checkpoint(path, family)` as a fixture."""
    return write_untrained_window_checkpoint


@pytest.fixture(scope="session")
def make_checkpoint():
    """`write_untrained_checkpoint(path, weight_seed=...)` as a fixture."""
    return write_untrained_checkpoint


@pytest.fixture
def one_torch_thread():
    """One torch thread for tests of tiny networks: on the shared 2-core machine, thread start-up and contention
    cost more than the maths (5-20x slower measured). The caller's setting is restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
