"""What a run in progress is: where it keeps its files and progress, the devices it trains on, how it reports.

Example:
    >>> state = RunState(run_dir, Progress(run_dir / CHECKPOINTS / "progress.json"), verbose=0)
    >>> rows, details = run_phase(model, cfg.phases[0], cfg, splits, state)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

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
