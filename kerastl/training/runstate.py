"""What a run in progress is: where it keeps its files and progress, the devices it trains on, how it reports.

Example:
    >>> state = RunState(run_dir, Progress(run_dir / CHECKPOINTS / "progress.json"), verbose=0)
    >>> rows, details = run_phase(model, cfg.phases[0], cfg, splits, state)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from kerastl.training.checkpoints import Progress
from kerastl.training.distribute import ONE_DEVICE, Engine
from kerastl.training.validation import ValidationLogits


@dataclass
class RunState:
    """Where a run keeps its files and progress, the devices it trains on, and how it reports."""

    run_dir: Path
    progress: Progress
    engine: Engine = ONE_DEVICE
    verbose: Any = "auto"
    callbacks: Sequence = ()  # Keras callbacks added to every phase's fit
    write_files: bool = True  # the run folder's results (model, metrics, report...); False: checkpoints only
    stages: Sequence = ()  # the optional RunStages of a config run (kerastl.training.stages), told when metrics are measured
    extractor: Any = None  # the model's feature extractor, its predict traced once: for the frozen features, validation, the end
    validation_logits: ValidationLogits = field(default_factory=ValidationLogits)  # kept by validation, read at the end
    frozen_held_out: Optional["FrozenHeldOut"] = None  # the held-out splits' frozen features, for the epochs they fit


@dataclass
class FrozenHeldOut:
    """The frozen backbone's pooled features of the held-out splits, computed once before the first phase, and the
    last epoch whose weights still hold that backbone: the epochs of the head phases before any phase trains it.
    The end of a run that keeps such an epoch reads its held-out logits from these through the head.

    Example:
        >>> frozen = FrozenHeldOut({"test": test_features})
        >>> frozen.after_phase(trains_backbone=False, last_epoch=3)
        >>> frozen.of_epoch(2)   # {"test": test_features}
    """

    features: dict[str, np.ndarray]  # split name ("validation", "test") -> [N, D]
    last_epoch: int = 0
    backbone_trained: bool = False

    def after_phase(self, trains_backbone: bool, last_epoch: int) -> None:
        """A phase ended at `last_epoch`: its epochs hold the frozen backbone unless it `trains_backbone`, and after
        such a phase no later epoch does."""
        self.backbone_trained = self.backbone_trained or trains_backbone
        if not self.backbone_trained:
            self.last_epoch = last_epoch

    def of_epoch(self, epoch: int) -> dict[str, np.ndarray]:
        """The features when the weights of `epoch` hold the frozen backbone, else {}."""
        return self.features if epoch <= self.last_epoch else {}
