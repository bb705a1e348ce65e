"""Per-dataset feature extractors of the UCR suite, built once and reused (metrics.md §5.1, §6).

    CACHE/fcn-<dataset>-<split>-v1-e<epochs>-s<seed>/   model.safetensors + fcn.json (sha256, test accuracy)
    CACHE/rocket-L<length>-k1000-s0.npz                 ROCKET kernels, seed 0 per (dataset length)

CACHE defaults to `_seriesforge_cache/eval/` beside the UCR dataset folder (shared by every evaluation of it),
or REPORT_DIR/cache when that folder is read-only. The FCN trains as a Ray task (`seriesforge eval fcn train`
builds it explicitly; `seriesforge eval` builds it when missing).
"""

from __future__ import annotations

from pathlib import Path

from seriesforge.eval.metrics.fcn import FCNTrainConfig
from seriesforge.files import writable_dir

ROCKET_KERNELS = 1000
ACCEPTANCE_GAP = 0.03  # §5.1: re-train with another seed if test accuracy is > 3 points below the published TRTR


def cache_root(dataset_folder: Path, fallback: Path) -> Path:
    return writable_dir(dataset_folder / "_seriesforge_cache" / "eval", fallback)


def fcn_dir(root: Path, dataset: str, split: str, cfg: FCNTrainConfig) -> Path:
    return root / f"fcn-{dataset}-{split}-{cfg.variant}-e{cfg.epochs}-s{cfg.seed}"


def ensure_fcn(root: Path, data, split: str, cfg: FCNTrainConfig, *, remote: bool = True) -> tuple[Path, dict]:
    """The cached FCN of this dataset and split, trained first (as a Ray task when `remote`) if missing."""
    from seriesforge.eval.metrics.fcn import load_fcn

    target = fcn_dir(root, data.name, split, cfg)
    if (target / "fcn.json").exists():
        return target, load_fcn(target)[1]
    print(f"training the FCN feature extractor of {data.name} ({cfg.variant}, {cfg.epochs} epochs, "
          f"{len(data.train)} train series); cached in {target}", flush=True)
    args = (data.train, data.train_labels, data.real, data.real_labels, data.num_classes, cfg, str(target))
    if remote:
        import ray

        info = ray.get(ray.remote(num_cpus=1)(_train_and_save).remote(*args))
    else:
        info = _train_and_save(*args)
    return target, info


def _train_and_save(x_train, y_train, x_test, y_test, n_classes: int, cfg: FCNTrainConfig, target: str) -> dict:
    import torch

    from seriesforge.eval.metrics.fcn import save_fcn, train_fcn

    torch.set_num_threads(1)
    model, info = train_fcn(x_train, y_train, cfg, x_test=x_test, y_test=y_test, n_classes=n_classes)
    save_fcn(model, info, target)
    return info


def ensure_rocket(root: Path, length: int) -> Path:
    from seriesforge.eval.metrics.rocket import make_kernels, save_kernels

    path = root / f"rocket-L{length}-k{ROCKET_KERNELS}-s0.npz"
    if not path.exists():
        save_kernels(make_kernels(length, n_kernels=ROCKET_KERNELS, seed=0), path)
    return path
