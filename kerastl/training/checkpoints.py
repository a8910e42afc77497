"""Kill-safe training state under `RUN_DIR/checkpoints/`, so `kerastl train --resume` can continue.

- `progress.json`: the phases completed and one history row per finished epoch, rewritten
  atomically at every epoch end;
- `phase_<name>/`: Keras `BackupAndRestore` files of the phase in progress (model and optimizer
  state, including the learning-rate schedule's step, and the epoch), written at the end of every epoch
  but the phase's last (`epoch_backup`);
- `after_<name>.npz`: the model weights when a phase ended (NumPy arrays, no pickle);
- `best/`: the weights of the best epoch so far by `results.monitor` (`epoch_<N>.npz`) and
  `best.json` naming it, written after the weights (`best_keeper`).

A history row is written before the backup of the same epoch, so a kill between the two leaves
one row too many, which resuming drops (`Progress.rows_for_resume`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kerastl.rundir import HISTORY_FILE, atomic_path, write_json

CHECKPOINTS = "checkpoints"


@dataclass
class Progress:
    """What is finished: phase names, and history rows of every finished epoch."""

    path: Path
    completed: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    phases: dict = field(default_factory=dict)
    pretrain: dict | None = None
    rng: dict = field(default_factory=dict)
    baselines: dict | None = None
    tracking: dict | None = None  # the MLflow run logged to (kerastl.training.tracking)
    leakage: dict | None = None  # held-out images duplicating training images (kerastl.analysis.duplicates)

    @classmethod
    def load(cls, run_dir: Path) -> "Progress":
        path = Path(run_dir) / CHECKPOINTS / "progress.json"
        if not path.is_file():
            return cls(path)
        saved = json.loads(path.read_text())
        return cls(
            path, saved["completed"], saved["rows"], saved["phases"], saved["pretrain"], saved["rng"], saved.get("baselines"),
            saved.get("tracking"), saved.get("leakage"),
        )

    def save(self) -> None:
        fields = {"completed": self.completed, "rows": self.rows, "phases": self.phases, "pretrain": self.pretrain}
        write_json(self.path, {**fields, "rng": self.rng, "baselines": self.baselines, "tracking": self.tracking, "leakage": self.leakage})

    def write_history(self) -> None:
        """Write `RUN_DIR/history.csv`, one row per finished epoch, as Keras' `CSVLogger` grows its file."""
        import pandas as pd

        with atomic_path(self.path.parent.parent / HISTORY_FILE) as temp:
            pd.DataFrame(self.rows).to_csv(temp, index=False)

    def rows_for_resume(self, phase: str, backup_dir: Path) -> None:
        """Drop rows of `phase` for epochs its backup does not hold (a kill between row and backup)."""
        done = backed_up_epochs(backup_dir)
        self.rows = [
            row for row in self.rows
            if row["phase"] != phase or (done is not None and row["epoch"] <= done)
        ]


def finished_epochs(run_dir: Path, phases, progress: Progress) -> int:
    """Epochs the run has finished, as resuming will restore them: those of the completed phases,
    or what the backup of the phase in progress holds."""
    done = sum(1 for row in progress.rows if row["phase"] in progress.completed)
    for phase in phases:
        if phase.name not in progress.completed:
            backup = backup_dir(run_dir, phase.name)
            repair_backup(backup)
            return backed_up_epochs(backup) or done
    return done


def backup_dir(run_dir: Path, phase: str) -> Path:
    return Path(run_dir) / CHECKPOINTS / f"phase_{phase}"


def backed_up_epochs(backup: Path) -> int | None:
    """Epochs finished (counted over all phases) according to a phase backup, or None without one."""
    metadata = backup / "training_metadata.json"
    return json.loads(metadata.read_text())["epoch"] if metadata.is_file() else None


def repair_backup(backup: Path) -> None:
    """Leave a phase backup that Keras can load, or none.

    `BackupAndRestore` writes the weights, then the epoch metadata, without atomic renames, and
    keeps the previous pair as `.bkp` copies. A kill during the first save leaves no metadata (the
    backup holds nothing finished: removed); a kill while the metadata is written leaves it
    unreadable (the previous pair is restored, or the backup removed when there is none). A
    truncated weights file beside readable metadata Keras itself replaces with its `.bkp` copy.
    """
    metadata, weights = backup / "training_metadata.json", backup / "latest.weights.h5"
    if not backup.is_dir():
        return
    try:
        json.loads(metadata.read_text())
        return
    except (OSError, ValueError):
        pass
    previous_metadata, previous_weights = Path(f"{metadata}.bkp"), Path(f"{weights}.bkp")
    if metadata.exists() and previous_metadata.is_file() and previous_weights.is_file():
        try:
            json.loads(previous_metadata.read_text())
            shutil.copyfile(previous_weights, weights)
            shutil.copyfile(previous_metadata, metadata)
            return
        except (OSError, ValueError):
            pass
    shutil.rmtree(backup)


def save_phase_weights(model, run_dir: Path, phase: str) -> None:
    save_weights(model, Path(run_dir) / CHECKPOINTS / f"after_{phase}.npz")


def load_phase_weights(model, run_dir: Path, phase: str) -> None:
    load_weights(model, Path(run_dir) / CHECKPOINTS / f"after_{phase}.npz")


