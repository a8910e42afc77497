"""Experiment tracking with MLflow (`tracking.kind: mlflow`, the `tracking` extra).

One MLflow run per kerastl run: the resolved config as parameters (`data.source`, `phases.0.epochs`,
...), every finished epoch's metrics at step = epoch (both phases on one axis), the final metrics,
and the run's files as artifacts (config, history, metrics, report, model card, model, plots,
evaluation). The MLflow run id is kept in the run's progress, so a resumed run logs on into the same
MLflow run. By default the store is a local SQLite database `mlflow.db` beside the run directory
(MLflow's own file store is in maintenance mode), artifacts in `mlartifacts/` there.

Example:
    >>> tracker = start_tracking(cfg, run_dir, progress)     # None with tracking.kind: none
    >>> callbacks = [epoch_logger(tracker)]
    >>> tracker.finish(metrics, run_dir)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from kerastl.config import Config, config_to_dict
from kerastl.errors import ConfigError
from kerastl.rundir import RUN_FILES
from kerastl.run_metrics import RunMetrics
from kerastl.training.checkpoints import Progress

LOGGED_FOLDERS = ("plots", "evaluation", "issues")
NOT_LOGGED = ("heldout.npz", "calibration.npz")  # the run's data samples stay in the run directory


def check_tracking(cfg: Config) -> None:
    """Raise `ConfigError` when the config asks for MLflow and it is not installed (before anything is written)."""
    if cfg.tracking.kind == "mlflow":
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise ConfigError(
                "Config key 'tracking.kind' is mlflow, but MLflow is not installed: pip install 'kerastl[tracking]'."
            ) from None


def tracking_uri(cfg: Config, run_dir: Path) -> str:
    """`tracking.uri`, or the default local store: `sqlite:///<run directory's parent>/mlflow.db`."""
    return cfg.tracking.uri or f"sqlite:///{Path(run_dir).resolve().parent / 'mlflow.db'}"


@dataclass
class Tracker:
    """An MLflow run being logged to."""

    client: Any
    run_id: str

    def log_epoch(self, epoch: int, logs: dict) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        metrics = [Metric(key, float(value), stamp, epoch) for key, value in logs.items() if _is_number(value)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, metrics: RunMetrics, run_dir: Path) -> None:
        """Log the final numbers and the run's files, and end the MLflow run."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        final = {key: value for key, value in metrics.to_dict().items() if _is_number(value)}
        final.update({f"calibration_{key}": value for key, value in (metrics.calibration or {}).items() if _is_number(value)})
        if metrics.kept is not None:
            final["kept_epoch"] = metrics.kept["epoch"]
        self.client.log_batch(self.run_id, metrics=[Metric(f"final_{key}", float(value), stamp, 0) for key, value in final.items()])
        for name in RUN_FILES:
            if (run_dir / name).is_file() and name not in NOT_LOGGED:
                self.client.log_artifact(self.run_id, str(run_dir / name))
        for folder in LOGGED_FOLDERS:
            if (run_dir / folder).is_dir():
                self.client.log_artifacts(self.run_id, str(run_dir / folder), artifact_path=folder)
        self.client.set_terminated(self.run_id)


def start_tracking(cfg: Config, run_dir: Path, progress: Progress) -> Optional[Tracker]:
    """The MLflow run of this kerastl run: created (config logged as parameters) for a new run, found again
    from `progress.tracking` for a resumed one; None with `tracking.kind: none`."""
    if cfg.tracking.kind == "none":
        return None
    from mlflow.entities import Param
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(cfg, run_dir)
    client = MlflowClient(tracking_uri=uri)
    if progress.tracking is not None:
        return Tracker(client, progress.tracking["run_id"])
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    if experiment is None:
        artifacts = (Path(run_dir).resolve().parent / "mlartifacts").as_uri() if cfg.tracking.uri is None else None
        experiment_id = client.create_experiment(cfg.tracking.experiment, artifact_location=artifacts)
    else:
        experiment_id = experiment.experiment_id
    run = client.create_run(experiment_id, run_name=cfg.name, tags={"kerastl.run_dir": str(Path(run_dir).resolve())})
    params = [Param(key, str(value)[:6000]) for key, value in _flat(config_to_dict(cfg)).items()]
    for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per call
        client.log_batch(run.info.run_id, params=params[start : start + 100])
    progress.tracking = {"run_id": run.info.run_id, "uri": uri}
    progress.save()
    return Tracker(client, run.info.run_id)


def epoch_logger(tracker: Tracker):
    """A Keras callback logging each finished epoch's metrics (numbered across phases) to `tracker`."""
    import keras

    class EpochLogger(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            tracker.log_epoch(epoch + 1, logs or {})

    return EpochLogger()


def _flat(tree, prefix: str = "") -> dict:
    """`{"data": {"source": x}, "phases": [{"epochs": 1}]}` -> `{"data.source": x, "phases.0.epochs": 1}`."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list) and tree and all(isinstance(item, dict) for item in tree):
        items = enumerate(tree)
    else:
        return {prefix: tree}
    flat = {}
    for key, value in items:
        flat.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
