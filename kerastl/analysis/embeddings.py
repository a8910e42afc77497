"""Embeddings: the pooled frozen-backbone features of images, for retrieval and for the user's own analysis.

`MODEL` is a run directory, a kerastl `.keras` file, or a backbone name (`mobilenet_v2`, `hub:PRESET`) with its
`weights`. The features are what the head of a kerastl model reads: the model's own preprocessing (resize, the
backbone's normalization), the backbone in inference mode, the pooling.

Example:
    >>> table = embed("runs/quickstart", ["digits.csv", "photos/"])
    >>> table[["id", "label"]].head(), table.filter(like="f").shape
    >>> similar("runs/quickstart", "query.png", ["photos/"], top=5)
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from kerastl.config import DataConfig
from kerastl.data.inputs import read_inputs
from kerastl.data.pipeline import predict_in_batches, read_data_source
from kerastl.data.sources import is_table
from kerastl.errors import DataError


def embed(model, inputs: Sequence[str | Path], weights: Optional[str] = "imagenet", batch_size: int = 32, verbose=0):
    """The features of every input: image files, labelled image folders (a subfolder per class) and pixel tables.

    Args:
        model: a run directory, a `.keras` file, a backbone name, or an `ImageClassifier`.
        inputs: image files, folders and CSV/Parquet pixel tables (a table's label column, when present, is kept).
        weights: for a backbone name: "imagenet", None (random) or a weights file.
        batch_size: images per forward pass.
        verbose: Keras' predict verbosity.

    Returns:
        A pandas DataFrame: `id` (file path, `table:row N`), `label` (the class of a folder or table row, else ""),
        then one float32 column per feature, `f0` ... `f{D-1}`.

    Raises:
        DataError: an input that cannot be read, or images of another shape than the model takes.
    """
    import pandas as pd

    from kerastl.models.classifier import feature_extractor, model_resize

    classifier = load_for_features(model, weights)
    ids, labels, images = read_images(inputs, tuple(classifier.input.shape[1:]), model_resize(classifier))
    features = predict_in_batches(feature_extractor(classifier), images, batch_size, verbose)
    table = pd.DataFrame(np.asarray(features, np.float32), columns=[f"f{i}" for i in range(features.shape[1])])
    table.insert(0, "label", labels)
    table.insert(0, "id", ids)
    return table


def similar(model, image: str | Path, data: Sequence[str | Path], top: int = 5, weights: Optional[str] = "imagenet"):
    """The `top` images of `data` most like `image`: cosine similarity of their features, centred on the mean
    feature of `data` (raw pooled features all point one way; centring makes the cosine tell pictures apart).

    Returns:
        A pandas DataFrame: rank (from 1), id, label, similarity; most similar first.
    """
    classifier = load_for_features(model, weights)
    reference = embed(classifier, data)
    query = embed(classifier, [image])
    rows = reference.filter(regex=r"^f\d+$").to_numpy()
    centre = rows.mean(axis=0)
    vectors = np.concatenate([rows, query.filter(regex=r"^f\d+$").to_numpy()]) - centre
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    scores = vectors[:-1] @ vectors[-1]
    order = np.argsort(-scores, kind="stable")[:top]
    found = reference.iloc[order][["id", "label"]].reset_index(drop=True)
    found.insert(0, "rank", np.arange(1, len(found) + 1))
    found["similarity"] = np.round(scores[order], 6)
    return found


def load_for_features(model, weights: Optional[str] = "imagenet"):
    """The kerastl model whose features to take: `model` itself, the model of a run or `.keras` file, or a model of a
    backbone name (its default input size, RGB) built with `weights`."""
    from kerastl.models.classifier import ImageClassifier, load_model
    from kerastl.rundir import MODEL_FILE

    if not isinstance(model, (str, Path)):
        return model
    path = Path(model)
    if path.is_dir():
        return load_model(path / MODEL_FILE)
    if path.suffix == ".keras":
        return load_model(path)
    from kerastl.models.backbones import get_backbone

    size = get_backbone(str(model)).default_size
    return ImageClassifier.from_preset(str(model), num_classes=2, weights=weights, image_shape=(size, size, 3), augment="none")


def read_images(
    inputs: Sequence[str | Path], shape: tuple[int, int, int], resize: str = "squash"
) -> tuple[list[str], list[str], np.ndarray]:
    """Ids, labels and uint8 images of image files, labelled folders and pixel tables, at the model's input `shape`
    (pictures of another aspect ratio resized by the model's `resize` rule)."""
    ids: list[str] = []
    labels: list[str] = []
    parts = []
    files = []
    for item in map(Path, inputs):
        if item.is_dir() or is_table(str(item)):
            data = DataConfig(image_shape=shape[:2], channels=shape[2], resize=resize)
            source = read_data_source(str(item), data, shape[:2], require_labels=False)
            if source.image_shape != shape:
                raise DataError(f"{item}: holds {source.image_shape} images, the model takes {shape}.")
            ids += [f"{item}:{name}" if not item.is_dir() else str(name) for name in source.image_ids()]
            labels += [source.class_names[k] for k in source.labels] if source.labels is not None and source.labels.ndim == 1 else [""] * len(source)
            parts.append(source.images)
        else:
            files.append(item)
    if files:
        names, images, _ = read_inputs(files, shape, DataConfig(resize=resize))
        ids += names
        labels += [""] * len(names)
        parts.append(images)
    if not parts:
        raise DataError("No inputs to embed.")
    return ids, labels, np.concatenate(parts)
