"""The images a run keeps of its own data, so `export` and `evaluate` work after the data is gone.

At training time the run directory gets
- `heldout.npz`: its test split (else its validation split) with labels, whole when it is at most
  `MAX_HELDOUT_BYTES`, else a stratified sample of that size (`complete` says which);
- `calibration.npz`: a class-balanced random sample of the training split (int8 calibration sees
  every class, not the first classes of a folder read class by class).

Example:
    >>> held_out = load_heldout("runs/quickstart")
    >>> held_out.split, held_out.complete, held_out.source.images.shape
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from kerastl.data.sources import ImageSource
from kerastl.rundir import atomic_path

HELDOUT_FILE = "heldout.npz"
CALIBRATION_FILE = "calibration.npz"
MAX_HELDOUT_BYTES = 64 << 20  # 85,000 28x28 digits, or 430 images of 224x224 RGB
CALIBRATION_SAMPLES = 200


@dataclass(frozen=True)
class HeldOut:
    """A run's held-out images: which split, whether whole, and the images with their labels."""

    split: str
    complete: bool
    source: ImageSource


def save_run_samples(run_dir: Path, held_out: Optional[ImageSource], split: str, train: ImageSource, seed: int) -> None:
    """Write `heldout.npz` (from `held_out`, the run's `split`) and `calibration.npz` (from `train`)."""
    rng = np.random.default_rng(seed)
    if held_out is not None:
        image_bytes = max(int(np.prod(held_out.image_shape)), 1)
        keep = min(len(held_out), MAX_HELDOUT_BYTES // image_bytes)
        indices = np.arange(len(held_out)) if keep == len(held_out) else stratified_indices(held_out, keep, rng)
        _save(run_dir / HELDOUT_FILE, held_out.take(indices), split=split, complete=keep == len(held_out))
    _save(run_dir / CALIBRATION_FILE, train.take(balanced_indices(train, CALIBRATION_SAMPLES, rng)))


def load_heldout(run_dir: str | Path) -> Optional[HeldOut]:
    """The run's held-out images, or None for a run trained before kerastl kept them."""
    file = Path(run_dir) / HELDOUT_FILE
    if not file.is_file():
        return None
    with np.load(file) as saved:
        source = ImageSource(saved["images"], saved["labels"], tuple(saved["class_names"].tolist()), str(file))
        return HeldOut(str(saved["split"]), bool(saved["complete"]), source)


def load_calibration(run_dir: str | Path) -> Optional[np.ndarray]:
    """The run's calibration images, or None for a run trained before kerastl kept them."""
    file = Path(run_dir) / CALIBRATION_FILE
    if not file.is_file():
        return None
    with np.load(file) as saved:
        return saved["images"]


def stratified_indices(source: ImageSource, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` random indices keeping the class proportions (random for multi-label data), sorted."""
    if not source.label_kind.stratifies or count >= len(source):
        return np.sort(rng.permutation(len(source))[:count])
    counts = source.class_counts()
    per_class = np.maximum(1, np.floor(counts * count / counts.sum())).astype(int)
    chosen = [rng.permutation(source.members(k))[: per_class[k]] for k in range(len(counts))]
    return np.sort(np.concatenate(chosen))[:count]


def balanced_indices(source: ImageSource, count: int, rng: np.random.Generator) -> np.ndarray:
    """Up to `count` random indices taking classes in turn, so every class is in (random for multi-label)."""
    if not source.label_kind.stratifies:
        return np.sort(rng.permutation(len(source))[:count])
    queues = [list(rng.permutation(source.members(k))) for k in range(len(source.class_names))]
    chosen: list[int] = []
    while len(chosen) < min(count, len(source)):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return np.sort(np.array(chosen, dtype=np.int64))


def _save(file: Path, source: ImageSource, **facts) -> None:
    with atomic_path(file) as temp:
        with open(temp, "wb") as handle:  # np.savez adds .npz to a bare path name
            np.savez_compressed(
                handle, images=np.asarray(source.images), labels=source.labels,
                class_names=np.array(source.class_names), **facts,
            )
