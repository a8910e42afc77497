"""Distill a trained run into a smaller backbone (Hinton, Vinyals & Dean, 2015).

The student is an ordinary kerastl run (same data, splits, phases, exports) whose training images are
paired with soft targets instead of their labels: `alpha` x the one-hot label + (1 - alpha) x the
teacher's probabilities at `distill.temperature` (from the teacher's logits, so its own calibration
does not matter). The targets are computed once, on the training images as they are stored, which
is what lets the student's frozen phases train on cached features and resume epoch by epoch like any
run; validation and test keep the true labels, so every number of the student is comparable with the
teacher's. At the end the student's `metrics.json` and report compare the two: accuracy, parameters,
file size and milliseconds per image on this machine.

The entry point, `kerastl.distill` (`kerastl.training.trainer.distill`), trains the student as any run.

Example:
    >>> cfg = student_config("runs/teacher", "mobilenet_v3_small")
    >>> splits = teacher_targets(cfg, splits, verbose=0)   # splits.train_targets: the soft targets
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from kerastl.labels import LabelKind
from kerastl.config import Config, apply_override, config_from_dict, config_to_dict
from kerastl.data.pipeline import Splits, label_targets, make_dataset, predict_in_batches
from kerastl.errors import DataError
from kerastl.models.classifier import LOGITS_LAYER, load_model, model_facts
from kerastl.rundir import MODEL_FILE, run_config
from kerastl.run_metrics import RunMetrics, read_metrics

SPEED_IMAGES = 256  # held-out images timed per model
SPEED_REPEATS = 3


def student_config(teacher_run: str | Path, student: str, overrides: Sequence[str] = ()) -> Config:
    """The teacher's config turned into its student's (see `distill`)."""
    teacher_cfg = run_config(Path(teacher_run))
    raw = config_to_dict(teacher_cfg)
    raw["name"] = f"{teacher_cfg.name}-{student}"
    raw["output_dir"] = None
    raw["model"] = {**raw["model"], "backbone": student, "backbone_options": {}}
    raw["distill"] = {"teacher": str(teacher_run)}
    for override in overrides:
        apply_override(raw, override)
    return config_from_dict(raw)


def teacher_targets(cfg: Config, splits: Splits, verbose) -> Splits:
    """`splits` with the soft training targets of `cfg.distill` (see the module docstring).

    Raises:
        DataError: the teacher was trained on other classes or another image shape.
    """
    import keras

    teacher = load_model(Path(cfg.distill.teacher))
    facts = model_facts(teacher)
    if list(facts["class_names"]) != list(splits.class_names):
        raise DataError(
            f"Teacher {cfg.distill.teacher!r} has classes {', '.join(facts['class_names'])}; the student's data has "
            f"{', '.join(splits.class_names)}."
        )
    shape = tuple(int(d) for d in teacher.input_shape[1:])
    if shape != splits.train.image_shape:
        raise DataError(f"Teacher {cfg.distill.teacher!r} takes images {shape}; the student's data are {splits.train.image_shape}.")
    logits_model = keras.Model(teacher.input, teacher.get_layer(LOGITS_LAYER).output)
    logits = logits_model.predict(make_dataset(splits.train, cfg.data.batch_size), verbose=verbose)
    soft = LabelKind(facts["multi_label"]).probabilities(logits, cfg.distill.temperature)
    hard = label_targets(splits.train, len(splits.class_names))
    targets = (cfg.distill.alpha * hard + (1 - cfg.distill.alpha) * soft).astype(np.float32)
    return replace(splits, train_targets=targets)


def compare_with_teacher(cfg: Config, student, splits: Splits, student_metrics: RunMetrics) -> dict:
    """Teacher and student side by side: accuracy on the held-out splits, parameters, `model.keras` size and
    milliseconds per image (median of `SPEED_REPEATS` timings of `predict` on up to `SPEED_IMAGES` held-out
    images, batch size of the run)."""
    teacher_dir = Path(cfg.distill.teacher)
    teacher_metrics = read_metrics(teacher_dir)
    teacher = load_model(teacher_dir)
    _, held_out = splits.held_out()
    images = (held_out or splits.train).images[:SPEED_IMAGES]
    sides = {}
    for role, model, metrics, file in (
        ("teacher", teacher, teacher_metrics, teacher_dir / MODEL_FILE),
        ("student", student, student_metrics, None),
    ):
        sides[role] = {
            "backbone": model_facts(model)["backbone"],
            **{key: getattr(metrics, key) for key in ("test_accuracy", "val_accuracy") if getattr(metrics, key) is not None},
            "parameters": int(model.count_params()),
            "ms_per_image": round(_milliseconds_per_image(model, np.asarray(images), cfg.data.batch_size), 3),
        }
        if file is not None:
            sides[role]["file_mb"] = round(file.stat().st_size / 2**20, 2)
    return {"teacher_run": str(teacher_dir), "temperature": cfg.distill.temperature, "alpha": cfg.distill.alpha, **sides}


def _milliseconds_per_image(model, images: np.ndarray, batch_size: int) -> float:
    """Median milliseconds per image of `predict_in_batches` over `images` (through kerastl's own pipeline: the
    one Keras builds for a NumPy array can wait seconds for tf.data's autotuning thread as it ends)."""
    predict_in_batches(model, images[:batch_size], batch_size)  # trace once
    timings = []
    for _ in range(SPEED_REPEATS):
        started = time.perf_counter()
        predict_in_batches(model, images, batch_size)
        timings.append(time.perf_counter() - started)
    return 1000 * float(np.median(timings)) / len(images)
