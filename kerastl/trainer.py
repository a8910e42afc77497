"""Run the configured phases and write the run directory.

Example:
    >>> result = train("configs/quickstart.yaml", overrides=["phases.0.epochs=1"])
    >>> result.metrics["test_accuracy"], result.run_dir
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from kerastl.config import Config, PhaseConfig, dump_config, load_config
from kerastl.data.pipeline import Splits, load_splits, make_dataset
from kerastl.model import build_model, input_size
from kerastl.phases import compile_classifier, make_optimizer, set_trainable
from kerastl.plots import plot_curves
from kerastl.report import write_report
from kerastl.rundir import atomic_path, clear_run_files, prepare_run_dir, write_json, write_text


@dataclass
class TrainResult:
    """What `train` produced: the trained model, its per-epoch history, the metrics and where they were written."""

    model: Any
    history: Any
    metrics: dict
    run_dir: Path


def train(
    config: Config | str | Path,
    output_dir: Optional[str | Path] = None,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
    verbose: int | str = "auto",
) -> TrainResult:
    """Train a model as `config` says: optional pretraining, then each phase in turn, then test.

    Args:
        config: a `Config` or the path of a YAML config.
        output_dir: the run directory; default `config.output_dir` or `runs/<name>`.
        overwrite: replace a run already in `output_dir`.
        overrides: `key.sub=value` strings applied to a config read from a path.
        verbose: Keras `fit` verbosity (0 silences progress bars).

    Returns:
        A `TrainResult` with `.model`, `.history` (pandas DataFrame), `.metrics` and `.run_dir`.

    Raises:
        KerastlError: bad config, data or weights, or a run directory that would be overwritten.
            Nothing is written before the data and model are known to be good.

    Example:
        >>> result = train("configs/quickstart.yaml", output_dir="runs/try", overwrite=True)
    """
    import pandas as pd

    cfg = config if isinstance(config, Config) else load_config(config, overrides)
    run_dir = prepare_run_dir(Path(output_dir or cfg.output_dir or Path("runs") / cfg.name), overwrite)
    splits = load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model))

    import keras  # after the cheap checks: a bad config or data file fails without loading TensorFlow

    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    weights, pretrain_metrics = cfg.model.weights, None
    if weights == "pretrain":
        from kerastl.pretrain import pretrain_backbone

        weights = str(run_dir / "pretrained_backbone.weights.h5")
        pretrain_metrics = pretrain_backbone(cfg, weights, verbose=verbose)
    model = build_model(cfg.model, len(splits.class_names), splits.train.image_shape, cfg.augment, cfg.seed, weights)

    run_dir.mkdir(parents=True, exist_ok=True)
    clear_run_files(run_dir)
    write_text(run_dir / "config.yaml", dump_config(cfg))
    write_text(run_dir / "labels.txt", "\n".join(splits.class_names) + "\n")

    history_rows, phase_metrics = [], {}
    for phase in cfg.phases:
        started = time.perf_counter()
        rows = run_phase(model, phase, cfg, splits, first_epoch=len(history_rows), run_dir=run_dir, verbose=verbose)
        history_rows += rows
        phase_metrics[phase.name] = {"epochs": len(rows), "seconds": round(time.perf_counter() - started, 2)}
    history = pd.DataFrame(history_rows)
    metrics = _final_metrics(model, cfg, splits, phase_metrics)
    if pretrain_metrics is not None:
        metrics["pretrain"] = pretrain_metrics
    if splits.train.skipped:
        metrics["skipped_files"] = list(splits.train.skipped)

    with atomic_path(run_dir / "history.csv") as temp:
        history.to_csv(temp, index=False)
    with atomic_path(run_dir / "model.keras") as temp:
        model.save(temp)
    write_json(run_dir / "metrics.json", metrics)
    plot_curves(history, run_dir / "plots" / "curves.png")
    write_report(run_dir)
    return TrainResult(model, history, metrics, run_dir)


def run_phase(model, phase: PhaseConfig, cfg: Config, splits: Splits, first_epoch: int, run_dir: Path, verbose) -> list[dict]:
    """Train `model` for one phase (freeze policy, fresh optimizer, callbacks); returns one history row per epoch."""
    import keras

    if phase.epochs == 0:
        return []
    set_trainable(model, phase)
    batch_size = cfg.data.batch_size
    steps_per_epoch = -(-len(splits.train) // batch_size)
    compile_classifier(model, make_optimizer(phase, steps_per_epoch))
    train_data = make_dataset(splits.train, batch_size, shuffle=True, seed=cfg.seed + first_epoch, augment=cfg.augment)
    validation_data = make_dataset(splits.validation, batch_size) if splits.validation is not None else None
    callbacks = [keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard"))] if cfg.tensorboard else []
    if phase.early_stopping:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss" if validation_data is not None else "loss",
                patience=phase.early_stopping,
                restore_best_weights=True,
            )
        )
    fitted = model.fit(
        train_data,
        validation_data=validation_data,
        initial_epoch=first_epoch,
        epochs=first_epoch + phase.epochs,
        class_weight=_class_weight(splits) if cfg.data.class_weight == "balanced" else None,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles itself, seeded
        verbose=verbose,
    )
    return [
        {"epoch": epoch + 1, "phase": phase.name, **{key: float(values[i]) for key, values in fitted.history.items()}}
        for i, epoch in enumerate(fitted.epoch)
    ]


def _class_weight(splits: Splits) -> dict[int, float]:
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.arange(len(splits.class_names))
    weights = compute_class_weight("balanced", classes=classes, y=splits.train.labels)
    return {int(k): float(w) for k, w in zip(classes, weights)}


def _final_metrics(model, cfg: Config, splits: Splits, phase_metrics: dict) -> dict:
    metrics: dict = {
        "name": cfg.name,
        "backbone": cfg.model.backbone,
        "num_classes": len(splits.class_names),
        "class_names": list(splits.class_names),
        "num_images": {"train": len(splits.train)},
        "phases": phase_metrics,
    }
    for split_name, source in (("val", splits.validation), ("test", splits.test)):
        if source is None:
            continue
        loss, accuracy = model.evaluate(make_dataset(source, cfg.data.batch_size), verbose=0)
        metrics[f"{split_name}_loss"] = round(float(loss), 6)
        metrics[f"{split_name}_accuracy"] = round(float(accuracy), 6)
        metrics["num_images"]["validation" if split_name == "val" else "test"] = len(source)
    return metrics
