"""Cached backbone features for frozen phases: run the frozen backbone once, then train the head on
its pooled features, epoch after epoch, instead of recomputing the backbone every step. With
augmentation on, K augmented copies of the training set are computed up front
(`compute.augmented_copies`) and the epochs cycle through them. Features are kept in memory, or
with `data.cache: disk` in memory-mapped files beside the images.

The head model shares its layers (and so its weights) with the full model: after the phase the
full model holds the trained head, as if it had been trained end to end.

Example:
    >>> if can_cache(cfg, phase, engine):
    ...     features = training_features(model, cfg, splits.train.images)   # [K * N, D]
    ...     head = head_model(model)   # pooled features -> probabilities, same layer objects
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from kerastl.models.augment import augmentation_layers
from kerastl.config import Config, PhaseConfig
from kerastl.data.pipeline import inference_batch_size, predict_images
from kerastl.data.store import ArrayStore
from kerastl.models.backbone_layers import backbone_input
from kerastl.models.classifier import feature_extractor, model_facts
from kerastl.training.distribute import Engine

BATCHES_PER_CHUNK = 64  # features are computed and stored this many batches at a time


def can_cache(cfg: Config, phase: PhaseConfig, engine: Engine) -> bool:
    """Whether `phase` trains the head on cached features: `compute.cache_features` (default true), the
    backbone frozen, no MixUp/CutMix/GridMask, augmentation off or `compute.augmented_copies` > 0, and one
    process (with several, each would need the features of every image, not of its shard)."""
    augment = cfg.augment
    return (
        cfg.compute.cache_features
        and engine.processes == 1
        and phase.scope[0] == "head"
        and (augment.preset == "none" or cfg.compute.augmented_copies > 0)
        and not augment.on_batches
    )


def training_copies(cfg: Config) -> int:
    """How many versions of the training features a cached phase computes: one without augmentation,
    else `compute.augmented_copies`, each through freshly seeded augmentation layers."""
    return 1 if cfg.augment.preset == "none" else cfg.compute.augmented_copies


def training_features(
    model, cfg: Config, images: np.ndarray, verbose: int | str = "auto", cache_dir: Optional[Path] = None, extractor=None
) -> np.ndarray:
    """The cached training features: `training_copies(cfg)` versions of every image's features, one
    version after the other ([K * N, D]); version k passes through augmentation seeded `seed + k + 1`.
    With `cache_dir`, they are written there as computed and returned memory-mapped. `extractor`: the
    `feature_extractor(model)` to use without augmentation (see `extract_features`)."""
    import keras

    if cfg.augment.preset == "none":
        extractors = [extractor or feature_extractor(model)]
    else:
        extractors = [
            _augmented_extractor(model, keras.Sequential(augmentation_layers(cfg.augment, cfg.seed + copy + 1)))
            for copy in range(cfg.compute.augmented_copies)
        ]
    store = ArrayStore(cache_dir, np.float32)
    for extractor in extractors:
        _append_features(extractor, images, cfg.data.batch_size, store, verbose)
    return store.finish()


def extract_features(
    model, images: np.ndarray, batch_size: int, verbose: int | str = "auto", cache_dir: Optional[Path] = None, extractor=None
) -> np.ndarray:
    """Pooled backbone features [N, D] (float32) of uint8 `images`, in inference mode, with a progress
    bar; in memory, or with `cache_dir` written there batch by batch and returned memory-mapped. `extractor`:
    the `feature_extractor(model)` to use (one for several calls saves tracing its predict again)."""
    store = ArrayStore(cache_dir, np.float32)
    _append_features(extractor or feature_extractor(model), images, batch_size, store, verbose)
    return store.finish()


def _append_features(extractor, images: np.ndarray, batch_size: int, store: ArrayStore, verbose) -> None:
    """Run `extractor` over `images` (streamed from memory or a disk cache, see `predict_images`) and append their
    features to `store`, `BATCHES_PER_CHUNK` inference batches at a time."""
    import keras

    rows = inference_batch_size(batch_size) * BATCHES_PER_CHUNK
    bar = keras.utils.Progbar(len(images), verbose=0 if verbose == 0 else 1, unit_name="image")
    for start in range(0, len(images), rows):
        chunk = images[start : start + rows]
        store.append(np.asarray(predict_images(extractor, chunk, batch_size), np.float32))
        bar.update(start + len(chunk))


def _augmented_extractor(model, augmentation):
    """pixels -> preprocess -> `augmentation` (training mode) -> normalize -> backbone -> pool, all but
    `augmentation` the model's own layers."""
    import keras

    names = ("preprocess", "normalize", "backbone", model_facts(model)["feature_layer"])
    preprocess, normalize, backbone, pool = (model.get_layer(name) for name in names)

    class AugmentedFeatures(keras.Model):
        def call(self, images):
            x = augmentation(preprocess(images), training=True)
            return pool(backbone(backbone_input(backbone, normalize(x)), training=False))

    return AugmentedFeatures()

