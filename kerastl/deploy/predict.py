"""Predict labels for image files or pixel-table rows with a trained or exported model.

`MODEL` may be a run directory, a `.keras` file, a SavedModel directory, a `.tflite` file, or a
directory written by `kerastl export`.

Example:
    >>> for p in predict("runs/quickstart", ["digits.csv"]):
    ...     print(p.input, p.label, round(p.probability, 3))
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kerastl.config import AugmentConfig, Config, DataConfig, config_from_dict
from kerastl.data.pipeline import read_data_source
from kerastl.data.sources import IMAGE_SUFFIXES, load_image
from kerastl.errors import DataError, ExportError
from kerastl.analysis.evaluation import model_input_shape, run_config
from kerastl.analysis.metrics import decisions
from kerastl.models.classifier import load_model
from kerastl.quiet import native_stderr_silenced
from kerastl.analysis.tta import tta_probabilities

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class Prediction:
    """The most probable class of one input; for a multi-label model, `label` joins every class at
    or above the 0.5 threshold with the data's label separator ("" for none)."""

    input: str
    label: str
    probability: float
    probabilities: np.ndarray


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
    elif path.is_file() and not (folder / "config.yaml").is_file():
        cfg = Config()  # a bare .keras file: tables are read with the default options (label column "label", hwc)
    else:
        cfg = run_config(folder)
    data, augment = cfg.data, cfg.augment
    if (path / "saved_model.pb").is_file():
        return _savedmodel_predictor(path, data, augment)
    onnx = path if path.suffix == ".onnx" else path / "model.onnx"
    if onnx.is_file():
        run, shape = onnx_predictor(onnx)
        return Predictor(run, shape, _labels(folder, None), data, augment)
    tflite = path if path.suffix == ".tflite" else path / "model.tflite"
    if tflite.is_file():
        run, shape = tflite_predictor(tflite)
        return Predictor(run, shape, _labels(folder, None), data, augment)
    model = load_model(path)
    labels = _labels(folder, model.output_shape[-1])
    return Predictor(lambda images: model.predict(images, verbose=0), model_input_shape(model), labels, data, augment)


def predict(model_path: str | Path, inputs: Sequence[str | Path], tta: int = 1) -> list[Prediction]:
    """Predict each image file, and each row of each pixel table (CSV/Parquet), in `inputs`.

    Args:
        model_path: a run directory, `.keras`, SavedModel directory, `.tflite` file or export directory.
        inputs: image files (jpg, png, bmp, gif) and pixel tables; a table's label column, if any, is ignored.
        tta: test-time augmentation passes (1 = none), averaged; uses the run's augmentation.

    Returns:
        One `Prediction` per image or table row, in input order.

    Raises:
        DataError: an input is missing, unreadable, of another type, or of another shape than the model takes.
        ExportError: no loadable model at `model_path`.
    """
    predictor = load_predictor(model_path)
    shape = predictor.input_shape
    names, images = [], []
    for item in map(Path, inputs):
        suffix = item.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            if not item.is_file():
                raise DataError(f"{item}: no such file.")
            names.append(str(item))
            images.append(load_image(item, shape[:2], shape[2])[None])
        elif suffix in TABLE_SUFFIXES:
            table = read_data_source(str(item), predictor.data, image_size=None, require_labels=False)
            if table.image_shape != shape:
                raise DataError(f"{item}: rows hold {table.image_shape} images, the model takes {shape}.")
            names += [f"{item}:row {i + 1}" for i in range(len(table))]
            images.append(table.images)
        else:
            allowed = ", ".join(IMAGE_SUFFIXES + TABLE_SUFFIXES)
            raise DataError(f"{item}: cannot predict on {suffix or 'a file without suffix'!r} files; expected one of: {allowed}.")
    if not names:
        raise DataError("No inputs to predict.")
    probabilities = tta_probabilities(predictor.probabilities, np.concatenate(images), predictor.augment, tta)
    best = probabilities.argmax(axis=1)
    if predictor.data.multi_label:
        present = decisions(probabilities, multi_label=True)
        separator = predictor.data.label_separator
        return [
            Prediction(name, separator.join(np.asarray(predictor.class_names)[row.astype(bool)]), float(p[k]), p)
            for name, row, k, p in zip(names, present, best, probabilities)
        ]
    return [
        Prediction(name, predictor.class_names[k], float(p[k]), p) for name, k, p in zip(names, best, probabilities)
    ]


def tflite_predictor(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int, int]]:
    """A function running a `.tflite` model on a batch of uint8 images, and its input (H, W, C)."""
    interpreter = _tflite_interpreter(path)
    input_details = interpreter.get_input_details()[0]
    input_index = input_details["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    shape = tuple(int(d) for d in input_details["shape_signature"][1:])

    def run(images: np.ndarray) -> np.ndarray:
        interpreter.resize_tensor_input(input_index, images.shape)
        with native_stderr_silenced():  # "Created TensorFlow Lite XNNPACK delegate" notices
            interpreter.allocate_tensors()
            interpreter.set_tensor(input_index, images.astype(np.uint8))
            interpreter.invoke()
        return interpreter.get_tensor(output_index).copy()

    return run, shape


def onnx_predictor(path: Path) -> tuple[Callable[[np.ndarray], np.ndarray], tuple[int, int, int]]:
    """A function running a `.onnx` model (from `kerastl export --format onnx`) with onnxruntime, and its input (H, W, C)."""
    try:
        import onnxruntime
    except ImportError:
        raise ExportError("Running ONNX models needs the onnx extra: pip install -e \".[onnx]\".") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    shape = tuple(int(d) for d in session.get_inputs()[0].shape[1:])
    return (lambda images: session.run(None, {"images": images.astype(np.uint8)})[0]), shape


def _tflite_interpreter(path: Path):
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():  # tf.lite.Interpreter announces its move to ai_edge_litert
        warnings.simplefilter("ignore")
        try:
            return tf.lite.Interpreter(model_path=str(path))
        except ValueError as exc:
            raise ExportError(f"{path}: not a loadable TFLite model ({exc}).") from None


def _savedmodel_predictor(path: Path, data: DataConfig, augment: AugmentConfig) -> Predictor:
    import tensorflow as tf

    serve = tf.saved_model.load(str(path)).signatures.get("serving_default")
    if serve is None or "images" not in serve.structured_input_signature[1]:
        raise ExportError(f"{path}: the SavedModel has no serving_default signature taking images.")
    shape = tuple(int(d) for d in serve.structured_input_signature[1]["images"].shape[1:])
    num_classes = int(serve.structured_outputs["probabilities"].shape[-1])

    def run(images: np.ndarray) -> np.ndarray:
        return serve(images=tf.constant(images, tf.uint8))["probabilities"].numpy()

    return Predictor(run, shape, _labels(path / "assets", num_classes), data, augment)


def _labels(folder: Path, num_classes) -> list[str]:
    file = folder / "labels.txt"
    if file.is_file():
        return file.read_text().splitlines()
    if num_classes is None:
        raise ExportError(f"{folder}: labels.txt is missing beside the model.")
    return [str(k) for k in range(num_classes)]


def _export_info(folder: Path):
    file = folder / "export.json"
    return json.loads(file.read_text()) if file.is_file() else None
