"""Cached backbone features for frozen phases: run the frozen backbone once, then train the head on
its pooled features, epoch after epoch, instead of recomputing the backbone every step.

The head model shares its layers (and so its weights) with the full model: after the phase the
full model holds the trained head, as if it had been trained end to end.

Example:
    >>> if can_cache(cfg, phase):
    ...     features = extract_features(model, splits.train.images, batch_size=64)
    ...     head = head_model(model)   # pooled features -> probabilities, same layer objects
"""

from __future__ import annotations

import numpy as np

from kerastl.config import Config, PhaseConfig, parse_unfreeze

FEATURE_LAYER = "pool"  # features are cached at the pooling layer's output


def can_cache(cfg: Config, phase: PhaseConfig) -> bool:
    """Whether `phase` trains the head on cached features: `compute.cache_features` (default true), the
    backbone frozen, and nothing random before it (no augmentation, no MixUp/CutMix)."""
    augment = cfg.augment
    return (
        cfg.compute.cache_features
        and parse_unfreeze(phase.unfreeze)[0] == "head"
        and augment.preset == "none"
        and augment.mixup == 0
        and augment.cutmix == 0
    )


def extract_features(model, images: np.ndarray, batch_size: int, verbose: int | str = "auto") -> np.ndarray:
    """Pooled backbone features [N, D] (float32) of uint8 `images`, in inference mode, with a progress bar."""
    import keras

    extractor = keras.Model(model.input, model.get_layer(FEATURE_LAYER).output)
    return extractor.predict(images, batch_size=batch_size, verbose=verbose).astype(np.float32)


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

