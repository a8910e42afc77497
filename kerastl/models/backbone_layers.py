"""What a built backbone is made of, for kerastl and keras-hub backbones alike: its units at block granularity,
the input structure it takes, and loading a weights file into it.

Example:
    >>> [layer.name for layer in backbone_units(vit)][:3]
    ['images', 'vit_patching_and_embedding', 'transformer_block_1']
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

from kerastl.config import shown_value, size_hw
from kerastl.errors import ConfigError, WeightsError


def load_backbone_weights(backbone, spec, path: str) -> None:
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


def backbone_units(backbone) -> list:
    """The backbone's layers at block granularity, in order: its top-level layers, except that a container
    of transformer layers without weights of its own (ViT's `vit_encoder`, DINOv2's `encoder`) gives its
    sublayers. For a `keras.applications` backbone, its layers.

    Example:
        >>> [layer.name for layer in backbone_units(vit)]
        ['images', 'vit_patching_and_embedding', 'transformer_block_1', 'transformer_block_2', 'dropout', 'ln']
    """
    units = []
    for layer in backbone.layers:
        children = layer._flatten_layers(include_self=False, recursive=False)
        child_weights = {id(w) for child in children for w in child.weights}
        own_weights = [w for w in layer.weights if id(w) not in child_weights]
        units.extend(children if repeated_hub_layers(children) and not own_weights else [layer])
    return units


def repeated_hub_layers(layers: list) -> Optional[type]:
    """The keras-hub layer class (with weights) found most often, at least twice, in `layers`, else None."""
    counts = Counter(type(layer) for layer in layers if type(layer).__module__.startswith("keras_hub") and layer.weights)
    kind, count = counts.most_common(1)[0] if counts else (None, 0)
    return kind if count >= 2 else None


def backbone_input(backbone, images):
    """`images` in the structure `backbone` was built to take (keras-hub's DINOv2 and SigLIP take {"images": ...})."""
    structure = backbone.input
    return {name: images for name in structure} if isinstance(structure, dict) else images


def check_backbone_config(spec, cfg) -> None:
    """The config rules that depend on the backbone `spec` (a `BackboneSpec` or a hub spec), as `ConfigError`s naming
    the key: its input size (`spec.check_input_size`), pooling inside it, and LoRA phases on a backbone without attention."""
    if cfg.model.input_size is not None:
        spec.check_input_size(cfg.model.input_size)
    if cfg.model.head.pooling == "flatten" and spec.pools_inside:  # after the size: a hub spec reads its preset here
        raise ConfigError(
            f"Config key 'model.head.pooling' is 'flatten', but backbone {spec.name!r} pools inside itself, before its "
            "final normalization; use avg or max."
        )
    for i, phase in enumerate(cfg.phases):
        if phase.scope[0] == "lora" and not spec.lora:  # unfreeze was checked with its key before
            raise ConfigError(
                f"Config key 'phases.{i}.unfreeze' is {phase.unfreeze!r}: LoRA adapts keras-hub transformers; set "
                "model.backbone to hub:PRESET (a ViT, DINOv2 or SigLIP preset)."
            )


def check_min_size(spec, size) -> None:
    """`ConfigError` unless both sides of `size` (one side or (H, W)) reach `spec.min_size`."""
    if min(size_hw(size)) < spec.min_size:
        raise ConfigError(
            f"Config key 'model.input_size' is {shown_value(size)}, below the minimum {spec.min_size} of backbone {spec.name!r}."
        )
