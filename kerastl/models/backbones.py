"""The backbone registry (one `BackboneSpec` per backbone) and building them with ImageNet, file or no
weights, explaining every failure.

Example:
    >>> get_backbone("mobilenet_v2").default_size
    224
    >>> backbone = create_backbone(get_backbone("mobilenet_v2"), "none", 32, {"alpha": 0.35})
    >>> backbone.output_shape
    (None, 1, 1, 1280)
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from kerastl.config import size_hw
from kerastl.errors import ConfigError, WeightsError
from kerastl.models.backbone_layers import check_backbone_config, check_min_size, load_backbone_weights
from kerastl.weights import Weights
from kerastl.registry import Registry

BACKBONE_LAYER_NAME = "backbone"


@dataclass(frozen=True)
class BackboneSpec:
    """What kerastl needs to know about one `keras.applications` model.

    `preprocess` is the model's own normalization mode: "tf" scales to [-1, 1], "caffe" swaps
    RGB to BGR and subtracts the ImageNet means, "torch" scales to [0, 1] and standardises,
    "none" means the model rescales inside itself and takes pixels in [0, 255].
    `blocks` is a regular expression whose first group names the block a layer belongs to (layers
    that match none belong to the block before them); `constructor` is a `keras.applications` name
    or "module:function" for a backbone kerastl builds itself. `pools_inside` marks a backbone whose
    pretrained classifier pools *before* a final normalization (ConvNeXt: LayerNorm of the average):
    kerastl then lets the backbone pool (its `pooling` argument), so the features are the ones its
    weights were trained to give. `imagenet` says whether Keras has ImageNet weights for it
    (`model.weights: imagenet`); `params` and `feature_dim` are for `kerastl backbones` and are
    checked against the built model by the tests. `tokens` says how a backbone giving a token sequence
    is pooled ("class" token or "mean"; None for a feature map) and `pretrained` what `weights: imagenet`
    loads; a keras-hub preset (`kerastl.models.hub.HubSpec`) reads both, and its normalization's
    `scale_offset`, from the preset.
    """

    name: str
    constructor: str
    module: str
    preprocess: Literal["tf", "caffe", "torch", "none"]
    default_size: int
    feature_dim: int
    params: int
    blocks: str
    min_size: int = 32
    pools_inside: bool = False
    imagenet: bool = True
    tokens: Optional[str] = None
    pretrained: str = "imagenet"
    lora: bool = False  # takes `unfreeze: lora:R` (keras-hub transformers)

    def scale_offset(self, options: Optional[dict] = None) -> tuple[None, None]:
        """The per-channel scale and offset of an "affine" normalization; the modes above need none."""
        return None, None

    def build(self, weights: str, input_size: int, options: dict | None = None, **overrides):
        """The backbone (see `create_backbone`)."""
        return _build_application(self, weights, input_size, options, **overrides)

    def check_input_size(self, size) -> None:
        """`ConfigError` unless this backbone takes `size` (one side or (H, W)): both sides at least `min_size`."""
        check_min_size(self, size)

    def check_config(self, cfg) -> None:
        """The config rules that depend on this backbone (`check_backbone_config`); `kerastl.config` calls it."""
        check_backbone_config(self, cfg)


class BackboneRegistry(Registry):
    """The backbone registry; `hub:PRESET` names are keras-hub presets, described by `kerastl.models.hub`."""

    def get(self, name: str):
        from kerastl.models.hub import hub_spec, is_hub

        return hub_spec(name) if is_hub(name) else super().get(name)


BACKBONES: BackboneRegistry = BackboneRegistry("backbone")

_MOBILENET_V2 = r"^(expanded_conv|block_\d+)_"
_MOBILENET_V3 = r"^(expanded_conv(?:_\d+)?)_"
_STAGES = r"^(block\d)"  # EfficientNet(V2) stages block1..block7, VGG block1..block5
_RESNET = r"^(conv\d)_"  # ResNet/DenseNet stages conv2..conv5

for _spec in (
    BackboneSpec(
        name="mobilenet_v2", constructor="MobileNetV2", module="mobilenet_v2", preprocess="tf",
        default_size=224, feature_dim=1280, params=2_257_984,
        blocks=_MOBILENET_V2,
    ),
    BackboneSpec(
        name="mobilenet_v3_small", constructor="MobileNetV3Small", module="mobilenet_v3", preprocess="none",
        default_size=224, feature_dim=576, params=939_120,
        blocks=_MOBILENET_V3,
    ),
    BackboneSpec(
        name="mobilenet_v3_large", constructor="MobileNetV3Large", module="mobilenet_v3", preprocess="none",
        default_size=224, feature_dim=960, params=2_996_352,
        blocks=_MOBILENET_V3,
    ),
    BackboneSpec(
        name="efficientnet_b0", constructor="EfficientNetB0", module="efficientnet", preprocess="none",
        default_size=224, feature_dim=1280, params=4_049_571,
        blocks=_STAGES,
    ),
    BackboneSpec(
        name="efficientnet_b1", constructor="EfficientNetB1", module="efficientnet", preprocess="none",
        default_size=240, feature_dim=1280, params=6_575_239,
        blocks=_STAGES,
    ),
    BackboneSpec(
        name="efficientnet_b2", constructor="EfficientNetB2", module="efficientnet", preprocess="none",
        default_size=260, feature_dim=1408, params=7_768_569,
        blocks=_STAGES,
    ),
    BackboneSpec(
        name="efficientnet_b3", constructor="EfficientNetB3", module="efficientnet", preprocess="none",
        default_size=300, feature_dim=1536, params=10_783_535,
        blocks=_STAGES,
    ),
    BackboneSpec(
        name="efficientnet_v2_b0", constructor="EfficientNetV2B0", module="efficientnet_v2", preprocess="none",
        default_size=224, feature_dim=1280, params=5_919_312,
        blocks=_STAGES,
    ),
    BackboneSpec(
        name="efficientnet_v2_b1", constructor="EfficientNetV2B1", module="efficientnet_v2", preprocess="none",
        default_size=240, feature_dim=1280, params=6_931_124,
        blocks=_STAGES,
    ),
    BackboneSpec(
        name="efficientnet_v2_b2", constructor="EfficientNetV2B2", module="efficientnet_v2", preprocess="none",
        default_size=260, feature_dim=1408, params=8_769_374,
        blocks=_STAGES,
    ),
    BackboneSpec(
        name="resnet50", constructor="ResNet50", module="resnet50", preprocess="caffe",
        default_size=224, feature_dim=2048, params=23_587_712,
        blocks=_RESNET,
    ),
    BackboneSpec(
        name="resnet50_v2", constructor="ResNet50V2", module="resnet_v2", preprocess="tf",
        default_size=224, feature_dim=2048, params=23_564_800,
        blocks=_RESNET,
    ),
    BackboneSpec(
        name="densenet121", constructor="DenseNet121", module="densenet", preprocess="torch",
        default_size=224, feature_dim=1024, params=7_037_504,
        blocks=_RESNET,
    ),
    BackboneSpec(
        name="vgg16", constructor="VGG16", module="vgg16", preprocess="caffe",
        default_size=224, feature_dim=512, params=14_714_688,
        blocks=_STAGES,
    ),
    BackboneSpec(
        name="xception", constructor="Xception", module="xception", preprocess="tf",
        default_size=299, feature_dim=2048, params=20_861_480,
        blocks=r"^(block\d+)_", min_size=71,
    ),
    BackboneSpec(
        name="convnext_tiny", constructor="ConvNeXtTiny", module="convnext", preprocess="none",
        default_size=224, feature_dim=768, params=27_820_128,
        blocks=r"_(stage_\d)_", pools_inside=True,
    ),
    BackboneSpec(
        name="alexnet", constructor="kerastl.models.alexnet:AlexNet", module="kerastl.models.alexnet", preprocess="tf",
        default_size=227, feature_dim=256, params=3_747_200,
        blocks=r"^(conv\d)", min_size=67, imagenet=False,
    ),
):
    BACKBONES.register(_spec.name, _spec)


def get_backbone(name: str) -> BackboneSpec:
    """The spec of a registered backbone; unknown names raise `ConfigError` with a close match."""
    return BACKBONES.get(name)


def backbone_names(pattern: str = "*") -> list[str]:
    """Registered backbone names matching a shell-style pattern."""
    return BACKBONES.names(pattern)


def create_backbone(spec: BackboneSpec, weights: str, input_size: int | tuple[int, int], options: dict | None = None, **overrides):
    """Build `spec`'s model without its top, named "backbone", for RGB inputs of `input_size`.

    Args:
        spec: the registered backbone.
        weights: "imagenet" (Keras' download and cache), "none" (random init) or a weights file path.
        input_size: one side (square) or (height, width) of the input.
        options: extra constructor arguments, e.g. `{"alpha": 0.35}` for MobileNetV2.

    Raises:
        WeightsError: ImageNet weights cannot be fetched, or the file does not fit this backbone.
        ConfigError: `options` holds an argument the constructor does not take.
    """
    return spec.build(weights, input_size, options, **overrides)


def _build_application(spec: BackboneSpec, weights: str, input_size: int, options: dict | None, **overrides):
    constructor = _constructor(spec)
    kwargs = dict(include_top=False, input_shape=(*size_hw(input_size), 3), **(options or {}), **overrides)
    choice = Weights.parse(weights)
    if choice.kind == "imagenet":
        if not spec.imagenet:
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
    if choice.kind == "file":
        load_backbone_weights(backbone, spec, choice.path)
    return backbone


def _constructor(spec: BackboneSpec):
    import keras

    if ":" in spec.constructor:  # a backbone kerastl builds itself, e.g. "kerastl.models.alexnet:AlexNet"
        module, _, function = spec.constructor.partition(":")
        return getattr(importlib.import_module(module), function)
    return getattr(keras.applications, spec.constructor)


def _named(backbone):
    # Rewrap instead of passing name=: EfficientNetV2 uses its `name` argument to pick its block layout.
    import keras

    return keras.Model(backbone.input, backbone.output, name=BACKBONE_LAYER_NAME)


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
