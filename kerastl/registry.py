"""Named registries of choosable things; entries are data, looked up through one `get()`.

Example:
    >>> get_backbone("mobilenet_v2").default_size
    224
    >>> backbone_names("efficientnet*")[:2]
    ['efficientnet_b0', 'efficientnet_b1']
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from kerastl.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → entry table that explains unknown names."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice.")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        key = str(name).lower().replace("-", "_")
        if key in self._entries:
            return self._entries[key]
        close = difflib.get_close_matches(key, self._entries, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unknown {self.kind} {name!r}.{hint} Expected one of: {', '.join(self._entries)}.")

    def names(self, pattern: str = "*") -> list[str]:
        return [name for name in self._entries if fnmatch.fnmatch(name, pattern)]


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
    weights were trained to give.
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


BACKBONES: Registry[BackboneSpec] = Registry("backbone")

_MOBILENET_V2 = r"^(expanded_conv|block_\d+)_"
_MOBILENET_V3 = r"^(expanded_conv(?:_\d+)?)_"
_STAGES = r"^(block\d)"  # EfficientNet(V2) stages block1..block7, VGG block1..block5
_RESNET = r"^(conv\d)_"  # ResNet/DenseNet stages conv2..conv5

for _spec in (
    BackboneSpec("mobilenet_v2", "MobileNetV2", "mobilenet_v2", "tf", 224, 1280, 2_257_984, _MOBILENET_V2),
    BackboneSpec("mobilenet_v3_small", "MobileNetV3Small", "mobilenet_v3", "none", 224, 576, 939_120, _MOBILENET_V3),
    BackboneSpec("mobilenet_v3_large", "MobileNetV3Large", "mobilenet_v3", "none", 224, 960, 2_996_352, _MOBILENET_V3),
    BackboneSpec("efficientnet_b0", "EfficientNetB0", "efficientnet", "none", 224, 1280, 4_049_571, _STAGES),
    BackboneSpec("efficientnet_b1", "EfficientNetB1", "efficientnet", "none", 240, 1280, 6_575_239, _STAGES),
    BackboneSpec("efficientnet_b2", "EfficientNetB2", "efficientnet", "none", 260, 1408, 7_768_569, _STAGES),
    BackboneSpec("efficientnet_b3", "EfficientNetB3", "efficientnet", "none", 300, 1536, 10_783_535, _STAGES),
    BackboneSpec("efficientnet_v2_b0", "EfficientNetV2B0", "efficientnet_v2", "none", 224, 1280, 5_919_312, _STAGES),
    BackboneSpec("efficientnet_v2_b1", "EfficientNetV2B1", "efficientnet_v2", "none", 240, 1280, 6_931_124, _STAGES),
    BackboneSpec("efficientnet_v2_b2", "EfficientNetV2B2", "efficientnet_v2", "none", 260, 1408, 8_769_374, _STAGES),
    BackboneSpec("resnet50", "ResNet50", "resnet50", "caffe", 224, 2048, 23_587_712, _RESNET),
    BackboneSpec("resnet50_v2", "ResNet50V2", "resnet_v2", "tf", 224, 2048, 23_564_800, _RESNET),
    BackboneSpec("densenet121", "DenseNet121", "densenet", "torch", 224, 1024, 7_037_504, _RESNET),
    BackboneSpec("vgg16", "VGG16", "vgg16", "caffe", 224, 512, 14_714_688, _STAGES),
    BackboneSpec("xception", "Xception", "xception", "tf", 299, 2048, 20_861_480, r"^(block\d+)_", min_size=71),
    BackboneSpec("convnext_tiny", "ConvNeXtTiny", "convnext", "none", 224, 768, 27_820_128, r"_(stage_\d)_", pools_inside=True),
    BackboneSpec("alexnet", "kerastl.alexnet:AlexNet", "kerastl.alexnet", "tf", 227, 256, 3_747_200, r"^(conv\d)", min_size=67),
):
    BACKBONES.register(_spec.name, _spec)


def get_backbone(name: str) -> BackboneSpec:
    """The spec of a registered backbone; unknown names raise `ConfigError` with a close match."""
    return BACKBONES.get(name)


def backbone_names(pattern: str = "*") -> list[str]:
    """Registered backbone names matching a shell-style pattern."""
    return BACKBONES.names(pattern)
