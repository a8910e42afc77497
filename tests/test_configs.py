"""The shipped example configs name real backbone layers and keys (ImageNet weights are not loaded)."""

from pathlib import Path

import pytest

from kerastl.config import load_config, parse_unfreeze
from kerastl.models.backbone_layers import backbone_units
from kerastl.models.backbones import create_backbone, get_backbone
from kerastl.models.hub import is_hub
from kerastl.training.phases import enable_lora, first_unfrozen

CONFIGS = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))


def hub_stand_in(preset: str, folder: Path) -> str:
    """A local preset of the family and depth of a keras-hub catalogue preset, narrow and with random weights
    (the real one downloads): `hub:DIR`."""
    keras_hub = pytest.importorskip("keras_hub")
    published = {"dinov2_small": lambda: keras_hub.models.DINOV2Backbone(
        patch_size=14, num_layers=12, hidden_dim=24, num_heads=2, intermediate_dim=48, image_shape=(224, 224, 3),
        position_embedding_shape=(518, 518, 3)),
        "vit_base_patch16_224_imagenet": lambda: keras_hub.models.ViTBackbone(
            image_shape=(224, 224, 3), patch_size=16, num_layers=12, num_heads=2, hidden_dim=24, mlp_dim=48)}
    published[preset]().save_to_preset(str(folder))
    keras_hub.layers.ImageConverter(image_size=(224, 224), scale=1 / 255).save_to_preset(str(folder))
    return f"hub:{folder}"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_unfreeze_scopes_exist(path, tmp_path):
    cfg = load_config(path)
    backbone_name = cfg.model.backbone
    if is_hub(backbone_name):
        backbone_name = hub_stand_in(backbone_name[len("hub:"):], tmp_path / "preset")
    spec = get_backbone(backbone_name)
    backbone = create_backbone(spec, "none", spec.default_size if is_hub(backbone_name) else max(32, spec.min_size),
                               cfg.model.backbone_options)
    layers = backbone_units(backbone)
    for phase in cfg.phases:
        kind, rank = parse_unfreeze(phase.unfreeze)
        if kind == "lora":  # adapters on every attention layer of the 12
            enable_lora(backbone, rank, phase.name)
            assert sum(getattr(layer, "lora_enabled", False) for layer in backbone._flatten_layers()) == 2 * 12
            continue
        start = first_unfrozen(layers, spec, phase)
        assert 0 <= start <= len(layers)
        assert (start == len(layers)) == (phase.unfreeze is None)
