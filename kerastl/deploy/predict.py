"""Predict labels for image files or pixel-table rows with a trained or exported model.

`MODEL` may be a run directory, a `.keras` file, a SavedModel directory, a `.tflite` file, or a
directory written by `kerastl export`.

Example:
    >>> for p in predict("runs/quickstart", ["digits.csv"]):
    ...     print(p.input, p.label, round(p.probability, 3))
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kerastl.config import AugmentConfig, Config, DataConfig, config_from_dict
from kerastl.data.inputs import read_inputs
from kerastl.deploy.formats import FORMATS
from kerastl.errors import ConfigError, ExportError
from kerastl.labels import LabelKind
from kerastl.analysis.tta import tta_probabilities
from kerastl.rundir import CONFIG_FILE, LABELS_FILE, run_config


UNKNOWN = "unknown"  # the label of an image whose top probability is below `min_confidence`


@dataclass(frozen=True)
class Prediction:
    """The most probable class of one input (`UNKNOWN` when its probability is below the `min_confidence`
    asked for); for a multi-label model, `label` joins every class at or above the 0.5 threshold with
    the data's label separator ("" for none)."""

    input: str
    label: str
    probability: float
    probabilities: np.ndarray
    notes: tuple[str, ...] = ()  # what reading did to the input's pixels (a bit depth, an orientation, a scale)


@dataclass(frozen=True)
class Predictor:
    """A loaded model of any supported format: `probabilities(uint8 images [N, H, W, C])`."""

    probabilities: Callable[[np.ndarray], np.ndarray]
    input_shape: tuple[int, int, int]
    class_names: list[str]
    data: DataConfig
    augment: AugmentConfig


def load_predictor(path: str | Path) -> Predictor:
    """Load a run directory, `.keras` file, SavedModel directory, `.tflite` file or export directory.

    Raises:
        ExportError: nothing loadable at `path`.
    """
    path = Path(path)
    if not path.exists():
        raise ExportError(f"No model at {str(path)!r}; expected a run directory, a model file or an export directory.")
    folder = path if path.is_dir() else path.parent
    export_info = _export_info(folder)
    if export_info:
        cfg = config_from_dict({"data": export_info["data"], "augment": export_info["augment"]})
    elif path.is_file() and not (folder / CONFIG_FILE).is_file():
        cfg = Config()  # a bare .keras file: tables are read with the default options (label column "label", hwc)
    else:
        cfg = run_config(folder)
    for export_format in FORMATS.values():
        target = export_format.locate(path)
        if target is not None:
            loaded = export_format.load(target)
            labels = _labels(folder / export_format.labels_folder if path.is_dir() else folder, loaded.num_classes)
            data = cfg.data if loaded.resize is None else replace(cfg.data, resize=loaded.resize)  # the model's own rule
            return Predictor(loaded.run, loaded.input_shape, labels, data, cfg.augment)
    files = ", ".join(fmt.file for fmt in FORMATS.values())
    raise ExportError(f"No model at {str(path)!r}: it holds none of {files}.")


def predict(
    model_path: str | Path, inputs: Sequence[str | Path], tta: int = 1, min_confidence: float = 0.0
) -> list[Prediction]:
    """Predict each image file, and each row of each pixel table (CSV/Parquet), in `inputs`.

    Args:
        model_path: a run directory, `.keras`, SavedModel directory, `.tflite` file or export directory.
        inputs: image files (jpg, png, bmp, gif) and pixel tables; a table's label column, if any, is ignored.
        tta: test-time augmentation passes (1 = none), averaged; uses the run's augmentation.
        min_confidence: answer `UNKNOWN` ("unknown") for an image whose top probability is below it
            (single-label models; kerastl models are temperature-calibrated, so 0.9 means about 90%
            of the answered images are right; see the run's `evaluation/coverage.png`).

    Returns:
        One `Prediction` per image or table row, in input order.

    Raises:
        DataError: an input is missing, unreadable, of another type, or of another shape than the model takes.
        ExportError: no loadable model at `model_path`.
    """
    if not 0.0 <= min_confidence <= 1.0:
        raise ConfigError(f"min_confidence must be a probability between 0 and 1, got {min_confidence}.")
    predictor = load_predictor(model_path)
    if min_confidence and predictor.data.multi_label:
        raise ConfigError("min_confidence applies to single-label models; a multi-label model answers every class at or above 0.5.")
    names, images, notes = read_inputs(inputs, predictor.input_shape, predictor.data)
    probabilities = tta_probabilities(predictor.probabilities, images, predictor.augment, tta)
    best = probabilities.argmax(axis=1)
    if predictor.data.multi_label:
        present = LabelKind(True).decisions(probabilities)
        separator = predictor.data.label_separator
        return [
            Prediction(name, separator.join(np.asarray(predictor.class_names)[row.astype(bool)]), float(p[k]), p, note)
            for name, row, k, p, note in zip(names, present, best, probabilities, notes)
        ]
    return [
        Prediction(name, predictor.class_names[k] if p[k] >= min_confidence else UNKNOWN, float(p[k]), p, note)
        for name, k, p, note in zip(names, best, probabilities, notes)
    ]


def _labels(folder: Path, num_classes) -> list[str]:
    file = folder / LABELS_FILE
    if file.is_file():
        return file.read_text().splitlines()
    if num_classes is None:
        raise ExportError(f"{folder}: labels.txt is missing beside the model.")
    return [str(k) for k in range(num_classes)]


def _export_info(folder: Path):
    file = folder / "export.json"
    return json.loads(file.read_text()) if file.is_file() else None
