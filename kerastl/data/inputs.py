"""What `predict` and `explain` take: image files and the rows of pixel tables, as uint8 images.

Example:
    >>> names, images, notes = read_inputs(["digit.png", "rows.csv"], (8, 8, 1), DataConfig())
    >>> names
    ['digit.png', 'rows.csv:row 1', 'rows.csv:row 2']
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from kerastl.config import DataConfig
from kerastl.data.pipeline import read_data_source
from kerastl.data.pictures import IMAGE_SUFFIXES, decode_picture, describe_changes
from kerastl.data.sources import SOURCE_KINDS, is_table
from kerastl.errors import DataError


def read_inputs(
    inputs: Sequence[str | Path], shape: tuple[int, int, int], data: DataConfig
) -> tuple[list[str], np.ndarray, list[tuple[str, ...]]]:
    """Read image files (resized to `shape` by `data.resize`) and every row of pixel tables into uint8 images of `shape`, named
    `path` or `path:row N`, each with what reading did to its pixels (the sentences of
    `kerastl.data.pictures.CHANGES` or of a table's `pixel_scale` rule; empty when read as stored).

    Raises:
        DataError: an input is missing, unreadable, of another type or of another shape; no inputs.
    """
    names, images, notes = [], [], []
    for item in map(Path, inputs):
        suffix = item.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            if not item.is_file():
                raise DataError(f"{item}: no such file.")
            image, changes = decode_picture(item, shape[:2], shape[2], data.resize)
            names.append(str(item))
            images.append(image[None])
            notes.append(describe_changes(dict.fromkeys(changes, 1), 1, str(item)))
        elif is_table(str(item)):
            table = read_data_source(str(item), data, image_size=None, require_labels=False)
            if table.image_shape != shape:
                raise DataError(f"{item}: rows hold {table.image_shape} images, the model takes {shape}.")
            names += [f"{item}:row {i + 1}" for i in range(len(table))]
            images.append(table.images)
            notes += [table.conversions] * len(table)
        else:
            allowed = ", ".join(IMAGE_SUFFIXES + tuple(s for kind in SOURCE_KINDS.values() if kind.table for s in kind.suffixes))
            raise DataError(f"{item}: cannot predict on {suffix or 'a file without suffix'!r} files; expected one of: {allowed}.")
    if not names:
        raise DataError("No inputs to predict.")
    return names, np.concatenate(images), notes
