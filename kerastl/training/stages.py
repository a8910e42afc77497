"""The optional parts of a config run — backbone pretraining, distillation, experiment tracking — as stages that
plug into `kerastl.train` at fixed points, the way Keras callbacks plug into `fit`: the trainer calls every
stage's hooks in turn and holds no `if cfg.<section>` of its own.

The points, in the order a run reaches them (each hook's default does nothing):

- `on_splits(splits)`: the data are read and nothing is written yet; returns the splits to train on
  (distillation: with the teacher's soft targets).
- `before_model(run)`: before the model is built; returns whether the stage opened the run folder
  (pretraining writes the run first, so a run killed while it pretrains resumes there).
- `callbacks(run)`: Keras callbacks added to every phase's `fit` (tracking: each epoch's metrics).
- `on_metrics(metrics, model, splits, run_dir)`: the run's metrics are measured, metrics.json is not written yet
  (distillation: teacher and student side by side).
- `on_end(metrics, run_dir)`: the run folder is complete (tracking: the final numbers and files).

Example:
    >>> stages = run_stages(cfg, verbose=0)        # [Tracking(...)] for a config with tracking.kind: mlflow
    >>> splits = stages[0].on_splits(splits)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from kerastl.config import Config
from kerastl.data.pipeline import Splits
from kerastl.rundir import MODEL_FILE
from kerastl.run_metrics import RunMetrics
from kerastl.training.checkpoints import CHECKPOINTS, Progress
from kerastl.training.distillation import compare_with_teacher, teacher_targets
from kerastl.training.pretrain import PRETRAINED_FILE, pretrain_backbone, pretraining_needed, read_pretrain_data
from kerastl.training.recipe import open_run
from kerastl.training.tracking import check_tracking, epoch_logger, start_tracking
from kerastl.weights import Weights


@dataclass
class OpenRun:
    """A run as the stages see it before training: its folder, progress and data, and whether it resumes."""

    run_dir: Path
    progress: Progress
    splits: Splits
    resume: bool


@dataclass
class RunStage:
    """An optional part of a run; subclasses override the hooks they need (see the module docstring)."""

    cfg: Config
    verbose: Any = "auto"

    def on_splits(self, splits: Splits) -> Splits:
        return splits

    def before_model(self, run: OpenRun) -> bool:
        return False

    def callbacks(self, run: OpenRun) -> list:
        return []

    def on_metrics(self, metrics: RunMetrics, model, splits: Splits, run_dir: Path) -> None:
        pass

    def on_end(self, metrics: RunMetrics, run_dir: Path) -> None:
        pass


@dataclass
class Pretraining(RunStage):
    """`model.weights: pretrain`: pretrain the backbone on `pretrain.source` before the model is built (once: a
    resumed run finds the pretrained file)."""

    def before_model(self, run: OpenRun) -> bool:
        if not pretraining_needed(self.cfg, run.run_dir, run.progress.pretrain):
            return False
        data = read_pretrain_data(self.cfg)  # checked before the run is written
        open_run(run.run_dir, self.cfg, run.splits, run.progress, run.resume)
        run.progress.pretrain = pretrain_backbone(self.cfg, run.run_dir / PRETRAINED_FILE, self.verbose, data,
                                                  backup=run.run_dir / CHECKPOINTS / "pretrain")
        run.progress.save()
        return True


@dataclass
class Distillation(RunStage):
    """`distill`: train on the teacher's soft targets, and compare teacher and student in metrics.json."""

    def on_splits(self, splits: Splits) -> Splits:
        return teacher_targets(self.cfg, splits, self.verbose)

    def on_metrics(self, metrics: RunMetrics, model, splits: Splits, run_dir: Path) -> None:
        metrics.distillation = compare_with_teacher(self.cfg, model, splits, metrics)
        metrics.distillation["student"]["file_mb"] = round((run_dir / MODEL_FILE).stat().st_size / 2**20, 2)


@dataclass
class Tracking(RunStage):
    """`tracking.kind: mlflow`: the config as parameters, each epoch's metrics, the final numbers and the run's
    files in an MLflow run (found again when the run resumes)."""

    tracker: Optional[Any] = field(default=None, init=False)

    def __post_init__(self):
        check_tracking(self.cfg)  # MLflow missing: refused before anything is read or written

    def callbacks(self, run: OpenRun) -> list:
        self.tracker = start_tracking(self.cfg, run.run_dir, run.progress)
        return [epoch_logger(self.tracker)]

    def on_end(self, metrics: RunMetrics, run_dir: Path) -> None:
        self.tracker.finish(metrics, run_dir)


def run_stages(cfg: Config, verbose: Any = "auto") -> list[RunStage]:
    """The optional stages `cfg` asks for, in the order they act."""
    wanted = (
        (Pretraining, Weights.parse(cfg.model.weights).kind == "pretrain"),
        (Distillation, cfg.distill is not None),
        (Tracking, cfg.tracking.kind != "none"),
    )
    return [stage(cfg, verbose) for stage, asked in wanted if asked]
