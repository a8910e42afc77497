"""Run the configured phases and write the run directory.

Example:
    >>> result = train("configs/quickstart.yaml", overrides=["phases.0.epochs=1"])
    >>> result.metrics["test_accuracy"], result.run_dir
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from kerastl.training.baselines import head_init, health_warning, prediction_health, probe_warning, start_head
from kerastl.training.checkpoints import (
    CHECKPOINTS,
    Progress,
    backed_up_epochs,
    backup_dir,
    finished_epochs,
    history_recorder,
    load_phase_weights,
    repair_backup,
    rng_restorer,
    save_phase_weights,
)
from kerastl.config import Config, PhaseConfig, config_to_dict, dump_config, load_config
from kerastl.errors import RunDirError
from kerastl.data.samples import save_run_samples
from kerastl.data.pipeline import Splits, load_splits, make_dataset
from kerastl.training.distribute import Engine, check_resume_point, process_run_dir, start_engine
from kerastl.training.features import can_cache, extract_features, head_model, training_copies, training_features
from kerastl.models.classifier import build_model, input_size, load_model
from kerastl.training.phases import (
    batchnorm_statistics,
    check_batchnorm_policy,
    compile_classifier,
    lr_multipliers,
    make_optimizer,
    set_trainable,
)
from kerastl.analysis.plots import plot_curves
from kerastl.training.pretrain import PRETRAINED_FILE, model_weights, pretrain_backbone, pretraining_needed, read_pretrain_data
from kerastl.analysis.report import write_report
from kerastl.rundir import atomic_path, clear_run_files, prepare_run_dir, remove_partial_files, write_json, write_text
from kerastl.training.strategies import plan_phases

CACHE = "cache"  # RUN_DIR/cache: images of a `data.cache: disk` run while it trains
CACHED_HEAD_PATIENCE = 5  # epochs without a better validation loss before a cached head phase stops


@dataclass
class TrainResult:
    """What `train` produced: the trained model, its per-epoch history, the metrics and where they were written."""

    model: Any
    history: Any
    metrics: dict
    run_dir: Path


def train(
    config: Config | str | Path | None,
    output_dir: Optional[str | Path] = None,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
    verbose: int | str = "auto",
    resume: bool = False,
) -> TrainResult:
    """Train a model as `config` says: optional pretraining, then each phase in turn, then test.

    Every finished epoch is checkpointed under `RUN_DIR/checkpoints/`, so a run killed at any moment
    continues with `resume=True` from its last finished epoch, in the right phase.

    Args:
        config: a `Config` or the path of a YAML config; with `resume`, None takes the run's own config.
        output_dir: the run directory; default `config.output_dir` or `runs/<name>`.
        overwrite: replace a run already in `output_dir`.
        overrides: `key.sub=value` strings applied to a config read from a path.
        verbose: Keras `fit` verbosity (0 silences progress bars).
        resume: continue the interrupted run in `output_dir`.

    Returns:
        A `TrainResult` with `.model`, `.history` (pandas DataFrame), `.metrics` and `.run_dir`.

    Raises:
        KerastlError: bad config, data or weights, a run directory that would be overwritten, or
            a resume whose config differs from the run's. Nothing is written before the data and
            model are known to be good.

    Example:
        >>> result = train("configs/quickstart.yaml", output_dir="runs/try", overwrite=True)
        >>> result = train(None, output_dir="runs/try", resume=True)   # after a crash
    """
    import pandas as pd

    if resume:
        run_dir = process_run_dir(Path(output_dir or ""))
        cfg = resumable_config(run_dir, config, overrides)
        remove_partial_files(run_dir)  # a kill mid-write leaves the temporary file of an atomic write
    else:
        cfg = config if isinstance(config, Config) else load_config(config, overrides)
        run_dir = Path(output_dir or cfg.output_dir or Path("runs") / cfg.name)
        run_dir = prepare_run_dir(process_run_dir(run_dir), overwrite)
    splits = _load_splits(cfg, run_dir, progress=verbose != 0)
    plan = plan_phases(cfg, splits.train.class_counts())

    import keras

    keras.utils.set_random_seed(cfg.seed)  # before the engine starts: every process of a multihost run starts alike
    if cfg.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()
    progress = Progress.load(run_dir) if resume else Progress(run_dir / CHECKPOINTS / "progress.json")
    pretrain_data = read_pretrain_data(cfg) if pretraining_needed(cfg, run_dir, progress.pretrain) else None
    if pretrain_data is not None:  # the run is written first, so a run killed while it pretrains resumes there
        _open_run(run_dir, cfg, splits, progress, resume)
        progress.pretrain = pretrain_backbone(
            cfg, run_dir / PRETRAINED_FILE, verbose, pretrain_data, backup=run_dir / CHECKPOINTS / "pretrain"
        )
        progress.save()
    engine = start_engine(cfg.compute.distribute, cfg.data.batch_size)
    if resume:  # every process of a multihost run must continue from the same epoch
        check_resume_point(engine, finished_epochs(run_dir, plan.phases, progress))
    with engine.scope():  # variables made here are mirrored on every replica; fit splits each batch among them
        model = build_model(
            cfg.model, len(splits.class_names), splits.train.image_shape, cfg.augment, cfg.seed,
            model_weights(cfg, run_dir), cfg.data.multi_label, cfg.compute.precision,
        )
    if pretrain_data is None:  # the weights fit: nothing was written before the input was known to be good
        _open_run(run_dir, cfg, splits, progress, resume)
    # What the frozen features are worth, and the head started from the probe (LP-FT). Several processes
    # each see a shard of every batch, and a multi-label head has no multinomial probe: neither applies.
    if _starts_fresh(run_dir, plan, progress) and engine.processes == 1 and not cfg.data.multi_label:
        with engine.scope():
            progress.baselines = start_head(model, cfg, splits, head_init(cfg) == "probe", verbose)
    progress.save()

    if progress.completed:
        load_phase_weights(model, run_dir, progress.completed[-1])
    for phase in plan.phases:
        if phase.name in progress.completed:
            continue
        started = time.perf_counter()
        with engine.scope():
            rows, details = run_phase(model, phase, cfg, splits, run_dir, progress, engine, verbose=verbose)
        progress.phases[phase.name] = {
            "epochs": len(rows), "seconds": round(time.perf_counter() - started, 2), "unfreeze": phase.unfreeze or "head",
            **details,
        }
        save_phase_weights(model, run_dir, phase.name)
        progress.completed.append(phase.name)
        progress.save()
    history = pd.DataFrame(progress.rows)
    if not model.compiled:  # resumed after its last phase: nothing was compiled in this process
        compile_classifier(model, keras.optimizers.Adam(), plan.phases[-1].label_smoothing, cfg.compute.jit_compile)
    with atomic_path(run_dir / "model.keras") as temp:
        model.save(temp)
    # A distributed model is tested as a single-device copy, which takes batches of any size.
    tested = load_model(run_dir / "model.keras") if engine.distributed else model
    metrics = _final_metrics(tested, cfg, splits, progress.phases, progress.baselines)
    metrics["strategy"] = {"preset": plan.preset, "reasons": list(plan.reasons)}
    metrics["replicas"] = engine.replicas
    metrics["processes"] = engine.processes
    if progress.pretrain is not None:
        metrics["pretrain"] = progress.pretrain
    if splits.train.skipped:
        metrics["skipped_files"] = list(splits.train.skipped)

    progress.write_history()  # without the rows a resume dropped
    write_json(run_dir / "metrics.json", metrics)
    plot_curves(history, run_dir / "plots" / "curves.png")
    write_report(run_dir)
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
    shutil.rmtree(run_dir / CACHE, ignore_errors=True)
    return TrainResult(model, history, metrics, run_dir)


def _open_run(run_dir: Path, cfg: Config, splits: Splits, progress: Progress, resume: bool) -> None:
    """Write what makes `run_dir` a resumable run: config.yaml, labels.txt and the progress file."""
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        clear_run_files(run_dir)
        write_text(run_dir / "config.yaml", dump_config(cfg))
        write_text(run_dir / "labels.txt", "\n".join(splits.class_names) + "\n")
        split = "test" if splits.test is not None else "validation"
        save_run_samples(run_dir, splits.test or splits.validation, split, splits.train, cfg.seed)
    progress.save()


def _starts_fresh(run_dir: Path, plan, progress: Progress) -> bool:
    """Whether no epoch has been trained yet (a new run, or one killed before its first epoch's backup)."""
    return not progress.completed and backed_up_epochs(backup_dir(run_dir, plan.phases[0].name)) is None


def _load_splits(cfg: Config, run_dir: Path, progress: bool) -> Splits:
    """The data splits; with `data.cache: disk` their images are files under RUN_DIR/cache, removed
    again (with a run directory made only for them) if the data turn out bad."""
    cache_dir = run_dir / CACHE
    existed = run_dir.exists()
    try:
        return load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model), progress=progress, cache_dir=cache_dir)
    except BaseException:
        if cfg.data.cache == "disk":
            shutil.rmtree(cache_dir, ignore_errors=True)
            if not existed:
                shutil.rmtree(run_dir, ignore_errors=True)
        raise


