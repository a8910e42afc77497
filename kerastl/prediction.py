"""Predict labels for image files or pixel-table rows with a trained model.

Example:
    >>> for p in predict("runs/quickstart", ["digits.csv"]):
    ...     print(p.input, p.label, round(p.probability, 3))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from kerastl.data.pipeline import read_data_source
from kerastl.data.sources import IMAGE_SUFFIXES, load_image
from kerastl.errors import DataError
from kerastl.evaluation import model_input_shape, run_config
from kerastl.model import load_model

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")


@dataclass(frozen=True)
class Prediction:
    """The most probable class of one input."""

    input: str
    label: str
    probability: float
    probabilities: np.ndarray


def predict(model_path: str | Path, inputs: Sequence[str | Path], batch_size: int = 64) -> list[Prediction]:
    """Predict each image file, and each row of each pixel table (CSV/Parquet), in `inputs`.

    Args:
        model_path: a run directory or a `.keras` file (class names come from `labels.txt` beside it).
        inputs: image files (jpg, png, bmp, gif) and pixel tables; a table's label column, if any, is ignored.

    Returns:
        One `Prediction` per image or table row, in input order.

    Raises:
        DataError: an input is missing, unreadable, of another type, or of another shape than the model takes.
    """
    model = load_model(model_path)
    run_dir = Path(model_path) if Path(model_path).is_dir() else Path(model_path).parent
    labels_file = run_dir / "labels.txt"
    shape = model_input_shape(model)
    class_names = labels_file.read_text().splitlines() if labels_file.is_file() else None
    names, images = [], []
    for item in map(Path, inputs):
        suffix = item.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            if not item.is_file():
                raise DataError(f"{item}: no such file.")
            names.append(str(item))
            images.append(load_image(item, shape[:2], shape[2])[None])
        elif suffix in TABLE_SUFFIXES:
            table = read_data_source(str(item), run_config(run_dir).data, image_size=None, require_labels=False)
            if table.image_shape != shape:
                raise DataError(f"{item}: rows hold {table.image_shape} images, the model takes {shape}.")
            names += [f"{item}:row {i + 1}" for i in range(len(table))]
            images.append(table.images)
        else:
            allowed = ", ".join(IMAGE_SUFFIXES + TABLE_SUFFIXES)
            raise DataError(f"{item}: cannot predict on {suffix or 'a file without suffix'!r} files; expected one of: {allowed}.")
    if not names:
        raise DataError("No inputs to predict.")
    probabilities = model.predict(np.concatenate(images), batch_size=batch_size, verbose=0)
    class_names = class_names or [str(k) for k in range(probabilities.shape[1])]
    best = probabilities.argmax(axis=1)
    return [
        Prediction(name, class_names[k], float(p[k]), p) for name, k, p in zip(names, best, probabilities)
    ]
