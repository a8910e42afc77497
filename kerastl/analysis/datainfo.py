"""Look at the data before training: counts, shapes and pixel ranges; sample grids before and after augmentation.

Example:
    >>> stats = data_stats(load_config("configs/quickstart.yaml"))
    >>> stats["splits"]["train"]["images"]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerastl.config import Config
from kerastl.data.pipeline import Splits, load_splits
from kerastl.models.classifier import input_size

IMBALANCE_RATIO = 3.0


def data_stats(cfg: Config) -> dict:
    """Images per split and class, image shape and dtype, pixel range and mean, the pixel conversions reading
    applied (`conversions`), and an imbalance warning."""
    splits = load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model))
    result = {"image_shape": list(splits.train.image_shape), "dtype": str(splits.train.images.dtype),
              "class_names": list(splits.class_names), "splits": {}}
    for name, source in (("train", splits.train), ("validation", splits.validation), ("test", splits.test)):
        if source is None:
            continue
        counts = source.class_counts()
        result["splits"][name] = {
            "images": int(len(source)),
            "per_class": {c: int(n) for c, n in zip(splits.class_names, counts)},
            "pixel_min": int(source.images.min()),
            "pixel_max": int(source.images.max()),
            "pixel_mean": round(float(source.images.mean()), 3),
        }
    result["conversions"] = splits.conversions()
    result["warnings"] = imbalance_warnings(splits)
    return result


def imbalance_warnings(splits: Splits) -> list[str]:
    """A warning when the largest training class has more than `IMBALANCE_RATIO` times the images of the smallest."""
    counts = splits.train.class_counts()
    largest, smallest = int(counts.argmax()), int(counts.argmin())
    if counts[smallest] == 0 or counts[largest] / counts[smallest] > IMBALANCE_RATIO:
        return [
            f"class imbalance: {splits.class_names[largest]!r} has {counts[largest]} training images, "
            f"{splits.class_names[smallest]!r} {counts[smallest]}; consider data.sampling: balanced, "
            "data.class_weight: balanced or loss.kind: focal."
        ]
    return []


def preview_images(cfg: Config, per_class: int = 8, max_classes: int = 10) -> tuple[list[str], list, list]:
    """Up to `per_class` training images of each of the first `max_classes` classes, at native size and as the
    model sees them in training (resized, cropped and augmented by the run's own layers), as uint8.

    Returns:
        (class names, native images per class, the same images as the model sees them per class).

    Example:
        >>> names, native, seen = preview_images(load_config("configs/quickstart.yaml"), per_class=4)
        >>> native[0].shape, seen[0].shape
        ((4, 8, 8, 1), (4, 32, 32, 3))
    """
    return _preview(cfg, load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model)), per_class, max_classes)


def _preview(cfg: Config, splits: Splits, per_class: int, max_classes: int) -> tuple[list[str], list, list]:
    import keras

    from kerastl.models.augment import augmentation_layers
    from kerastl.models.layers import Preprocess

    rng = np.random.default_rng(cfg.seed)
    classes = list(range(min(len(splits.class_names), max_classes)))
    native = [splits.train.images[rng.permutation(splits.train.members(k))[:per_class]] for k in classes]
    preprocess = Preprocess(input_size(cfg.model), channels=3, crop=cfg.model.center_crop, resize=cfg.data.resize)
    augment = keras.Sequential(augmentation_layers(cfg.augment, cfg.seed)) if cfg.augment.preset != "none" else None

    def as_model_sees(batch):
        x = preprocess(batch)
        x = augment(x, training=True) if augment is not None else x
        return np.clip(np.round(keras.ops.convert_to_numpy(x)), 0, 255).astype(np.uint8)

    return [splits.class_names[k] for k in classes], native, [as_model_sees(batch) for batch in native]


def data_preview(cfg: Config, output_dir: str | Path, per_class: int = 8, max_classes: int = 10) -> dict:
    """Write samples.png, augmented.png (the same images as the model sees them in training) and class_counts.png.

    Returns:
        `{"files": [paths written], "warnings": [class-imbalance warnings]}`.
    """
    from kerastl.analysis.plots import plot_class_counts, plot_image_grid

    output_dir = Path(output_dir)
    splits = load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model))
    names, native, seen = _preview(cfg, splits, per_class, max_classes)
    written = [output_dir / "samples.png", output_dir / "augmented.png", output_dir / "class_counts.png"]
    plot_image_grid(native, names, written[0], "samples (native size)")
    plot_image_grid(seen, names, written[1], f"as the model sees them in training (augment: {cfg.augment.preset})")
    warnings = imbalance_warnings(splits)
    plot_class_counts(splits.class_names, splits.train.class_counts(), written[2], warning=warnings[0] if warnings else None)
    return {"files": written, "warnings": warnings}