def save_weights(model, file: Path) -> None:
    """The model's weights as NumPy arrays (no pickle), written atomically."""
    with atomic_path(file) as temp:
        with open(temp, "wb") as handle:
            np.savez(handle, *model.get_weights())


def load_weights(model, file: Path) -> None:
    """Weights saved by `save_weights` (see `set_saved_weights`)."""
    set_saved_weights(model, read_weights(file))


def read_weights(file: Path) -> list[np.ndarray]:
    """The arrays `save_weights` wrote, in the order of the model's weights."""
    with np.load(file, allow_pickle=False) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def set_saved_weights(model, arrays: list[np.ndarray]) -> None:
    """Give `model` the weights `read_weights` read; saved before LoRA adapters were added (`unfreeze: lora:R`),
    they go to every weight but the adapters, and the adapters are set to compute nothing (B = 0)."""
    if len(arrays) == len(model.weights):
        model.set_weights(arrays)
        return
    for variable, array in zip([v for v in model.weights if "lora_kernel" not in v.path], arrays, strict=True):
        variable.assign(array)
    for variable in model.weights:
        if "lora_kernel_b" in variable.path:
            variable.assign(np.zeros(variable.shape, variable.dtype))


def best_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINTS / "best"


def read_best(run_dir: Path) -> dict | None:
    """`{"epoch", "monitor", "val_accuracy", "val_loss", "file"}` of the best epoch kept so far, or None."""
    file = best_dir(run_dir) / "best.json"
    return json.loads(file.read_text()) if file.is_file() else None


def is_better(logs: dict, best: dict | None, monitor: str) -> bool:
    """Whether an epoch's validation `logs` beat the `best` so far: `val_accuracy` higher (equal: `val_loss`
    lower), or `val_loss` lower.

    Example:
        >>> is_better({"val_accuracy": 0.9, "val_loss": 0.4}, {"val_accuracy": 0.9, "val_loss": 0.3}, "val_accuracy")
        False
    """
    if best is None:
        return True
    loss_lower = logs["val_loss"] < best["val_loss"]
    if monitor == "val_loss":
        return loss_lower
    accuracy, best_accuracy = logs["val_accuracy"], best.get("val_accuracy", -1.0)
    return accuracy > best_accuracy or (accuracy == best_accuracy and loss_lower)


def best_keeper(model, run_dir: Path, monitor: str = "val_accuracy", logits=None):
    """A Keras callback keeping the weights of `model` (the full model, also when `fit` trains its head
    on cached features) from the best epoch of the whole run, every phase, by `monitor` (`is_better`);
    with `logits` (a `kerastl.training.validation.ValidationLogits`), the epoch's validation logits as `logits.best`."""
    import keras

    folder = best_dir(run_dir)

    class BestKeeper(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            if "val_loss" not in logs or not is_better(logs, read_best(run_dir), monitor):
                return
            name = f"epoch_{epoch + 1}.npz"
            save_weights(model, folder / name)
            scores = {key: float(logs[key]) for key in ("val_accuracy", "val_loss")}
            write_json(folder / "best.json", {"epoch": epoch + 1, "monitor": monitor, **scores, "file": name})
            if logits is not None:
                logits.best = logits.current if logits.current is not None and logits.current[0] == epoch + 1 else None
            for old in folder.glob("epoch_*.npz"):
                if old.name != name:
                    old.unlink()

    return BestKeeper()


def epoch_backup(backup: Path):
    """Keras `BackupAndRestore` into `backup` (double checkpoint), saving at the end of every epoch of a `fit` but its
    last: at the end of `fit` Keras deletes the backup, so the last one would be removed unread. A kill after
    the last epoch resumes from the epoch before it, as a kill before its backup would; what the phase ended
    with is kept by `save_phase_weights`."""
    import keras

    class EpochBackup(keras.callbacks.BackupAndRestore):
        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 < self.params["epochs"]:
                super().on_epoch_end(epoch, logs)

    return EpochBackup(str(backup), double_checkpoint=True)


def seed_states(model) -> list:
    """The model's random-seed state variables (dropout, augmentation): in `variables`, not in `weights`,
    so `BackupAndRestore` does not keep them."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def history_recorder(progress: Progress, phase: str):
    """A Keras callback appending each finished epoch's logs (and seed states) to `progress`, saving it
    and rewriting history.csv."""
    import keras

    class HistoryRecorder(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            progress.rows.append({"epoch": epoch + 1, "phase": phase, **{k: float(v) for k, v in (logs or {}).items()}})
            progress.rng[str(epoch + 1)] = [np.asarray(v.numpy()).tolist() for v in seed_states(self.model)]
            progress.save()
            progress.write_history()  # a user watching a long run, or finding a killed one, sees the epochs done

    return HistoryRecorder()


def rng_restorer(progress: Progress, backup: Path):
    """A Keras callback that, after `BackupAndRestore` restored epoch N, restores the seed states of epoch N."""
    import keras

    class RngRestorer(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            states = progress.rng.get(str(backed_up_epochs(backup)))
            if states is not None:
                for variable, value in zip(seed_states(self.model), states, strict=True):
                    variable.assign(np.asarray(value, dtype=variable.dtype))

    return RngRestorer()