def resumable_config(run_dir: Path, config: Config | str | Path | None, overrides: Sequence[str]) -> Config:
    """The config of an interrupted run; a given config must equal it."""
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        raise RunDirError(f"Cannot resume {str(run_dir)!r}: it holds no kerastl run (no config.yaml).")
    if (run_dir / "model.keras").is_file() and not (run_dir / CHECKPOINTS).is_dir():
        raise RunDirError(f"Cannot resume {str(run_dir)!r}: the run is complete.")
    saved = load_config(saved_file)
    if config is None and not overrides:
        return saved
    given = config if isinstance(config, Config) else load_config(config if config is not None else saved_file, overrides)
    differences = _differences(config_to_dict(saved), config_to_dict(given))
    if differences:
        raise RunDirError(
            f"Cannot resume {str(run_dir)!r}: the config no longer matches the checkpoint at "
            + "; ".join(differences[:3]) + ". Resume without --config, or start a new run."
        )
    return saved


def _differences(saved, given, where: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(given, dict):
        return [d for key in saved for d in _differences(saved[key], given.get(key), f"{where}.{key}" if where else key)]
    if isinstance(saved, list) and isinstance(given, list) and len(saved) == len(given):
        return [d for i, (a, b) in enumerate(zip(saved, given)) for d in _differences(a, b, f"{where}.{i}")]
    return [] if saved == given else [f"{where} ({saved!r} in the run, {given!r} now)"]


def run_phase(
    model, phase: PhaseConfig, cfg: Config, splits: Splits, run_dir: Path, progress: Progress, engine: Engine, verbose
) -> tuple[list[dict], dict]:
    """Train `model` for one phase, continuing from its backup if one exists.

    Epochs are numbered on from the phases already in `progress`; each finished epoch is recorded
    in `progress` and backed up (Keras `BackupAndRestore`) before the next begins. After fit, the
    phase's BatchNorm policy is checked against the statistics before and after. On a distributed
    `engine`, training and validation batches drop the remainder (every replica gets an equal share).

    Returns:
        The phase's history rows, and details for metrics.json: the BatchNorm check summary,
        whether the head trained on cached features and from how many augmented copies (empty for
        a phase of 0 epochs).

    Raises:
        KerastlError: the BatchNorm policy did not hold.
    """
    import keras

    backup = backup_dir(run_dir, phase.name)
    repair_backup(backup)
    progress.rows_for_resume(phase.name, backup)
    first_epoch = sum(1 for row in progress.rows if row["phase"] in progress.completed)
    details: dict = {}
    if phase.epochs > 0:
        trained_layers = set_trainable(model, phase)
        batch_size = cfg.data.batch_size
        whole = engine.distributed
        steps_per_epoch = len(splits.train) // batch_size if whole else -(-len(splits.train) // batch_size)
        multipliers = lr_multipliers(model, phase.lr_decay) if phase.lr_decay else None
        train_source, validation_source, fitted = splits.train, splits.validation, model
        copies = 1
        if can_cache(cfg, phase, engine):  # the frozen backbone runs once; the head trains on its features
            fitted, copies = head_model(model), training_copies(cfg)
            features_dir = run_dir / CACHE if cfg.data.cache == "disk" else None
            train_source = replace(train_source, images=training_features(model, cfg, train_source.images, verbose, features_dir))
            if validation_source is not None:
                validation_source = replace(validation_source, images=extract_features(
                    model, validation_source.images, batch_size, verbose, features_dir
                ))
        optimizer = make_optimizer(phase, steps_per_epoch, multipliers)
        compile_classifier(model, optimizer, phase.label_smoothing, cfg.compute.jit_compile)
        if fitted is not model:  # the head model shares the full model's variables, and so its optimizer
            compile_classifier(fitted, optimizer, phase.label_smoothing, cfg.compute.jit_compile)
        last_epoch = first_epoch + phase.epochs
        # Start at the epoch the backup restores; at least one epoch, so the dataset is never empty.
        start = min(backed_up_epochs(backup) or first_epoch, last_epoch - 1)
        train_data = make_dataset(
            train_source, batch_size, shuffle=True, seed=cfg.seed, augment=cfg.augment, epoch_range=(start, last_epoch),
            drop_remainder=whole, copies=copies,
        )
        validation_data = None if validation_source is None else make_dataset(validation_source, batch_size, drop_remainder=whole)
        callbacks = [
            history_recorder(progress, phase.name),  # before the backup: see kerastl.training.checkpoints
            keras.callbacks.BackupAndRestore(str(backup), double_checkpoint=True),
            rng_restorer(progress, backup),  # after the backup: it reads the epoch the backup restored
        ]
        if cfg.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
        # A cached epoch costs well under a second: a head on cached features trains until validation stops improving.
        patience = phase.early_stopping or (CACHED_HEAD_PATIENCE if fitted is not model and validation_data else None)
        if patience:
            callbacks.append(
                keras.callbacks.EarlyStopping(
                    monitor="val_loss" if validation_data is not None else "loss", patience=patience, restore_best_weights=True,
                )
            )
        statistics_before = batchnorm_statistics(model)
        fitted.fit(
            train_data,
            validation_data=validation_data,
            initial_epoch=first_epoch,
            epochs=last_epoch,
            steps_per_epoch=steps_per_epoch,
            class_weight=_class_weight(splits) if cfg.data.class_weight == "balanced" else None,
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=verbose,
        )
        fitted._initial_epoch = None  # BackupAndRestore sets it and Keras never clears it; the next phase must not inherit it
        details["batchnorm"] = check_batchnorm_policy(phase, statistics_before, batchnorm_statistics(model), trained_layers)
        details["cached_features"] = fitted is not model
        if fitted is not model and cfg.augment.preset != "none":
            details["augmented_copies"] = copies
    return [row for row in progress.rows if row["phase"] == phase.name], details


def _class_weight(splits: Splits) -> dict[int, float]:
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.arange(len(splits.class_names))
    weights = compute_class_weight("balanced", classes=classes, y=splits.train.labels)
    return {int(k): float(w) for k, w in zip(classes, weights)}


def _final_metrics(model, cfg: Config, splits: Splits, phase_metrics: dict, baselines: Optional[dict]) -> dict:
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
    checked = [(name, source) for name, source in (("test", splits.test), ("validation", splits.validation)) if source is not None]
    if checked and not cfg.data.multi_label:
        name, source = checked[0]
        metrics["health"] = {"split": name, **prediction_health(model, source, cfg.data.batch_size)}
    if baselines is not None:
        metrics["baselines"] = baselines
    metrics["warnings"] = [w for w in (health_warning(metrics.get("health")), probe_warning(metrics)) if w]
    return metrics
