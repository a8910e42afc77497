"""The data a Keras user holds, as the `ImageSource`s the recipe trains on: arrays with labels, pandas
DataFrames (pixel columns or image paths), `tf.data.Dataset`s and `keras.utils.PyDataset`s.

Every kind is read into uint8 arrays in memory once; number arrays follow the `pixel_scale` rule (see
`kerastl.data.pixels`), which the run reports. Labels are class indices, class names, or one-hot rows.

Example:
    >>> source = as_source(images, labels, ("cat", "dog"), multi_label=False, shape=(32, 32, 3), what="x")
    >>> splits = python_splits(model, images, labels, (val_images, val_labels), None, {})
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional, Sequence

import numpy as np

from kerastl.data.pipeline import Splits
from kerastl.data.sources import ImageSource, from_arrays, from_dataframe
from kerastl.errors import DataError

PATH_COLUMN = "path"  # a DataFrame column of image files (instead of pixel columns)
READ_OPTIONS = ("label_column", "pixel_scale", "image_shape", "pixel_layout")


def python_splits(model, x, y, validation_data, test_data, read_options: dict) -> Splits:
    """Train, validation and test `ImageSource`s for `model` (its class names and input shape) from what
    `fine_tune` was given.

    Raises:
        DataError: data of another shape than the model takes, labels that fit none of its classes, an unknown kind.
    """
    from kerastl.models.classifier import model_facts, model_input_shape, model_resize

    unknown = sorted(set(read_options) - set(READ_OPTIONS))
    if unknown:
        raise DataError(f"fine_tune got unknown option(s) {', '.join(unknown)}; the reading options are: {', '.join(READ_OPTIONS)}.")
    facts, shape = model_facts(model), model_input_shape(model)
    read_options = {**read_options, "resize": model_resize(model)}  # picture files are resized as the model resizes
    parts = {}
    for what, data in (("x", (x, y)), ("validation_data", validation_data), ("test_data", test_data)):
        if data is None:
            continue
        images, labels = data if isinstance(data, tuple) and len(data) == 2 else (data, None)
        source = as_source(images, labels, facts["class_names"], bool(facts["multi_label"]), shape, what, read_options)
        if source.image_shape != shape:
            raise DataError(
                f"{what}: images are {source.image_shape} (H, W, C), the model takes {shape}; build it with "
                f"ImageClassifier.from_preset(..., image_shape={source.image_shape})."
            )
        parts[what] = source
    return Splits(parts["x"], parts.get("validation_data"), parts.get("test_data"))


def as_source(
    data, labels, class_names: Sequence[str], multi_label: bool, shape: tuple, what: str, read_options: Optional[dict] = None
) -> ImageSource:
    """`data` (with `labels` for arrays) as an `ImageSource` whose labels index `class_names`; image files (a
    DataFrame's `path` column) are read at `shape`, the model's input (H, W, C), by `read_options["resize"]`."""
    import pandas as pd

    options = dict(read_options or {})
    pixel_scale = options.get("pixel_scale", "auto")
    if isinstance(data, ImageSource):
        return data.with_classes(class_names)
    if isinstance(data, pd.DataFrame):
        return _from_frame(data, class_names, multi_label, shape, what, options)
    if _is_dataset(data):
        images, labels = _dataset_arrays(data, what)
    elif _is_py_dataset(data):
        images, labels = _py_dataset_arrays(data, what)
    elif isinstance(data, (np.ndarray, list)):
        images = data
        if labels is None:
            raise DataError(f"{what}: images need their labels: fine_tune(model, images, labels).")
    else:
        raise DataError(
            f"{what}: cannot train on {type(data).__name__}; give arrays with labels, a pandas DataFrame, an ImageSource, "
            "a tf.data.Dataset or a keras.utils.PyDataset."
        )
    return from_arrays(images, class_indices(labels, class_names, multi_label, what), class_names, origin=what, pixel_scale=pixel_scale)


def class_indices(labels, class_names: Sequence[str], multi_label: bool, what: str) -> np.ndarray:
    """`labels` as class indices [N] (or 0/1 rows [N, K] for a multi-label model): from indices, class names
    or one-hot rows."""
    labels = np.asarray(labels)
    count = len(class_names)
    if multi_label:
        if labels.ndim != 2 or labels.shape[1] != count or not np.isin(labels, (0, 1)).all():
            raise DataError(f"{what}: a multi-label model takes 0/1 label rows with one column per class ({count}); got {labels.shape}.")
        return labels.astype(np.uint8)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim == 2:
        if labels.shape[1] != count or not np.allclose(labels.sum(axis=1), 1):
            raise DataError(f"{what}: label rows must be one-hot over the model's {count} classes; got shape {labels.shape}.")
        return np.argmax(labels, axis=1)
    if labels.dtype.kind in "iu":
        if len(labels) and (labels.min() < 0 or labels.max() >= count):
            raise DataError(f"{what}: class indices must be in 0..{count - 1} (the model's {count} classes); got {labels.min()}..{labels.max()}.")
        return labels.astype(np.int64)
    names = {name: index for index, name in enumerate(class_names)}
    text = [str(value) for value in labels]
    unknown = sorted(set(text) - set(names))
    if unknown:
        raise DataError(f"{what}: label(s) {', '.join(map(repr, unknown[:3]))} are not classes of the model ({', '.join(class_names)}).")
    return np.array([names[value] for value in text], np.int64)


def _from_frame(frame, class_names, multi_label: bool, shape: tuple, what: str, options: dict) -> ImageSource:
    label_column = options.get("label_column", "label")
    if label_column not in frame.columns:
        raise DataError(f"{what}: the DataFrame has no label column {label_column!r}; name it with label_column=.")
    labels = frame[label_column].to_numpy()
    if multi_label:
        raise DataError(f"{what}: a multi-label model takes arrays with 0/1 label rows, not a DataFrame.")
    if PATH_COLUMN in frame.columns:
        pictures = _read_pictures(frame[PATH_COLUMN], shape, what, options.get("resize", "squash"))
        return replace(pictures, labels=class_indices(labels, class_names, False, what), class_names=tuple(class_names))
    source = from_dataframe(
        frame, label_column=label_column, image_shape=options.get("image_shape"),
        pixel_layout=options.get("pixel_layout", "hwc"), origin=what, pixel_scale=options.get("pixel_scale", "auto"),
    )
    names = np.asarray(source.class_names)[source.labels]  # the table's labels as text, as the model's class names are
    return replace(source, labels=class_indices(names, class_names, False, what), class_names=tuple(class_names))


def _read_pictures(paths, shape: tuple, what: str, resize: str) -> ImageSource:
    """The image files of a `path` column, each resized to the model's input `shape` (H, W, C) as a folder's
    pictures are, with the same pixel rules (16-bit, orientation, alpha: see `kerastl.data.pictures`)."""
    from collections import Counter

    from kerastl.data.pictures import decode_picture, describe_changes

    images, changes = [], Counter()
    for row, path in enumerate(paths, start=1):
        try:
            image, applied = decode_picture(str(path), shape[:2], shape[2], resize)
        except DataError as exc:
            raise DataError(f"{what}: row {row}, column {PATH_COLUMN!r}: {exc}") from None
        images.append(image)
        changes.update(applied)
    return ImageSource(np.stack(images), None, (), what, conversions=describe_changes(changes, len(images), what))


def _is_dataset(data) -> bool:
    return type(data).__module__.startswith("tensorflow") and hasattr(data, "element_spec")


def _is_py_dataset(data) -> bool:
    import keras

    return isinstance(data, keras.utils.PyDataset)


def _dataset_arrays(dataset, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Every (images, labels) element of a `tf.data.Dataset`, batched or not, as two arrays."""
    spec = dataset.element_spec
    if not (isinstance(spec, tuple) and len(spec) == 2):
        raise DataError(f"{what}: a tf.data.Dataset must yield (images, labels) pairs; it yields {spec}.")
    rank = len(spec[0].shape)  # [B, H, W, C] or a gray [B, H, W] with an unknown batch size: batched
    batched = rank == 4 or (rank == 3 and spec[0].shape[0] is None)
    images, labels = [], []
    for image, label in dataset.as_numpy_iterator():
        images.append(image if batched else image[None])
        labels.append(label if batched else np.asarray(label)[None])
    if not images:
        raise DataError(f"{what}: the tf.data.Dataset is empty.")
    return np.concatenate(images), np.concatenate(labels)


def _py_dataset_arrays(dataset, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Every batch of a `keras.utils.PyDataset` (batches of (images, labels)), as two arrays."""
    images, labels = [], []
    for index in range(len(dataset)):
        batch = dataset[index]
        if not (isinstance(batch, tuple) and len(batch) >= 2):
            raise DataError(f"{what}: a PyDataset must return (images, labels) batches; batch {index} is {type(batch).__name__}.")
        images.append(np.asarray(batch[0]))
        labels.append(np.asarray(batch[1]))
    if not images:
        raise DataError(f"{what}: the PyDataset is empty.")
    return np.concatenate(images), np.concatenate(labels)
