"""Finishing a run: the weights kept (best or last), calibration, the final model, its metrics on the
held-out splits, the evaluation folder, history, plots, report and model card.

Example:
    >>> metrics = finish_run(model, cfg, splits, plan, state)
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from kerastl.analysis.duplicates import leakage_warning
from kerastl.analysis.calibration import calibrate, calibrate_logits, head_logits, model_logits, temperature
from kerastl.analysis.evaluation import write_evaluation
from kerastl.analysis.modelcard import write_model_card
from kerastl.analysis.drawing import PictureProcess
from kerastl.analysis.report import write_report
from kerastl.config import Config
from kerastl.data.pipeline import Splits, make_dataset
from kerastl.models.classifier import feature_extractor, label_kind, load_model
from kerastl.models.saving import save_keras_file
from kerastl.rundir import LAST_MODEL_FILE, METRICS_FILE, MODEL_FILE, write_json
from kerastl.run_metrics import RunMetrics
from kerastl.training.baselines import health_warning, prediction_health, probe_warning
from kerastl.training.checkpoints import CHECKPOINTS, Progress, best_dir, read_best, read_weights, set_saved_weights
from kerastl.training.distribute import Engine
from kerastl.training.fitting import CACHE
from kerastl.training.phases import compile_classifier
from kerastl.training.runstate import RunState
from kerastl.training.strategies import Plan
from kerastl.training.validation import loss_and_accuracy


def finish_run(
    model, cfg: Config, splits: Splits, plan: Plan, state: RunState, draw: Optional[PictureProcess] = None
) -> RunMetrics:
    """Keep the best weights (`results.keep`), calibrate (`results.calibration`), save `model.keras`
    (and `model_last.keras`), measure and write `metrics.json`, `evaluation/`, `history.csv`, the curves,
    the report and the model card, then remove the checkpoints and the disk cache; returns the metrics.
    Without `state.write_files` the model is kept and calibrated the same way and measured, and nothing is written.

    `draw`: the run's `PictureProcess` (`kerastl.analysis.drawing`; None without `state.write_files`), started with the
    run so that the child has imported matplotlib when the pictures come; the caller stops it if this fails."""
    run_dir, progress, engine, write_files = state.run_dir, state.progress, state.engine, state.write_files
    import keras

    if not model.compiled:  # resumed after its last phase: nothing was compiled in this process
        compile_classifier(model, keras.optimizers.Adam(), plan.phases[-1].label_smoothing, cfg.compute.jit_compile, cfg.loss)
    # A child process draws the curves and the evaluation pictures while the held-out splits are predicted and the
    # models saved (kerastl.analysis.drawing).
    if write_files:
        draw("plot_curves", history=progress.rows, target=run_dir / "plots" / "curves.png")
    # A distributed model is tested as a single-device copy, which takes batches of any size; one device predicts
    # the held-out splits once, for calibration and every measure.
    measuring = _Measuring.of(model, splits, state)
    kept, calibration, predictions, last_weights = _keep_and_calibrate(model, cfg, splits, state, measuring)
    evaluates = write_files and cfg.results.evaluation
    if predictions is not None and evaluates:  # drawn while the models are saved
        _evaluate_held_out(temperature(model), predictions, run_dir, splits, draw)
    if write_files:
        save_keras_file(model, run_dir / MODEL_FILE)
    tested = load_model(run_dir / MODEL_FILE) if engine.distributed else model
    if predictions is None:
        predictions = predict_splits(tested, cfg, splits)
        if evaluates:
            _evaluate_held_out(temperature(tested), predictions, run_dir, splits, draw)
    if last_weights is not None:
        _save_last_model(model, last_weights, cfg, splits, state, measuring)
        kept["also_kept"] = LAST_MODEL_FILE
    metrics = final_metrics(predictions, model.loss, cfg, splits, progress.phases, progress.baselines, progress.leakage)
    metrics.kept = kept
    _add_run_facts(metrics, plan, progress, engine, splits, calibration)
    for stage in state.stages:
        stage.on_metrics(metrics, tested, splits, run_dir)
    if write_files:
        progress.write_history()  # without the rows a resume dropped
        write_json(run_dir / METRICS_FILE, metrics.to_dict())
        draw.finish()  # the pictures are on disk before the report lists them; a failure to draw them fails the run
        write_report(run_dir)
        write_model_card(run_dir)
    shutil.rmtree(run_dir / CHECKPOINTS, ignore_errors=True)
    shutil.rmtree(run_dir / CACHE, ignore_errors=True)
    return metrics


def _add_run_facts(
    metrics: RunMetrics, plan: Plan, progress: Progress, engine: Engine, splits: Splits, calibration: Optional[dict]
) -> None:
    """Say in `metrics` how the run went: strategy, devices, pretraining, calibration, skipped files, pixel conversions."""
    metrics.strategy = {"preset": plan.preset, "reasons": list(plan.reasons)}
    metrics.replicas, metrics.processes = engine.replicas, engine.processes
    metrics.pretrain, metrics.calibration = progress.pretrain, calibration
    metrics.skipped_files = list(splits.train.skipped) or None
    metrics.pixel_conversions = list(splits.conversions()) or None
    if splits.shard is not None:  # this process read only its share of the files
        tables = sorted({str(i).split(": row ")[0] for i in splits.train.image_ids() if ": row " in str(i)})
        metrics.data_shard = {"process": splits.shard[0], "processes": splits.shard[1], "train_images": len(splits.train),
                              "table_files": tables or None}


@dataclass(frozen=True)
class _Measuring:
    """How a run's final models are measured. One device: the held-out logits of every weights saved come through
    `extractor`, one feature extractor (its predict traced once: the run's own, traced for the frozen features,
    when it still holds the model's layers); distributed (`extractor` None): as a single-device copy, with
    `average` when each process holds its own validation share."""

    extractor: Any
    average: Optional[Callable]

    @classmethod
    def of(cls, model, splits: Splits, state: RunState) -> "_Measuring":
        extractor = None if state.engine.distributed else state.extractor or feature_extractor(model)
        return cls(extractor, state.engine.average if splits.shard is not None else None)


def _keep_and_calibrate(
    model, cfg: Config, splits: Splits, state: RunState, measuring: _Measuring
) -> tuple[dict, Optional[dict], Optional[dict], Optional[list]]:
    """Give `model` the weights `results.keep` asks for and calibrate it on the validation split.

    Returns:
        What was kept, the calibration, on one device the model's probabilities on the held-out splits (see
        `_calibrate`; else None), and the last weights when the best ones were kept instead and
        `model_last.keras` is to be written (else None).
    """
    run_dir, progress, write_files = state.run_dir, state.progress, state.write_files
    last_epoch = progress.rows[-1]["epoch"] if progress.rows else 0
    best = read_best(run_dir) if cfg.results.keep == "best" else None
    kept = {"model": "last", "epoch": last_epoch, "last_epoch": last_epoch}
    last_weights, validated = None, ("current", last_epoch)  # the validation logits these weights have, and their epoch
    if best is not None:
        scores = {key: best[key] for key in ("val_accuracy", "val_loss") if key in best}
        kept = {"model": "best", "epoch": best["epoch"], "last_epoch": last_epoch, "monitor": best.get("monitor", "val_loss"), **scores}
        best_weights, current = read_weights(best_dir(run_dir) / best["file"]), model.get_weights()
        if len(best_weights) != len(current) or any(not np.array_equal(a, b) for a, b in zip(best_weights, current)):
            set_saved_weights(model, best_weights)
            last_weights = current if write_files else None
            validated = ("best", best["epoch"])
    known = _known_logits(model, state, measuring, *validated)
    return (kept, *_calibrate(model, cfg, splits, measuring, measuring.extractor is not None, known), last_weights)


def _known_logits(model, state: RunState, measuring: _Measuring, which: str, epoch: int) -> dict[str, np.ndarray]:
    """The held-out logits of the weights `model` holds, those of `epoch`, that the run computed already: the
    validation logits validation kept (`which`: "current" or "best", see `ValidationLogits`) and, on one device, for an
    epoch whose backbone is still the frozen one (a head phase's), the head's on the held-out splits' frozen features
    (`RunState.frozen_held_out`): the backbone does not run over them again."""
    known = {}
    validation = state.validation_logits.of_epoch(which, epoch)
    if validation is not None:
        known["validation"] = validation
    frozen = state.frozen_held_out.of_epoch(epoch) if state.frozen_held_out and measuring.extractor is not None else {}
    if any(name not in known for name in frozen):
        head = head_logits(model)
        known.update({name: head(features) for name, features in frozen.items() if name not in known})
    return known


def _save_last_model(model, last_weights: list, cfg: Config, splits: Splits, state: RunState, measuring: _Measuring) -> None:
    """Write `model_last.keras`: `model` with `last_weights`, calibrated; `model` then holds its kept weights again."""
    kept_weights = model.get_weights()  # the calibrated temperature is one of them
    model.set_weights(last_weights)
    last_epoch = state.progress.rows[-1]["epoch"]
    _calibrate(model, cfg, splits, measuring, predict=False, known=_known_logits(model, state, measuring, "current", last_epoch))
    save_keras_file(model, state.run_dir / LAST_MODEL_FILE)
    model.set_weights(kept_weights)


def _calibrate(
    model, cfg: Config, splits: Splits, measuring: _Measuring, predict: bool, known: Optional[dict] = None
) -> tuple[Optional[dict], Optional[dict]]:
    """Calibrate `model` on the validation split (`results.calibration`). On one device the held-out logits come
    through `measuring.extractor` (see `model_logits`), computed once, for the calibration and, with `predict`, for
    the probabilities returned (split name -> [N, K], as the calibrated model answers; else None); `known`: held-out
    logits of these weights the run has already (split name -> logits, see `_known_logits`), which are then not
    predicted again. Distributed, processes that each hold their own validation share fit on it with a
    single-device copy and set the temperatures' `measuring.average`."""
    extractor = measuring.extractor
    held_out = {name: source for name, source in (("validation", splits.validation), ("test", splits.test)) if source is not None}
    calibrates = cfg.results.calibration == "temperature" and splits.validation is not None
    wanted = {name: source for name, source in held_out.items() if predict or (calibrates and name == "validation")}
    logits = {name: values for name, values in (known or {}).items() if name in wanted}
    wanted = {name: source for name, source in wanted.items() if name not in logits}
    if extractor is not None and wanted:
        logits.update(model_logits(model, wanted, cfg.data.batch_size, extractor))
    calibration = None
    if calibrates:
        if "validation" in logits:
            calibration = calibrate_logits(model, logits["validation"], splits.validation)
        else:
            calibration = calibrate(model, splits.validation, cfg.data.batch_size, measuring.average)
    if not predict:
        return calibration, None
    kind, value = label_kind(model), temperature(model)
    return calibration, {name: kind.probabilities(values, value).astype(np.float32) for name, values in logits.items()}


def _evaluate_held_out(model_temperature: Optional[float], predictions: dict, run_dir: Path, splits: Splits, draw) -> None:
    """What `kerastl evaluate` writes, on the held-out split (test, else validation), into RUN_DIR/evaluation, for
    the model whose `predictions` these are, at `model_temperature`; its pictures sent to `draw`."""
    split, source = splits.held_out()
    if source is None:
        return
    write_evaluation(run_dir / "evaluation", source, predictions[split], splits.class_names, f"{split} split", model_temperature,
                     draw=draw)


def predict_splits(model, cfg: Config, splits: Splits) -> dict[str, np.ndarray]:
    """The model's probabilities on the validation and test splits (one pass each: every final measure reads them)."""
    return {name: model.predict(make_dataset(source, cfg.data.batch_size), verbose=0)
            for name, source in (("validation", splits.validation), ("test", splits.test)) if source is not None}


def final_metrics(predictions: dict, loss, cfg: Config, splits: Splits, phase_metrics: dict, baselines: Optional[dict],
                  leakage: Optional[dict] = None) -> RunMetrics:
    """Loss (the compiled `loss`) and accuracy on the validation and test splits from their `predictions`,
    prediction health, baselines, held-out images duplicating training images (`leakage`, with the accuracy
    on the others) and warnings."""
    metrics = RunMetrics(name=cfg.name, backbone=cfg.model.backbone, num_classes=len(splits.class_names),
                         class_names=list(splits.class_names), num_images={"train": len(splits.train)}, phases=phase_metrics,
                         baselines=baselines)
    for name, prefix in (("validation", "val"), ("test", "test")):
        if name not in predictions:
            continue
        source = getattr(splits, name)
        split_loss, accuracy = loss_and_accuracy(predictions[name], source, len(splits.class_names), loss)
        setattr(metrics, f"{prefix}_loss", round(split_loss, 6))
        setattr(metrics, f"{prefix}_accuracy", round(accuracy, 6))
        metrics.num_images[name] = len(source)
    name, source = splits.held_out()
    if source is not None and not cfg.data.multi_label:
        metrics.health = {"split": name, **prediction_health(predictions[name], source)}
    if leakage is not None:
        metrics.leakage = _leakage_metrics(leakage, predictions, splits)
    warnings = (health_warning(metrics.health), probe_warning(metrics), leakage_warning(metrics.leakage))
    metrics.warnings = [w for w in warnings if w]
    return metrics


def _leakage_metrics(leakage: dict, predictions: dict, splits: Splits) -> dict:
    """The counts of held-out images duplicating training images and the accuracy on the held-out images without them."""
    result: dict = {"threshold": leakage["threshold"]}
    for name in ("validation", "test"):
        if name not in leakage or name not in predictions:
            continue
        counts = {key: value for key, value in leakage[name].items() if key != "duplicate_rows"}
        source = getattr(splits, name)
        clean = np.setdiff1d(np.arange(len(source)), leakage[name]["duplicate_rows"])
        if counts["near"] and len(clean):
            kind = source.label_kind
            counts["accuracy_without_duplicates"] = round(kind.accuracy_of(predictions[name][clean], source.labels[clean]), 6)
        result[name] = counts
    return result
