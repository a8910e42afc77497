"""The shipped example configs name real backbone layers and keys (ImageNet weights are not loaded)."""

from pathlib import Path

import pytest

from kerastl.backbones import create_backbone
from kerastl.config import load_config
from kerastl.registry import get_backbone

CONFIGS = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_unfreeze_layers_exist(path):
    cfg = load_config(path)
    named = [phase.unfreeze_from for phase in cfg.phases if phase.unfreeze_from]
    if named:
        backbone = create_backbone(get_backbone(cfg.model.backbone), "none", 32, cfg.model.backbone_options)
        layer_names = {layer.name for layer in backbone.layers}
        assert set(named) <= layer_names
