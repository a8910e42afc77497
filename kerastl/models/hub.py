"""keras-hub backbones: `model.backbone: hub:PRESET` (a Kaggle/Hugging Face preset handle such as
`hub:dinov2_small`) or `hub:/path/to/preset_dir` (a folder `save_to_preset` wrote). Needs the `hub` extra.

A hub backbone is used like any other: its preset's ImageConverter scale and offset become the model's
`Normalize("affine")` layer (the resize is kerastl's own `Preprocess`), so the model and its exports
take raw `uint8` pixels; a backbone whose output is a token sequence (ViT, DINOv2, DINOv3, CLIP's vision
tower) is pooled as its preset's model pools (class token, or the mean of the patch tokens without one);
an image-text preset (SigLIP, CLIP) gives its vision tower only, and SigLIP's pools itself (attention
pooling). `model.weights: imagenet` (the default) loads the preset's own weights, `none` builds it with
random weights, a file path loads that file.

Example:
    >>> spec = hub_spec("hub:runs/presets/vit_tiny")
    >>> spec.default_size, spec.tokens, spec.preprocess
    (32, 'class', 'affine')
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Optional

from kerastl.config import size_hw
from kerastl.errors import ConfigError, WeightsError
from kerastl.models.backbone_layers import (
    backbone_units, check_backbone_config, check_min_size, load_backbone_weights, repeated_hub_layers,
)
from kerastl.weights import Weights

HUB_PREFIX = "hub:"
NORMALIZATION_OPTIONS = ("scale", "offset")  # model.backbone_options of a hub backbone: pixels x scale + offset
VISION_TOWERS = ("SigLIPBackbone", "CLIPBackbone", "MetaCLIP2Backbone")  # image-text presets: their vision encoder
LISTED_FAMILIES = ("ViTBackbone", "DINOV2Backbone", "DINOV3Backbone", "SigLIPBackbone", "CLIPBackbone", "EfficientNetBackbone",
                   "ResNetBackbone")
CNN_BLOCKS = {"ResNetBackbone": r"^(stack\d+)_", "EfficientNetBackbone": r"^(block\d)", "VGGBackbone": r"^(block\d)_"}


def is_hub(name: str) -> bool:
    return str(name).startswith(HUB_PREFIX)


@dataclass(frozen=True)
class HubSpec:
    """A keras-hub preset as a kerastl backbone: the fields kerastl reads of a `BackboneSpec`, from the preset."""

    name: str  # "hub:PRESET"
    preprocess: str = "affine"
    min_size: int = 32
    imagenet: bool = True  # model.weights: imagenet loads the preset's weights
    pretrained: str = "preset"
    lora: bool = True  # takes `unfreeze: lora:R` (keras-hub's enable_lora; refused at build if it has no attention)

    @property
    def preset(self) -> str:
        return self.name[len(HUB_PREFIX):]

    @cached_property
    def _skeleton(self):
        """The backbone built from the preset's config without its weights (cached per spec)."""
        return load_hub_backbone(self.preset, load_weights=False)

    @cached_property
    def blocks(self) -> str:
        """The regex naming the blocks for `unfreeze: blocks:K` and `lr_decay`: each transformer layer of a
        ViT/DINOv2/SigLIP/CLIP encoder, the stages of a CNN (ResNet `stack0`.., EfficientNet `block1`..)."""
        family = type(self._skeleton).__name__
        if family in CNN_BLOCKS:
            return CNN_BLOCKS[family]
        layers = transformer_layers(self._skeleton)
        return "^(" + "|".join(re.escape(layer.name) for layer in layers) + ")$" if layers else r"^(.+)$"

    @property
    def default_size(self) -> int:
        shape = self._skeleton.input_shape
        return int(shape[1]) if shape[1] is not None else 224

    @property
    def feature_dim(self) -> int:
        return int(self._skeleton.output_shape[-1])

    @property
    def params(self) -> int:
        return int(self._skeleton.count_params())

    @property
    def pools_inside(self) -> bool:
        """Whether the backbone gives one vector per image (a SigLIP vision tower's attention pooling)."""
        return len(self._skeleton.output_shape) == 2

    @property
    def tokens(self) -> Optional[str]:
        """How the token sequence is pooled ("class"/"mean"), None for a backbone giving a feature map or vector."""
        backbone = self._skeleton
        if len(backbone.output_shape) != 3:
            return None
        return "class" if backbone.uses_class_token else "mean"

    def scale_offset(self, options: Optional[dict] = None) -> tuple[list, list]:
        """The scale and offset (per channel) for `Normalize("affine")`: `model.backbone_options` `scale`/`offset`
        when given, else the preset's ImageConverter's."""
        self._check_options(options)
        if options and "scale" in options:
            return _per_channel(options["scale"], "scale"), _per_channel(options.get("offset", 0.0), "offset")
        return self._converter_scale_offset

    @cached_property
    def _converter_scale_offset(self) -> tuple[list, list]:
        return _converter_scale_offset(self.preset)

    def check_input_size(self, size) -> None:
        """`ConfigError` unless the preset takes `size`: at least `min_size`, and a transformer only its own square."""
        check_min_size(self, size)
        if size_hw(size) != (self.default_size, self.default_size) and self.tokens is not None:
            raise ConfigError(
                f"Config key 'model.input_size': backbone {self.name!r} takes {self.default_size}x{self.default_size} px "
                f"images (its position embeddings are fixed); set it to {self.default_size} or leave it null, and read "
                "pictures of other shapes with data.resize: crop or pad."
            )

    def check_config(self, cfg) -> None:
        """The config rules that depend on this backbone (`check_backbone_config`); `kerastl.config` calls it."""
        check_backbone_config(self, cfg)

    def _check_options(self, options: Optional[dict]) -> None:
        unknown = sorted(set(options or {}) - set(NORMALIZATION_OPTIONS))
        if unknown:
            raise ConfigError(
                f"Config key 'model.backbone_options': backbone {self.name!r} is built by its preset; it takes only "
                f"{' and '.join(NORMALIZATION_OPTIONS)} (its pixel normalization), got {', '.join(map(repr, unknown))}."
            )

    def build(self, weights: str, input_size: int, options: Optional[dict] = None, pooling: Optional[str] = None):
        """The backbone, named "backbone": the preset's weights (`imagenet`), random (`none`) or a file
        (`pooling` is not used: a vision tower that pools does so with its own attention)."""
        self._check_options(options)
        self.check_input_size(input_size)
        choice = Weights.parse(weights)
        backbone = load_hub_backbone(self.preset, load_weights=choice.kind == "imagenet")
        if choice.kind == "file":
            load_backbone_weights(backbone, self, choice.path)
        return backbone


