"""The run directory: its layout, the overwrite rule, and atomic writers (temp file + rename).

Layout:
    config.yaml   resolved config          history.csv       one row per epoch, with a `phase` column
    metrics.json  headline numbers         model.keras       the model kept (best by validation; raw pixels in)
    labels.txt    one class name per line  model_last.keras  the last weights, when they are not the best
    report.md     one page with everything MODEL_CARD.md     what the model is, for whoever uses it
    plots/        curves.png               evaluation/       held-out evaluation (train and `kerastl evaluate`)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from kerastl.errors import RunDirError

if TYPE_CHECKING:
    from kerastl.config import Config

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.json"
MODEL_FILE = "model.keras"
LABELS_FILE = "labels.txt"
HISTORY_FILE = "history.csv"
REPORT_FILE = "report.md"
SELECTION_FILE = "selection.json"  # how `kerastl tune` chose this run's config
PRETRAINED_FILE = "pretrained_backbone.weights.h5"  # with model.weights: pretrain
LAST_MODEL_FILE = "model_last.keras"  # the weights training ended with, when model.keras holds better ones
MODEL_CARD_FILE = "MODEL_CARD.md"
EXPORTS_FILE = "exports.json"  # every export of the run with its parity check (written by kerastl export)
RUN_FILES = (
    CONFIG_FILE, HISTORY_FILE, METRICS_FILE, MODEL_FILE, LABELS_FILE, REPORT_FILE, "heldout.npz", "calibration.npz",
    LAST_MODEL_FILE, MODEL_CARD_FILE, EXPORTS_FILE, SELECTION_FILE,
)


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` (same suffix) and move it onto `target` only on success."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix="".join(target.suffixes) or ".tmp", dir=target.parent)
    os.close(handle)
    temp = Path(temp)
    try:
        yield temp
        os.replace(temp, target)
    finally:
        temp.unlink(missing_ok=True)


def write_text(target: Path, text: str) -> None:
    """Write `text` to `target` atomically."""
    with atomic_path(target) as temp:
        temp.write_text(text)


def write_json(target: Path, data: dict) -> None:
    """Write `data` as indented JSON to `target` atomically."""
    write_text(target, json.dumps(data, indent=2) + "\n")


def prepare_run_dir(path: Path, overwrite: bool) -> Path:
    """Check that `path` can take a new run: refuse one holding a run unless `overwrite`, and check it is writable.

    Nothing is deleted here; `clear_run_files` does that once training is about to start.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"Output directory {str(path)!r} is a file.")
    if (path / CONFIG_FILE).exists() and not overwrite:
        raise RunDirError(
            f"Output directory {str(path)!r} already holds a run; ",
            python="pass overwrite=True to replace it (or resume=True to continue it).",
            cli="pass --overwrite to replace it (or --resume to continue it).",
        )
    probe = path if path.exists() else next(p for p in path.parents if p.exists())
    if not os.access(probe, os.W_OK | os.X_OK):
        raise RunDirError(f"Output directory {str(path)!r} is not writable.")
    return path


def remove_partial_files(path: Path) -> list[Path]:
    """Remove the temporary files `atomic_path` leaves behind when a process is killed mid-write
    (hidden `.NAME.XXXX.SUFFIX` files in the run directory and its plots/ and evaluation/); returns them."""
    partial = [
        file for folder in (path, path / "plots", path / "evaluation") if folder.is_dir()
        for file in folder.glob(".*") if file.is_file()
    ]
    for file in partial:
        file.unlink(missing_ok=True)
    return partial


def clear_run_files(path: Path) -> None:
    """Remove the artifacts of an earlier run in `path` (only kerastl's own files)."""
    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)
    folders = ["evaluation", "plots", "tensorboard", "checkpoints", "issues"]
    folders += [p.name for p in path.glob("evaluation_*") if p.is_dir()]  # evaluations of the run's other model files
    for folder in folders:
        shutil.rmtree(path / folder, ignore_errors=True)


def read_labels(path: Path) -> list[str]:
    """Class names from a run directory's labels.txt."""
    file = Path(path) / LABELS_FILE
    if not file.is_file():
        raise RunDirError(f"{file}: missing; is {str(path)!r} a kerastl run directory?")
    return file.read_text().splitlines()


def run_config(run_dir: Path) -> "Config":
    """The resolved config saved in a run directory.

    Raises:
        RunDirError: the directory holds no config.yaml, so it is not a complete kerastl run.
    """
    from kerastl.config import load_config

    file = Path(run_dir) / CONFIG_FILE
    if not Path(run_dir).exists():
        raise RunDirError(f"No model at {str(run_dir)!r}; expected a run directory or a .keras file.")
    if not file.is_file():
        raise RunDirError(f"{str(run_dir)!r} is not a complete kerastl run: it has no config.yaml.")
    return load_config(file)
