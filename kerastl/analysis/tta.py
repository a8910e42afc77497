"""Test-time augmentation: average the probabilities over the image and N-1 augmented copies.

The copies use the run's augmentation (`light` when the run trained without any), applied to the
raw images at their native size and rounded back to `uint8`, so any model format can take them.

Example:
    >>> probabilities = tta_probabilities(model_fn, images, AugmentConfig(preset="light", flip=False), n=8)
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from kerastl.models.augment import augmentation_layers
from kerastl.config import AugmentConfig
from kerastl.errors import ConfigError


def tta_probabilities(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, augment: AugmentConfig,
                      n: int, seed: int = 0) -> np.ndarray:
    """Mean of `predict` over `images` and `n - 1` augmented copies (`n = 1`: no augmentation)."""
    import keras

    if n < 1:
        raise ConfigError(f"Test-time augmentation takes a number of passes of at least 1 (tta), got {n}.")
    total = predict(images).astype(np.float64)
    if n == 1:
        return total.astype(np.float32)
    if augment.preset == "none":
        augment = AugmentConfig(preset="light", flip=augment.flip)
    layers = keras.Sequential(augmentation_layers(augment, seed))
    for _ in range(n - 1):
        augmented = keras.ops.convert_to_numpy(layers(images.astype("float32"), training=True))
        total += predict(np.clip(np.round(augmented), 0, 255).astype(np.uint8))
    return (total / n).astype(np.float32)
