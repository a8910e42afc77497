"""Fitting one phase: the data it trains on (cached backbone features or images), its callbacks, `fit`.

Example:
    >>> rows, details = run_phase(model, cfg.phases[0], cfg, splits, RunState(run_dir, progress, verbose=0))
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np

from kerastl.config import Config, PhaseConfig
from kerastl.data.pipeline import EpochOrder, Splits, epoch_dataset, make_dataset
from kerastl.data.sources import ImageSource
from kerastl.errors import DataError
from kerastl.training.checkpoints import (
    backed_up_epochs,
    backup_dir,
    best_keeper,
    epoch_backup,
    history_recorder,
    repair_backup,
    rng_restorer,
)
from kerastl.training.distribute import Engine
from kerastl.training.runstate import RunState
from kerastl.training.validation import ValidationLogits, validation_callback
from kerastl.analysis.calibration import head_logits, logits_reader
from kerastl.models.classifier import feature_extractor, head_model
from kerastl.training.features import can_cache, extract_features, training_copies, training_features
from kerastl.training.phases import (
    batchnorm_statistics,
    check_batchnorm_policy,
    compile_classifier,
    lr_multipliers,
    make_optimizer,
    restart_lora,
    set_trainable,
)

CACHE = "cache"  # RUN_DIR/cache: images of a `data.cache: disk` run, and frozen features, while it trains
CACHED_HEAD_PATIENCE = 5  # epochs without a better validation loss before a cached head phase stops


def run_phase(
    model, phase: PhaseConfig, cfg: Config, splits: Splits, state: RunState, frozen: Optional[dict] = None
) -> tuple[list[dict], dict]:
    """Train `model` for one phase, continuing from its backup if one exists.

    Epochs are numbered on from the phases already in `state.progress`; each finished epoch is recorded
    there and backed up (Keras `BackupAndRestore`) in `state.run_dir` before the next begins. After fit, the
    phase's BatchNorm policy is checked against the statistics before and after. `state.callbacks` are added
    to the phase's own (e.g. experiment tracking); `frozen` are the frozen backbone's features of the splits,
    when already computed (a cached phase then uses them instead of computing them again). On a distributed
    `state.engine`, training and validation batches drop the remainder (every replica gets an equal share).

    Returns:
        The phase's history rows, and details for metrics.json: the BatchNorm check summary,
        whether the head trained on cached features and from how many augmented copies, the wall seconds of
        each epoch run in this process (empty for a phase of 0 epochs).

    Raises:
        KerastlError: the BatchNorm policy did not hold.
    """
    run_dir, progress, engine = state.run_dir, state.progress, state.engine
    backup = backup_dir(run_dir, phase.name)
    repair_backup(backup)
    progress.rows_for_resume(phase.name, backup)
    first_epoch = sum(1 for row in progress.rows if row["phase"] in progress.completed)
    details: dict = {}
    if phase.epochs > 0:
        trained_layers = set_trainable(model, phase)
        if phase.scope[0] == "lora":
            state.extractor = None  # LoRA changed the layers an extractor's predict was traced with
        inputs = phase_inputs(model, phase, cfg, splits, state, frozen)
        whole = engine.distributed
        batch_size, steps_per_epoch, validation_steps = batches_per_process(engine, splits, cfg.data.batch_size)
        optimizer = make_optimizer(phase, steps_per_epoch, lr_multipliers(model, phase.lr_decay) if phase.lr_decay else None)
        for compiled in {id(m): m for m in (model, inputs.fitted)}.values():  # the head model shares the variables
            compile_classifier(compiled, optimizer, phase.label_smoothing, cfg.compute.jit_compile, cfg.loss)
        last_epoch = first_epoch + phase.epochs
        # Start at the epoch the backup restores; at least one epoch, so the dataset is never empty.
        start = min(backed_up_epochs(backup) or first_epoch, last_epoch - 1)
        order = EpochOrder(start, last_epoch, cfg.seed, inputs.copies, cfg.data.sampling == "balanced", steps_per_epoch)
        train_data = epoch_dataset(inputs.train, batch_size, order, cfg.augment, whole, splits.train_targets)
        own_validation = own_validation_callback(model, phase, inputs, splits, state, cfg.data.batch_size)
        validation_data = None
        if inputs.validation is not None and own_validation is None:
            validation_data = make_dataset(inputs.validation, batch_size, drop_remainder=whole)
        statistics_before = batchnorm_statistics(model)
        timer = epoch_timer()
        callbacks = [
            *([own_validation] if own_validation else []),  # first: every other callback reads its scores
            timer,
            *phase_callbacks(model, phase, cfg, state, inputs.cached, inputs.validation is not None),
            *state.callbacks,
        ]
        inputs.fitted.fit(
            train_data,
            validation_data=validation_data,
            initial_epoch=first_epoch,
            epochs=last_epoch,
            steps_per_epoch=steps_per_epoch,
            validation_steps=validation_steps,
            class_weight=class_weight(splits) if cfg.data.class_weight == "balanced" else None,
            callbacks=callbacks,
            shuffle=False,  # the dataset shuffles itself, seeded
            verbose=state.verbose,
        )
        inputs.fitted._initial_epoch = None  # BackupAndRestore sets it and Keras never clears it; the next phase must not inherit it
        _note_weights_after_fit(state.validation_logits, callbacks, phase)
        details["batchnorm"] = check_batchnorm_policy(phase, statistics_before, batchnorm_statistics(model), trained_layers)
        details["trainable_params"] = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        details["cached_features"] = inputs.cached
        details["epoch_seconds"] = [round(seconds, 3) for seconds in timer.seconds]
        if inputs.cached and cfg.augment.preset != "none":
            details["augmented_copies"] = inputs.copies
    return [row for row in progress.rows if row["phase"] == phase.name], details


def batches_per_process(engine: Engine, splits: Splits, batch_size: int) -> tuple[int, int, Optional[int]]:
    """(the batch size this process feeds, training steps per epoch, validation steps or None for all).

    Processes that each read their own share of the data (`splits.shard`) feed batches of `batch_size / processes`
    (Keras joins them into the global batch) and must take equal numbers of steps: the fewest any process has. Else
    every process feeds the global batch, which Keras shares out, and an epoch is the whole training split (without
    its last, smaller batch when a batch is split among replicas).

    Raises:
        DataError: a process whose share holds less than one batch.
    """
    if splits.shard is None:
        count = len(splits.train)
        return batch_size, count // batch_size if engine.distributed else -(-count // batch_size), None
    engine.feed_own_data()
    local = batch_size // engine.processes
    steps = min(engine.gather(len(splits.train) // local))
    validation = None if splits.validation is None else min(engine.gather(len(splits.validation) // local))
    if steps == 0 or validation == 0:
        raise DataError(f"A process's share of the data holds fewer training or validation images than its batch of {local} "
                        f"(data.batch_size {batch_size} over {engine.processes} processes); use a smaller batch or fewer processes.")
    return local, steps, validation


@dataclass(frozen=True)
class PhaseInputs:
    """What a phase fits: the model `fit` runs on (the full model, or its head on cached features) and its data."""

    fitted: Any
    train: ImageSource
    validation: Optional[ImageSource]
    cached: bool  # the images are the frozen backbone's features, computed once
    copies: int  # augmented copies of the training images the features were computed from


def phase_inputs(model, phase: PhaseConfig, cfg: Config, splits: Splits, state: RunState, frozen: Optional[dict] = None) -> PhaseInputs:
    """The full model on the images, or, when the backbone is frozen, its head on features computed once
    (`frozen`, when given and no augmented copies are asked for)."""
    run_dir, engine, verbose = state.run_dir, state.engine, state.verbose
    if not can_cache(cfg, phase, engine):
        return PhaseInputs(model, splits.train, splits.validation, cached=False, copies=1)
    if frozen is not None and training_copies(cfg) == 1:
        validation = None if splits.validation is None else replace(splits.validation, images=frozen["validation"])
        return PhaseInputs(head_model(model), replace(splits.train, images=frozen["train"]), validation, cached=True, copies=1)
    features_dir = run_dir / CACHE if cfg.data.cache == "disk" else None
    extractor = state.extractor or feature_extractor(model)  # one predict traced for the training and validation images
    train = replace(splits.train, images=training_features(model, cfg, splits.train.images, verbose, features_dir, extractor))
    validation = splits.validation
    if validation is not None:
        validation = replace(
            validation, images=extract_features(model, validation.images, cfg.data.batch_size, verbose, features_dir, extractor)
        )
    return PhaseInputs(head_model(model), train, validation, cached=True, copies=training_copies(cfg))


def own_validation_callback(model, phase: PhaseConfig, inputs: PhaseInputs, splits: Splits, state: RunState, batch_size: int):
    """The phase's validation as a callback (`kerastl.training.validation`), on one device and one process for a model
    without regularization losses (which Keras adds to `val_loss`); None where Keras' own validation runs instead. The
    images go through `state.extractor` (built here when the run has none yet)."""
    if inputs.validation is None or state.engine.distributed or splits.shard is not None or model.losses:
        return None
    if inputs.cached:
        read_logits = head_logits(model)
    else:
        if state.extractor is None:
            state.extractor = feature_extractor(model)
        read_logits = logits_reader(model, batch_size, state.extractor)
    return validation_callback(model, read_logits, inputs.validation.images, inputs.validation, len(splits.class_names),
                               inputs.fitted.loss, state.validation_logits)


def _note_weights_after_fit(logits: ValidationLogits, callbacks: list, phase: PhaseConfig) -> None:
    """After `fit`, Keras may have changed the weights the last epoch's validation saw: `EarlyStopping` restores its best
    epoch's, and an optimizer with `use_ema` (`phase.ema`) sets the moving averages."""
    import keras

    if phase.ema is not None:
        logits.current = None
    for callback in callbacks:
        if isinstance(callback, keras.callbacks.EarlyStopping) and callback.restore_best_weights and callback.best_weights is not None:
            logits.after_restore(callback.best_epoch + 1)


