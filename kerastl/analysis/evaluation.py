"""Evaluate a trained model on its run's test split or on another labelled source.

Example:
    >>> report = evaluate("runs/quickstart")
    >>> report["accuracy"], report["num_images"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from kerastl.config import Config
from kerastl.data.pipeline import load_splits, predict_images, read_data_source
from kerastl.data.samples import HELDOUT_FILE, load_heldout
from kerastl.data.sources import ImageSource
from kerastl.errors import DataError
from kerastl.models.classifier import model_input_shape
from kerastl.models.saved_run import read_run
from kerastl.analysis.calibration import coverage_curve, temperature, uncalibrated
from kerastl.analysis.drawing import draw_now
from kerastl.analysis.gradcam import gradcam
from kerastl.analysis.modelcard import write_model_card
from kerastl.analysis.report import write_report
from kerastl.analysis.tta import tta_probabilities
from kerastl.rundir import METRICS_FILE, MODEL_FILE, atomic_path, write_json


def evaluate(run: str | Path, data: Optional[str] = None, tta: int = 1, verbose: int | str = 0, explain: bool = False) -> dict:
    """Evaluate a run's model and write `RUN/evaluation/` (see `write_evaluation`); refresh `report.md` and `MODEL_CARD.md`.
    Another model file of the run (`RUN/model_last.keras`) is evaluated into `RUN/evaluation_model_last/`.

    Args:
        run: a run directory (its `model.keras`), or a `.keras` file in one.
        data: a labelled source (`csv:PATH`, `folder:PATH`, ...) read with the run's data options;
            None re-creates the run's test split (same seed), or its validation split if it has no test split.
        tta: test-time augmentation passes (1 = none), averaged.
        verbose: Keras `predict` verbosity.
        explain: draw the Grad-CAM heatmap of the predicted class over each image of `errors.png`.

    Returns:
        The metrics: accuracy, top-k accuracy, loss, expected calibration error, per-class
        precision/recall/F1/support with macro and weighted averages, and `data`.

    Raises:
        RunDirError / ExportError: no run or model there. DataError: the data does not fit the model.

    Example:
        >>> evaluate("runs/quickstart")["per_class"]["5"]["recall"]
    """
    saved = read_run(run)  # a run directory or one of its .keras files
    run_dir, cfg, model, class_names = saved.run_dir, saved.cfg, saved.model, saved.class_names
    folder = run_dir / ("evaluation" if saved.model_file.name == MODEL_FILE else f"evaluation_{saved.model_file.stem}")
    source, described = _evaluation_source(run_dir, cfg, data, model, class_names, progress=verbose != 0)
    probabilities = tta_probabilities(
        lambda images: predict_images(model, images, cfg.data.batch_size, verbose),
        source.images, cfg.augment, tta, seed=cfg.seed,
    )
    heatmaps = (lambda images: gradcam(model, images)[0]) if explain else None
    report = write_evaluation(folder, source, probabilities, class_names, described, temperature(model), tta, heatmaps)
    if folder.name == "evaluation" and (run_dir / METRICS_FILE).is_file():  # the report and card describe model.keras
        write_report(run_dir)
        write_model_card(run_dir)
    return report


def write_evaluation(
    folder: Path, source: ImageSource, probabilities: np.ndarray, class_names, described: str,
    model_temperature: Optional[float], tta: int = 1, heatmaps=None, draw: Callable[..., None] = draw_now,
) -> dict:
    """Write the evaluation of `probabilities` against `source`'s labels into `folder`; returns the metrics.

    Files: metrics.json; for single-label data also confusion_matrix.csv (counts),
    confusion_matrix_normalized.csv (each true class's row sums to 1), confusion_matrix.png,
    predictions.png (a sample of images with true/predicted/probability), errors.png (most
    confidently wrong; with `heatmaps`, see `error_grid`), reliability.png and coverage.png (confidence;
    see `kerastl.analysis.calibration`). The pictures are drawn by `draw` (`kerastl.analysis.drawing`: in this
    process, or sent to a `PictureProcess`).
    """
    import pandas as pd

    from kerastl.analysis.metrics import classification_metrics, confusion_matrix, multi_label_metrics, reliability
    from kerastl.analysis.plots import error_grid, prediction_grid

    metrics = multi_label_metrics if source.multi_label else classification_metrics
    report = {"data": described, "tta": tta, **metrics(probabilities, source.labels, class_names)}
    if not source.multi_label:  # multi-label: no confusion matrix or error grid, an image can be partly right
        matrix = confusion_matrix(source.labels, probabilities.argmax(axis=1), len(class_names))
        rows = matrix.sum(axis=1, keepdims=True)
        for name, table in (("confusion_matrix", matrix), ("confusion_matrix_normalized", np.round(matrix / np.maximum(rows, 1), 6))):
            with atomic_path(folder / f"{name}.csv") as temp:
                pd.DataFrame(table, index=pd.Index(class_names, name="true"), columns=class_names).to_csv(temp)
        draw("plot_confusion_matrix", matrix=matrix, class_names=list(class_names), target=folder / "confusion_matrix.png")
        draw("plot_labelled_images", target=folder / "predictions.png", **prediction_grid(source, probabilities, described))
        errors = error_grid(source.images, source.labels, probabilities, class_names, heatmaps=heatmaps)
        draw("plot_labelled_images", target=folder / "errors.png", **errors)
        before = uncalibrated(probabilities, model_temperature, source.label_kind) if model_temperature not in (None, 1.0) else None
        report["calibration"] = _calibration_report(probabilities, before, source.labels, model_temperature)
        curves = {"calibrated": probabilities} if before is None else {"before (T = 1)": before, f"after (T = {model_temperature:.2f})": probabilities}
        draw("plot_reliability", curves={name: reliability(p, source.labels) for name, p in curves.items()},
             target=folder / "reliability.png")
        draw("plot_coverage", rows=report["calibration"]["coverage"], target=folder / "coverage.png")
    write_json(folder / METRICS_FILE, report)
    return report


def _calibration_report(probabilities: np.ndarray, before: Optional[np.ndarray], labels: np.ndarray,
                        model_temperature: Optional[float]) -> dict:
    """The model's temperature, the expected calibration error the model would have had at T = 1
    (`expected_calibration_error` beside it is the model's own), and the accuracy/coverage table."""
    from kerastl.analysis.metrics import expected_calibration_error

    report: dict = {"temperature": model_temperature}
    if before is not None:
        report["ece_at_t1"] = round(expected_calibration_error(before, labels), 6)
    report["coverage"] = coverage_curve(probabilities, labels)
    return report


def _evaluation_source(
    run_dir: Path, cfg: Config, data: Optional[str], model, class_names, progress: bool
) -> tuple[ImageSource, str]:
    size = model_input_shape(model)[:2]
    if data is not None:
        source = read_data_source(data, cfg.data, image_size=size, progress=progress).with_classes(class_names)
        described = data
    elif (held_out := load_heldout(run_dir)) is not None and held_out.complete:  # kept by the run: no re-read
        source, described = held_out.source, f"{cfg.data.source} ({held_out.split} split, kept in {HELDOUT_FILE})"
    else:
        splits = load_splits(cfg.data, cfg.seed, image_size=size, progress=progress)
        split, source = splits.held_out()
        if source is None:
            raise DataError(f"Run {cfg.name!r} has no test or validation split; ", python="pass data=SOURCE.", cli="pass --data SOURCE.")
        source = source.with_classes(class_names)
        described = f"{cfg.data.source} ({split} split)"
    if source.image_shape != model_input_shape(model):
        raise DataError(f"{source.origin}: images are {source.image_shape}, the model takes {model_input_shape(model)}.")
    return source, described
