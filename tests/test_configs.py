"""The shipped example configs name real backbone layers and keys (ImageNet weights are not loaded)."""

from pathlib import Path

import pytest

from kerastl.models.backbones import create_backbone
from kerastl.config import load_config
from kerastl.training.phases import first_unfrozen
from kerastl.models.backbones import get_backbone

CONFIGS = sorted(Path(__file__).parents[1].joinpath("configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_loads_and_unfreeze_scopes_exist(path):
    cfg = load_config(path)
    spec = get_backbone(cfg.model.backbone)
    backbone = create_backbone(spec, "none", max(32, spec.min_size), cfg.model.backbone_options)
    for phase in cfg.phases:
        start = first_unfrozen(backbone.layers, spec, phase)
        assert 0 <= start <= len(backbone.layers)
        assert (start == len(backbone.layers)) == (phase.unfreeze is None)