def phase_callbacks(model, phase: PhaseConfig, cfg: Config, state: RunState, cached: bool, validated: bool) -> list:
    """History rows, the best weights of the run, the per-epoch backup and seed states, TensorBoard, early stopping."""
    import keras

    progress, run_dir, backup = state.progress, state.run_dir, backup_dir(state.run_dir, phase.name)
    callbacks = [history_recorder(progress, phase.name)]  # before the backup: see kerastl.training.checkpoints
    if cfg.results.keep == "best" and validated:
        callbacks.append(best_keeper(model, run_dir, cfg.results.monitor, state.validation_logits))  # before the backup too: an epoch redone after a kill is kept again
    callbacks += [
        epoch_backup(backup),
        rng_restorer(progress, backup),  # after the backup: it reads the epoch the backup restored
    ]
    if phase.scope[0] == "lora":  # after the backup: restoring zeroes the adapters
        callbacks.append(lora_restarter(model, cfg.seed))
    if cfg.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=str(run_dir / "tensorboard")))
    # A cached epoch costs well under a second: a head on cached features trains until validation stops improving.
    patience = phase.early_stopping or (CACHED_HEAD_PATIENCE if cached and validated else None)
    if patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor="val_loss" if validated else "loss", patience=patience, restore_best_weights=True)
        )
    return callbacks


def epoch_timer():
    """A Keras callback keeping the wall seconds of every epoch `fit` runs (`.seconds`), validation included."""
    import time

    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self.started)

    return EpochTimer()


def lora_restarter(model, seed: int):
    """A Keras callback drawing fresh LoRA adapters when a restored backup left them at zero (`restart_lora`)."""
    import keras

    class LoraRestarter(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            restart_lora(model.get_layer("backbone"), seed)

    return LoraRestarter()


def class_weight(splits: Splits) -> dict[int, float]:
    """Inverse class frequency weights of the training split (`data.class_weight: balanced`)."""
    from sklearn.utils.class_weight import compute_class_weight

    classes = np.arange(len(splits.class_names))
    weights = compute_class_weight("balanced", classes=classes, y=splits.train.labels)
    return {int(k): float(w) for k, w in zip(classes, weights)}
