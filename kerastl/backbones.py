"""Create `keras.applications` backbones with ImageNet, file or no weights, explaining every failure.

Example:
    >>> backbone = create_backbone(get_backbone("mobilenet_v2"), "none", 32, {"alpha": 0.35})
    >>> backbone.output_shape
    (None, 1, 1, 1280)
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

from kerastl.errors import ConfigError, WeightsError
from kerastl.registry import BackboneSpec

BACKBONE_LAYER_NAME = "backbone"


def create_backbone(spec: BackboneSpec, weights: str, input_size: int, options: dict | None = None, **overrides):
    """Build `spec`'s model without its top, named "backbone", for square RGB inputs of `input_size`.

    Args:
        spec: the registered backbone.
        weights: "imagenet" (Keras' download and cache), "none" (random init) or a weights file path.
        input_size: side of the square input.
        options: extra constructor arguments, e.g. `{"alpha": 0.35}` for MobileNetV2.

    Raises:
        WeightsError: ImageNet weights cannot be fetched, or the file does not fit this backbone.
        ConfigError: `options` holds an argument the constructor does not take.
    """
    constructor = _constructor(spec)
    kwargs = dict(include_top=False, input_shape=(input_size, input_size, 3), **(options or {}), **overrides)
    if weights == "imagenet":
        if ":" in spec.constructor:
            raise WeightsError(
                f"Backbone {spec.name!r} has no ImageNet weights in Keras; set model.weights to none (train from "
                "scratch), pretrain, or a weights file path."
            )
        return _named(_with_imagenet_weights(spec, constructor, kwargs))
    try:
        backbone = _named(constructor(weights=None, **kwargs))
    except TypeError as exc:
        raise ConfigError(f"Config key 'model.backbone_options' does not fit backbone {spec.name!r}: {exc}.") from None
    except ValueError as exc:
        raise ConfigError(f"Backbone {spec.name!r} cannot be built with these options: {exc}") from None
    if weights != "none":
        load_backbone_weights(backbone, spec, weights)
    return backbone


def _constructor(spec: BackboneSpec):
    import keras

    if ":" in spec.constructor:  # a backbone kerastl builds itself, e.g. "kerastl.alexnet:AlexNet"
        module, _, function = spec.constructor.partition(":")
        return getattr(importlib.import_module(module), function)
    return getattr(keras.applications, spec.constructor)


def _named(backbone):
    # Rewrap instead of passing name=: EfficientNetV2 uses its `name` argument to pick its block layout.
    import keras

    return keras.Model(backbone.input, backbone.output, name=BACKBONE_LAYER_NAME)


def load_backbone_weights(backbone, spec: BackboneSpec, path: str) -> None:
    """Load a weights file into `backbone`, turning a mismatch into one clear `WeightsError`."""
    file = Path(path)
    if not file.is_file():
        raise WeightsError(
            f"Weights file {str(file)!r} not found. Config key 'model.weights' takes imagenet, none or a weights file path."
        )
    try:
        backbone.load_weights(str(file))
    except Exception as exc:  # Keras raises ValueError, KeyError or OSError depending on the mismatch
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(
            f"Weights file {str(file)!r} does not fit backbone {spec.name!r} at this size/options: {first_line}"
        ) from None


def keras_cache_dir() -> Path:
    """Where `keras.utils.get_file` keeps downloaded application weights."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def _with_imagenet_weights(spec: BackboneSpec, constructor, kwargs: dict):
    try:
        return constructor(weights="imagenet", **kwargs)
    except ValueError as exc:
        raise WeightsError(f"ImageNet weights for backbone {spec.name!r} are not available here: {exc}") from None
    except Exception as exc:  # keras.utils.get_file raises a bare Exception on a failed download
        message = str(exc)
        if "fetch failure" not in message:  # the download worked; reading the cached file did not
            first_line = (message.strip().splitlines() or [type(exc).__name__])[0]
            raise WeightsError(
                f"ImageNet weights for backbone {spec.name!r} could not be read ({first_line}). A download cut short "
                f"leaves a corrupt file in {keras_cache_dir()}: delete this backbone's file there and run again, or set "
                "model.weights to a weights file path or to none."
            ) from None
        url = re.search(r"https?://\S+?\.h5", message)
        file_name = url.group(0).rsplit("/", 1)[-1] if url else "<weights file>"
        raise WeightsError(
            f"Cannot download ImageNet weights for backbone {spec.name!r} (no network?). Keras looked for "
            f"{keras_cache_dir() / file_name}; put that file there, or set model.weights to a weights file "
            "path or to none."
        ) from None
