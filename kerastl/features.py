"""Cached backbone features for frozen phases: run the frozen backbone once, then train the head on
its pooled features, epoch after epoch, instead of recomputing the backbone every step. With
augmentation on, K augmented copies of the training set are computed up front
(`compute.augmented_copies`) and the epochs cycle through them.

The head model shares its layers (and so its weights) with the full model: after the phase the
full model holds the trained head, as if it had been trained end to end.

Example:
    >>> if can_cache(cfg, phase, engine):
    ...     features = training_features(model, cfg, splits.train.images)   # [K * N, D]
    ...     head = head_model(model)   # pooled features -> probabilities, same layer objects
"""

from __future__ import annotations

import numpy as np

from kerastl.augment import augmentation_layers
from kerastl.config import Config, PhaseConfig, parse_unfreeze
from kerastl.data.pipeline import image_batches
from kerastl.distribute import Engine

FEATURE_LAYER = "pool"  # features are cached at the pooling layer's output


def can_cache(cfg: Config, phase: PhaseConfig, engine: Engine) -> bool:
    """Whether `phase` trains the head on cached features: `compute.cache_features` (default true), the
    backbone frozen, no MixUp/CutMix, augmentation off or `compute.augmented_copies` > 0, and one
    process (with several, each would need the features of every image, not of its shard)."""
    augment = cfg.augment
    return (
        cfg.compute.cache_features
        and engine.processes == 1
        and parse_unfreeze(phase.unfreeze)[0] == "head"
        and (augment.preset == "none" or cfg.compute.augmented_copies > 0)
        and augment.mixup == 0
        and augment.cutmix == 0
    )


def training_copies(cfg: Config) -> int:
    """How many versions of the training features a cached phase computes: one without augmentation,
    else `compute.augmented_copies`, each through freshly seeded augmentation layers."""
    return 1 if cfg.augment.preset == "none" else cfg.compute.augmented_copies


def training_features(model, cfg: Config, images: np.ndarray, verbose: int | str = "auto") -> np.ndarray:
    """The cached training features: `training_copies(cfg)` versions of every image's features, one
    version after the other ([K * N, D]); version k passes through augmentation seeded `seed + k + 1`."""
    import keras

    if cfg.augment.preset == "none":
        return extract_features(model, images, cfg.data.batch_size, verbose)
    return np.concatenate([
        extract_features(
            model, images, cfg.data.batch_size, verbose,
            augmentation=keras.Sequential(augmentation_layers(cfg.augment, cfg.seed + copy + 1)),
        )
        for copy in range(cfg.compute.augmented_copies)
    ])


def extract_features(model, images: np.ndarray, batch_size: int, verbose: int | str = "auto", augmentation=None) -> np.ndarray:
    """Pooled backbone features [N, D] (float32) of uint8 `images`, in inference mode, with a progress bar.

    With `augmentation` (a Keras layer), each image passes through it in training mode (so randomly)
    where the model's own augmentation sits, and through the rest of the model in inference mode.
    The images stream from memory or a disk cache in whole batches (see `image_batches`).
    """
    extractor = _augmented_extractor(model, augmentation) if augmentation is not None else _extractor(model)
    features = extractor.predict(image_batches(images, batch_size), verbose=verbose)
    return features[: len(images)].astype(np.float32)


def _extractor(model):
    import keras

    return keras.Model(model.input, model.get_layer(FEATURE_LAYER).output)


def _augmented_extractor(model, augmentation):
    """pixels -> preprocess -> `augmentation` (training mode) -> normalize -> backbone -> pool, all but
    `augmentation` the model's own layers."""
    import keras

    preprocess, normalize, backbone, pool = (model.get_layer(n) for n in ("preprocess", "normalize", "backbone", FEATURE_LAYER))

    class AugmentedFeatures(keras.Model):
        def call(self, images):
            x = augmentation(preprocess(images), training=True)
            return pool(backbone(normalize(x), training=False))

    return AugmentedFeatures()


def head_model(model):
    """A model from pooled features to the output, built from the full model's own head layers."""
    import keras

    layers = model.layers
    start = [layer.name for layer in layers].index(FEATURE_LAYER) + 1
    inputs = keras.Input(shape=model.get_layer(FEATURE_LAYER).output.shape[1:], name="features")
    x = inputs
    for layer in layers[start:]:
        x = layer(x)
    return keras.Model(inputs, x, name=f"{model.name}_head")

