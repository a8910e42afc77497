"""What a run measured (`metrics.json`), as a typed object: the report, the model card, the CLI, tracking and tuning
read its attributes; `to_dict()` is the file. It also answers `metrics["test_accuracy"]` and `metrics.get(...)` as
the dict it replaces did (absent values raise KeyError / give the default), so code written against that keeps working.

Example:
    >>> metrics = read_metrics("runs/quickstart")
    >>> metrics.test_accuracy, metrics.baselines["linear_probe"]["test_accuracy"], metrics["test_accuracy"]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Optional

from kerastl.rundir import METRICS_FILE


BASELINE_TITLES = {"linear_probe": "linear probe", "knn": "k-NN (cosine)"}  # metrics.baselines key -> title


@dataclass
class RunMetrics(Mapping):
    """The headline numbers of a run and how it went (None: not measured in this run).

    Attributes:
        name, backbone, num_classes, class_names: what was trained.
        num_images: images per split ("train", "validation", "test").
        phases: per phase: epochs run, epoch seconds, cached features, its last scores.
        val_loss, val_accuracy, test_loss, test_accuracy: the kept (calibrated) model on the held-out splits.
        health: the held-out split's prediction health (classes predicted, the largest share), single-label.
        baselines: the linear probe and k-NN on the frozen features, and the majority class.
        leakage: held-out images duplicating training images (`kerastl.analysis.duplicates`).
        warnings: one line each: collapse, below the probe, leakage.
        kept: which weights model.keras holds (best or last epoch, and its scores).
        strategy: the fine-tuning preset and why. replicas, processes: where it trained.
        pretrain, calibration, skipped_files, pixel_conversions, distillation: present when they apply.
    """

    name: str
    backbone: str
    num_classes: int
    class_names: list[str]
    num_images: dict[str, int]
    phases: dict[str, dict]
    val_loss: Optional[float] = None
    val_accuracy: Optional[float] = None
    test_loss: Optional[float] = None
    test_accuracy: Optional[float] = None
    health: Optional[dict] = None
    baselines: Optional[dict] = None
    leakage: Optional[dict] = None
    warnings: list[str] = field(default_factory=list)
    kept: Optional[dict] = None
    strategy: Optional[dict] = None
    replicas: int = 1
    processes: int = 1
    pretrain: Optional[dict] = None
    calibration: Optional[dict] = None
    skipped_files: Optional[list[str]] = None
    pixel_conversions: Optional[list[str]] = None
    distillation: Optional[dict] = None
    data_shard: Optional[dict] = None  # multi-host: which process this is, and the files its training images came from

    @property
    def linear_probe(self) -> dict:
        """The linear probe's scores (empty when the run had no baselines)."""
        return (self.baselines or {}).get("linear_probe", {})

    def baseline_test_accuracies(self) -> dict[str, float]:
        """The test accuracy of each baseline measured on the frozen backbone features, by title (report, model card)."""
        baselines = self.baselines or {}
        return {title: baselines[name]["test_accuracy"] for name, title in BASELINE_TITLES.items()
                if "test_accuracy" in baselines.get(name, {})}

    def to_dict(self) -> dict:
        """What `metrics.json` holds: every measured value, in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, values: dict) -> "RunMetrics":
        """The metrics of a `metrics.json` (keys of other kerastl versions that are no field are left out)."""
        known = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})

    def __getitem__(self, key: str) -> Any:
        value = getattr(self, key, None) if key in self._names() else None
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    @classmethod
    def _names(cls) -> set[str]:
        return {f.name for f in fields(cls)}


def read_metrics(run_dir: str | Path) -> RunMetrics:
    """The `RunMetrics` of a finished run (its `metrics.json`)."""
    return RunMetrics.from_dict(json.loads((Path(run_dir) / METRICS_FILE).read_text()))
