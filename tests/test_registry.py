import pytest

from kerastl.errors import ConfigError
from kerastl.models.backbones import backbone_names, get_backbone

REQUIRED = [
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "efficientnet_b0", "efficientnet_b1",
    "efficientnet_b2", "efficientnet_b3", "efficientnet_v2_b0", "efficientnet_v2_b1", "efficientnet_v2_b2",
    "resnet50", "resnet50_v2", "densenet121", "vgg16", "xception", "convnext_tiny",
]


def test_every_required_backbone_is_registered():
    assert set(REQUIRED) <= set(backbone_names())


def test_lookup_tolerates_dashes_and_case():
    assert get_backbone("MobileNet-V2").name == "mobilenet_v2"


def test_pattern_filter():
    assert backbone_names("efficientnet_v2*") == ["efficientnet_v2_b0", "efficientnet_v2_b1", "efficientnet_v2_b2"]


def test_unknown_name_suggests_close_match():
    with pytest.raises(ConfigError, match=r"Did you mean 'densenet121'\?"):
        get_backbone("densenet")