def transformer_layers(backbone) -> list:
    """The backbone's transformer layers: the keras-hub layer class repeated most among its units."""
    units = backbone_units(backbone)
    repeated = repeated_hub_layers(units)
    return [layer for layer in units if type(layer) is repeated] if repeated else []


def hub_spec(name: str) -> HubSpec:
    """The spec of `hub:PRESET`; checks that keras-hub is installed (the preset itself is read when used)."""
    preset = name[len(HUB_PREFIX):]
    if not preset:
        raise ConfigError(f"Backbone {name!r} names no preset; expected hub:PRESET or hub:/path/to/preset_dir.")
    if importlib.util.find_spec("keras_hub") is None:
        raise ConfigError(f"Backbone {name!r} needs keras-hub: pip install 'kerastl[hub]'.")
    return HubSpec(name=name)


def load_hub_backbone(preset: str, load_weights: bool):
    """`keras_hub.models.Backbone.from_preset` named "backbone" (of an image-text preset, its vision tower);
    a preset that cannot be fetched or read is one `WeightsError`."""
    import keras_hub

    local = Path(preset).expanduser()
    if ("/" in preset or preset.startswith(".")) and not (local / "config.json").is_file():
        raise WeightsError(f"hub:{preset}: no keras-hub preset there (a folder written by save_to_preset holds config.json).")
    try:
        backbone = keras_hub.models.Backbone.from_preset(
            str(local) if local.exists() else preset, load_weights=load_weights, name="backbone"
        )
    except Exception as exc:  # kagglehub / huggingface_hub raise their own errors for a failed download
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(
            f"Cannot load keras-hub preset {preset!r} ({first_line}). Without network, download it elsewhere "
            f"(keras_hub.models.Backbone.from_preset({preset!r}).save_to_preset(DIR), and the ImageConverter too) "
            "and set model.backbone to hub:DIR."
        ) from None
    if type(backbone).__name__ in VISION_TOWERS:  # rebuilt under kerastl's name, with the tower's weights
        tower = backbone.vision_encoder
        backbone = type(tower).from_config({**tower.get_config(), "name": "backbone"})
        backbone.set_weights(tower.get_weights())
    # Kept as keras-hub's own Backbone (not rewrapped): it saves and loads through its own config.
    backbone.uses_class_token = bool(getattr(backbone, "use_class_token", True))  # ViT without one: mean of the tokens
    return backbone


def _converter_scale_offset(preset: str) -> tuple[list, list]:
    """Scale and offset of the preset's ImageConverter: read from `image_converter.json` of a local folder,
    else through `keras_hub.layers.ImageConverter.from_preset`."""
    import keras_hub
    import numpy as np

    local = Path(preset).expanduser() / "image_converter.json"
    if local.parent.is_dir() and not local.is_file():
        raise WeightsError(
            f"hub:{preset}: the preset folder has no image_converter.json (Backbone.save_to_preset writes the backbone "
            "only), so the pixel scale its weights expect is unknown. Save the preset's converter into it "
            "(keras_hub.layers.ImageConverter.from_preset(NAME).save_to_preset(DIR)), or set model.backbone_options "
            "{scale: S, offset: O} (pixels 0..255 x S + O, per channel or one number; e.g. 0.00784314 and -1 for [-1, 1])."
        )
    try:
        if local.is_file():
            config = json.loads(local.read_text())["config"]
            scale, offset = config.get("scale"), config.get("offset")
        else:
            converter = keras_hub.layers.ImageConverter.from_preset(preset)
            scale, offset = converter.scale, converter.offset
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise WeightsError(f"keras-hub preset {preset!r} has no readable image converter ({first_line}).") from None
    return np.ravel(1.0 if scale is None else scale).tolist(), np.ravel(0.0 if offset is None else offset).tolist()


def _per_channel(value, key: str) -> list:
    """A `model.backbone_options` scale or offset as a list of numbers (one, or one per channel)."""
    values = value if isinstance(value, (list, tuple)) else [value]
    if not values or len(values) not in (1, 3) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise ConfigError(f"Config key 'model.backbone_options.{key}' must be a number or 3 numbers (one per channel), got {value!r}.")
    return [float(v) for v in values]


def hub_presets() -> list[tuple[str, int, str]]:
    """(`hub:NAME`, parameters, description) of keras-hub's image backbone presets, from its own catalogue (offline)."""
    import keras_hub

    rows = []
    for family in LISTED_FAMILIES:
        for name, preset in getattr(keras_hub.models, family).presets.items():
            metadata = preset.get("metadata", {})
            rows.append((f"{HUB_PREFIX}{name}", int(metadata.get("params", 0)), str(metadata.get("description", "")).strip()))
    return rows
