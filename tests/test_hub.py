"""keras-hub backbones (`hub:PRESET`, `hub:/path`): presets written offline with `save_to_preset`, loaded
through the real loading code, trained, cached, fine-tuned, exported and predicted like any backbone."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from kerastl.cli import cli
from kerastl.config import load_config
from kerastl.errors import ConfigError, WeightsError
from tests.conftest import TINY

keras_hub = pytest.importorskip("keras_hub")  # the `hub` extra; `.[dev]` installs it

IMAGENET_SCALE = [1 / (255 * 0.229), 1 / (255 * 0.224), 1 / (255 * 0.225)]
IMAGENET_OFFSET = [-0.485 / 0.229, -0.456 / 0.224, -0.406 / 0.225]


def tiny_presets():
    """One small backbone of each family, random weights, 32 px."""
    models = keras_hub.models
    return {
        "vit": models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64),
        "dinov2": models.DINOV2Backbone(patch_size=8, num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64,
                                        image_shape=(32, 32, 3), position_embedding_shape=(32, 32, 3)),
        "siglip": models.SigLIPVisionEncoder(patch_size=8, hidden_dim=32, num_layers=2, num_heads=2, intermediate_dim=64,
                                             image_shape=(32, 32, 3)),
        "resnet": models.ResNetBackbone(input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 64],
                                        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block"),
    }


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    folder = tmp_path_factory.mktemp("presets")
    for name, backbone in tiny_presets().items():
        backbone.save_to_preset(str(folder / name))
        keras_hub.layers.ImageConverter(image_size=(32, 32), scale=IMAGENET_SCALE, offset=IMAGENET_OFFSET).save_to_preset(str(folder / name))
    return folder


@pytest.mark.parametrize("family, pooling", [("vit", "TokenPooling"), ("dinov2", "TokenPooling"), ("siglip", "Identity"),
                                             ("resnet", "GlobalAveragePooling2D")])
def test_a_hub_preset_builds_a_kerastl_model_on_raw_pixels(presets, family, pooling):
    from kerastl.config import ModelConfig
    from kerastl.models.classifier import build_model

    model = build_model(ModelConfig(backbone=f"hub:{presets / family}", weights="imagenet"), 3, (8, 8, 1))
    assert model.input.dtype == "uint8" and model.output.shape == (None, 3)
    assert type(model.get_layer("pool")).__name__ == pooling
    normalize = model.get_layer("normalize")
    assert normalize.mode == "affine" and normalize.scale == pytest.approx(IMAGENET_SCALE)
    saved = keras_hub.models.Backbone.from_preset(str(presets / family))
    for mine, theirs in zip(model.get_layer("backbone").weights, saved.weights):  # the preset's weights, loaded
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert model.facts["backbone"] == f"hub:{presets / family}" and model.facts["normalization"] == "affine"


@pytest.mark.parametrize("family", [
    "vit", *(pytest.param(family, marks=pytest.mark.slow) for family in ("dinov2", "siglip", "resnet")),  # 25-40 s each
])
def test_a_hub_backbone_trains_caches_finetunes_exports_and_predicts(presets, family, tmp_path):
    from kerastl.deploy.export import export
    from kerastl.deploy.predict import predict
    from kerastl.training.trainer import train

    cfg = load_config(None, [o for o in TINY if not o.startswith("model.")] + [
        f"model.backbone=hub:{presets / family}", "model.weights=imagenet", "phases.1.unfreeze=all", "results.evaluation=false",
    ])
    result = train(cfg, output_dir=tmp_path / "run", verbose=0)
    assert result.metrics["phases"]["head"]["cached_features"] is True
    assert result.metrics["phases"]["finetune"]["batchnorm"] is not None
    for fmt in ("savedmodel", "tflite"):
        info = export(tmp_path / "run", fmt, tmp_path / fmt)
        assert info["parity"]["max_abs_diff"] <= 1e-3, info["parity"]
    rows = tmp_path / "rows.csv"
    np.savetxt(rows, np.zeros((2, 64), np.uint8), fmt="%d", delimiter=",", header=",".join(f"p{i}" for i in range(64)), comments="")
    labels = [p.label for p in predict(tmp_path / "savedmodel", [rows])]
    assert labels == [p.label for p in predict(tmp_path / "run", [rows])]


def test_a_preset_that_cannot_be_loaded_is_one_weights_error(tmp_path, monkeypatch):
    from kerastl.models.hub import load_hub_backbone

    with pytest.raises(WeightsError, match="no keras-hub preset there"):
        load_hub_backbone(str(tmp_path / "missing"), load_weights=True)

    def offline(*args, **kwargs):
        raise OSError("Failed to resolve 'www.kaggle.com'")

    monkeypatch.setattr(keras_hub.models.Backbone, "from_preset", offline)
    with pytest.raises(WeightsError, match=r"Cannot load keras-hub preset 'dinov2_small' \(Failed to resolve 'www.kaggle.com'\)\. "
                                           r"Without network, .* set model.backbone to hub:DIR\."):
        load_hub_backbone("dinov2_small", load_weights=True)


def test_hub_backbones_refuse_backbone_options_and_other_input_sizes(presets):
    from kerastl.config import ModelConfig
    from kerastl.models.classifier import build_model

    with pytest.raises(ConfigError, match="takes none"):
        build_model(ModelConfig(backbone=f"hub:{presets / 'vit'}", backbone_options={"alpha": 1}), 3, (8, 8, 1))
    with pytest.raises(ConfigError, match="takes 32 px images"):
        build_model(ModelConfig(backbone=f"hub:{presets / 'vit'}", input_size=64), 3, (8, 8, 1))


def test_backbones_lists_the_hub_presets():
    result = CliRunner().invoke(cli, ["backbones", "hub:dinov2*"])
    assert result.exit_code == 0, result.output
    assert "hub:dinov2_small" in result.output and "hub:vit_base_patch16_224_imagenet" not in result.output
