"""Named augmentation presets built from Keras 3 core layers, applied inside the model.

Keras augmentation layers are active only when the model is called with `training=True`
(inside `fit`), so evaluation, prediction and exports see the images unchanged. All layers
work on pixel values in [0, 255].

Example:
    >>> layers = augmentation_layers(AugmentConfig(preset="light", flip=False), seed=1)
    >>> [layer.__class__.__name__ for layer in layers]
    ['RandomRotation', 'RandomZoom']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kerastl.config import AugmentConfig
from kerastl.registry import Registry


@dataclass(frozen=True)
class AugmentPreset:
    """A named recipe: `build(seed)` returns the geometric/photometric layers (flips are added separately)."""

    name: str
    description: str
    build: Callable[[int], list]


def _light(seed: int) -> list:
    import keras

    return [
        keras.layers.RandomRotation(0.05, fill_mode="constant", seed=seed),
        keras.layers.RandomZoom(0.1, fill_mode="constant", seed=seed + 1),
    ]


def _strong(seed: int) -> list:
    import keras

    return [
        keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=seed),
        keras.layers.RandomRotation(0.1, fill_mode="constant", seed=seed + 1),
        keras.layers.RandomZoom(0.2, fill_mode="constant", seed=seed + 2),
    ]


PRESETS: Registry[AugmentPreset] = Registry("augmentation preset")
PRESETS.register("none", AugmentPreset("none", "no augmentation", lambda seed: []))
PRESETS.register("light", AugmentPreset("light", "flip, rotation ±18°, zoom ±10%", _light))
PRESETS.register("strong", AugmentPreset("strong", "flip, RandAugment (2 ops), rotation ±36°, zoom ±20%", _strong))


def augmentation_layers(augment: AugmentConfig, seed: int) -> list:
    """The Keras layers of the configured preset; a horizontal flip first unless `flip: false`."""
    import keras

    layers = PRESETS.get(augment.preset).build(seed)
    if layers and augment.flip:
        layers.insert(0, keras.layers.RandomFlip("horizontal", seed=seed + 10))
    return layers
