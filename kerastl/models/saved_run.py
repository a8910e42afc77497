"""Opening a finished run: its config, its model (`model.keras` or another `.keras` file of the run) and its
class names, in one place for every command that reads a run (evaluate, export, label issues).

Example:
    >>> run = read_run("runs/quickstart")
    >>> run.cfg.data.batch_size, run.class_names[:3], run.model.facts["backbone"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kerastl.config import Config
from kerastl.models.classifier import load_model
from kerastl.rundir import MODEL_FILE, read_labels, run_config


@dataclass(frozen=True)
class SavedRun:
    """A finished run: its folder, the model file read, the run's config, the model and its class names."""

    run_dir: Path
    model_file: Path
    cfg: Config
    model: Any
    class_names: list[str]


def read_run(run: str | Path) -> SavedRun:
    """The run in folder `run`, or the run holding the `.keras` file `run` (e.g. its `model_last.keras`).

    Raises:
        RunDirError: no run there (no config.yaml or labels.txt). ExportError: no loadable model.
    """
    path = Path(run)
    run_dir, model_file = (path.parent, path) if path.is_file() else (path, path / MODEL_FILE)
    cfg = run_config(run_dir)
    return SavedRun(run_dir, model_file, cfg, load_model(model_file), read_labels(run_dir))
