"""keras-hub backbones (`hub:PRESET`, `hub:/path`): presets written offline with `save_to_preset`, loaded
through the real loading code, trained, cached, fine-tuned, exported and predicted like any backbone."""


import keras
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
    """One small backbone of each family, random weights, 32 px; the image-text presets ("clip",
    "siglip_pair") hold a text tower too, as the catalogue's do."""
    models = keras_hub.models
    text = dict(vocabulary_size=16, embedding_dim=16, hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32,
                max_sequence_length=8)
    return {
        "vit": models.ViTBackbone(image_shape=(32, 32, 3), patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64),
        "dinov2": models.DINOV2Backbone(patch_size=8, num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64,
                                        image_shape=(32, 32, 3), position_embedding_shape=(32, 32, 3)),
        "dinov3": models.DINOV3Backbone(patch_size=8, num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64,
                                        image_shape=(32, 32, 3)),
        "siglip": models.SigLIPVisionEncoder(patch_size=8, hidden_dim=32, num_layers=2, num_heads=2, intermediate_dim=64,
                                             image_shape=(32, 32, 3)),
        "siglip_pair": models.SigLIPBackbone(
            models.SigLIPVisionEncoder(patch_size=8, hidden_dim=32, num_layers=2, num_heads=2, intermediate_dim=64,
                                       image_shape=(32, 32, 3)), models.SigLIPTextEncoder(**text)),
        "clip": models.CLIPBackbone(
            models.CLIPVisionEncoder(patch_size=8, hidden_dim=32, num_layers=2, num_heads=2, intermediate_dim=64,
                                     image_shape=(32, 32, 3)), models.CLIPTextEncoder(**text), projection_dim=16),
        "resnet": models.ResNetBackbone(input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 64],
                                        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block"),
        "efficientnet": models.EfficientNetBackbone(
            stackwise_width_coefficients=[1.0] * 2, stackwise_depth_coefficients=[1.0] * 2, stackwise_kernel_sizes=[3, 3],
            stackwise_num_repeats=[1, 2], stackwise_input_filters=[16, 16], stackwise_output_filters=[16, 24],
            stackwise_expansion_ratios=[1, 6], stackwise_squeeze_and_excite_ratios=[0.25, 0.25], stackwise_strides=[1, 2],
            stackwise_block_types=["v1", "v1"], stackwise_force_input_filters=[0, 0], stackwise_nores_option=[False, False],
            input_shape=(32, 32, 3)),  # num_features stays 1280: keras-hub 0.32 does not save it in the preset
    }


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    keras.utils.set_random_seed(0)  # the same random "pretrained" weights on every run: the accuracy bounds hold for these
    folder = tmp_path_factory.mktemp("presets")
    for name, backbone in tiny_presets().items():
        backbone.save_to_preset(str(folder / name))
        keras_hub.layers.ImageConverter(image_size=(32, 32), scale=IMAGENET_SCALE, offset=IMAGENET_OFFSET).save_to_preset(str(folder / name))
    return folder


@pytest.mark.parametrize("family, pooling", [("vit", "TokenPooling"), ("dinov2", "TokenPooling"), ("dinov3", "TokenPooling"),
                                             ("siglip", "Identity"),
                                             ("siglip_pair", "Identity"), ("clip", "TokenPooling"),
                                             ("resnet", "GlobalAveragePooling2D"), ("efficientnet", "GlobalAveragePooling2D")])
def test_a_hub_preset_builds_a_kerastl_model_on_raw_pixels(presets, family, pooling):
    from kerastl.config import ModelConfig
    from kerastl.models.classifier import build_model

    model = build_model(ModelConfig(backbone=f"hub:{presets / family}", weights="imagenet"), 3, (8, 8, 1))
    assert model.input.dtype == "uint8" and model.output.shape == (None, 3)
    assert type(model.get_layer("pool")).__name__ == pooling
    assert getattr(model.get_layer("pool"), "mode", "class") == "class"  # ViT, DINOv2/3, CLIP: the class token
    normalize = model.get_layer("normalize")
    assert normalize.mode == "affine" and normalize.scale == pytest.approx(IMAGENET_SCALE)
    saved = keras_hub.models.Backbone.from_preset(str(presets / family))
    tower = getattr(saved, "vision_encoder", saved)  # an image-text preset gives its vision tower only
    for mine, theirs in zip(model.get_layer("backbone").weights, tower.weights, strict=True):  # the preset's weights
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    assert model.facts["backbone"] == f"hub:{presets / family}" and model.facts["normalization"] == "affine"


def test_a_backbone_only_preset_asks_for_its_normalization_and_takes_it_from_backbone_options(presets, tmp_path):
    from kerastl.config import ModelConfig
    from kerastl.errors import WeightsError
    from kerastl.models.classifier import build_model

    bare = tmp_path / "vit_backbone_only"
    keras_hub.models.Backbone.from_preset(str(presets / "vit")).save_to_preset(str(bare))  # no image_converter.json
    with pytest.raises(WeightsError, match=r"no image_converter.json .* set model.backbone_options \{scale: S, offset: O\}"):
        build_model(ModelConfig(backbone=f"hub:{bare}"), 3, (8, 8, 1))
    model = build_model(ModelConfig(backbone=f"hub:{bare}", backbone_options={"scale": 1 / 127.5, "offset": -1}), 3, (8, 8, 1))
    normalize = model.get_layer("normalize")
    assert normalize.scale == pytest.approx([1 / 127.5]) and normalize.offset == [-1.0]
    pixels = np.array([[[[0.0, 127.5, 255.0]]]], "float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(normalize(pixels)), [[[[-1, 0, 1]]]], atol=1e-6)


# Test accuracy each tiny seeded stand-in reaches in the run below, with a margin under what was measured (ViT 0.74,
# DINOv3 and SigLIP >= 0.6, DINOv2 0.48, CLIP 0.52). The random-weight ResNet and EfficientNet stand-ins stay at
# chance (0.33, 0.35): their random features are near zero, as MobileNetV2's are, and two epochs do not fix that.
LEARNS = {"vit": 0.6, "dinov3": 0.5, "siglip": 0.5, "dinov2": 0.4, "clip": 0.4}


@pytest.mark.parametrize("family", [
    "vit", *(pytest.param(family, marks=pytest.mark.slow) for family in ("dinov2", "dinov3", "siglip", "clip", "resnet", "efficientnet")),  # 25-40 s each
])
def test_a_hub_backbone_trains_caches_finetunes_exports_and_predicts(presets, family, tmp_path):
    from kerastl.deploy.export import export
    from kerastl.deploy.predict import predict
    from kerastl.models.hub import load_hub_backbone
    from kerastl.training.trainer import train

    cfg = load_config(None, [o for o in TINY if not o.startswith("model.")] + [
        f"model.backbone=hub:{presets / family}", "model.weights=imagenet", "phases.1.unfreeze=blocks:2", "phases.1.lr_decay=0.5",
        "phases.1.learning_rate=0.001", "results.evaluation=false", "results.keep=last", "deterministic=true",
    ])
    result = train(cfg, output_dir=tmp_path / "run", verbose=0)
    if family in LEARNS:  # chance 0.33
        assert result.metrics["test_accuracy"] >= LEARNS[family]
    assert result.metrics["phases"]["head"]["cached_features"] is True
    assert result.metrics["phases"]["finetune"]["batchnorm"] is not None
    loaded = load_hub_backbone(str(presets / family), load_weights=True).weights  # built as the run built it
    trained = result.model.get_layer("backbone").weights
    changed = [not np.array_equal(before.numpy(), after.numpy()) for before, after in zip(loaded, trained, strict=True)]
    assert not changed[0] and any(changed), "below the top two blocks stays as loaded; the top two train"
    for fmt in ("savedmodel", "tflite") if family != "vit" else ("savedmodel",):  # the ViT's TFLite: in the LoRA test
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

    with pytest.raises(ConfigError, match=r"it takes only scale and offset \(its pixel normalization\), got 'alpha'"):
        build_model(ModelConfig(backbone=f"hub:{presets / 'vit'}", backbone_options={"alpha": 1}), 3, (8, 8, 1))
    with pytest.raises(ConfigError, match=r"backbone_options.scale' must be a number or 3 numbers"):
        build_model(ModelConfig(backbone=f"hub:{presets / 'vit'}", backbone_options={"scale": [1, 2]}), 3, (8, 8, 1))
    with pytest.raises(ConfigError, match="takes 32x32 px images"):
        build_model(ModelConfig(backbone=f"hub:{presets / 'vit'}", input_size=64), 3, (8, 8, 1))
    with pytest.raises(ConfigError, match=r"takes 32x32 px images .* data.resize: crop or pad"):
        build_model(ModelConfig(backbone=f"hub:{presets / 'vit'}", input_size=(32, 48)), 3, (8, 8, 1))
    from kerastl.config import load_config

    with pytest.raises(ConfigError, match=r"takes 32x32 px images"):  # refused with the config, before any data is read
        load_config(None, [f"model.backbone=hub:{presets / 'vit'}", "model.weights=none", "model.input_size=[32, 48]"])


def test_backbones_lists_the_hub_presets():
    result = CliRunner().invoke(cli, ["backbones", "hub:dinov2*"])
    assert result.exit_code == 0, result.output
    assert "hub:dinov2_small" in result.output and "hub:vit_base_patch16_224_imagenet" not in result.output


def test_lora_trains_only_the_adapters_and_exports_them_merged(presets, tmp_path):
    from kerastl.data.pipeline import load_splits
    from kerastl.deploy.export import export
    from kerastl.models.classifier import load_model
    from kerastl.training.trainer import train

    cfg = load_config(None, [o for o in TINY if not o.startswith(("model.", "phases."))] + [
        f"model.backbone=hub:{presets / 'vit'}", "results.evaluation=false", "results.keep=last",
        "phases=[{name: head, epochs: 1}, {name: lora, epochs: 2, learning_rate: 0.003, unfreeze: 'lora:2'}]", "deterministic=true",
    ])
    preset = keras_hub.models.Backbone.from_preset(str(presets / "vit"))
    result = train(cfg, output_dir=tmp_path / "run", verbose=0)
    assert result.metrics["test_accuracy"] >= 0.7  # chance 0.33; measured 0.89 (the probe: 0.91)
    test = load_splits(cfg.data, cfg.seed).test  # measured with the adapters (LoRA changes the layers: a new trace)
    answered = result.model.predict(test.images, verbose=0)[np.arange(len(test)), test.labels]
    assert result.metrics["test_loss"] == pytest.approx(-np.mean(np.log(np.clip(answered, 1e-7, 1))), rel=1e-4)
    backbone = result.model.get_layer("backbone")
    adapted = [layer for layer in backbone._flatten_layers(include_self=False) if getattr(layer, "lora_enabled", False)]
    assert {layer.name for layer in adapted} == {"query", "value"} and len(adapted) == 4  # 2 transformer layers
    assert all(np.abs(layer.lora_kernel_b.numpy()).max() > 0 for layer in adapted)  # the adapters learned
    frozen = {id(layer._kernel) for layer in adapted}
    for before, after in zip(preset.weights, [w for w in backbone.weights if "lora" not in w.path]):
        if id(after) in frozen or "bias" not in after.path:  # kernels and every other weight: untouched
            np.testing.assert_array_equal(before.numpy(), after.numpy(), err_msg=after.path)
    phases = result.metrics["phases"]
    assert 0 < phases["lora"]["trainable_params"] < backbone.count_params() and phases["lora"]["unfreeze"] == "lora:2"
    images = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8, 1), dtype=np.uint8)
    reloaded = load_model(tmp_path / "run")  # saved with the adapters merged into the kernels
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), result.model.predict(images, verbose=0), atol=1e-5)
    assert export(tmp_path / "run", "tflite", tmp_path / "tflite")["parity"]["max_abs_diff"] <= 1e-3


def test_a_restored_lora_backup_gets_fresh_adapters_and_computes_the_same(presets, tmp_path):
    from kerastl.training.phases import enable_lora, restart_lora

    backbone = keras_hub.models.Backbone.from_preset(str(presets / "vit"))
    enable_lora(backbone, 2)
    adapted = [layer for layer in backbone._flatten_layers(include_self=False) if getattr(layer, "lora_enabled", False)]
    for layer in adapted:  # as after training: B no longer zero
        layer.lora_kernel_b.assign(np.full(layer.lora_kernel_b.shape, 0.01, "float32"))
    images = np.random.default_rng(1).random((2, 32, 32, 3)).astype("float32")
    expected = backbone(images).numpy()
    backbone.save_weights(tmp_path / "backup.weights.h5")  # what BackupAndRestore writes: the adapters merged
    backbone.load_weights(tmp_path / "backup.weights.h5")  # ... and Keras zeroes A and B on loading
    assert all(not np.any(layer.lora_kernel_a.numpy()) for layer in adapted)
    restart_lora(backbone, seed=0)
    assert all(np.any(layer.lora_kernel_a.numpy()) and not np.any(layer.lora_kernel_b.numpy()) for layer in adapted)
    np.testing.assert_allclose(backbone(images).numpy(), expected, atol=1e-5)


def test_lora_needs_a_keras_hub_transformer(presets):
    from kerastl.training.phases import enable_lora

    with pytest.raises(ConfigError, match="'phases.1.unfreeze' is 'lora:4': LoRA adapts keras-hub transformers"):
        load_config(None, [*TINY, "phases.1.unfreeze=lora:4"])
    with pytest.raises(ConfigError, match="backbone has no attention layers to adapt"):
        enable_lora(keras_hub.models.Backbone.from_preset(str(presets / "resnet")), 4)


def _hub_model(presets, family):
    from kerastl.config import ModelConfig
    from kerastl.models.classifier import build_model

    return build_model(ModelConfig(backbone=f"hub:{presets / family}", weights="imagenet"), 3, (8, 8, 1))


@pytest.mark.parametrize("family, last_block, below", [
    ("vit", ["transformer_block_2", "ln"], "transformer_block_1"),
    ("dinov2", ["layers_1", "backbone_layernorm"], "layers_0"),
    ("dinov3", ["layers_1", "backbone_layernorm"], "layers_0"),
    ("siglip", ["backbone_encoder_block_1", "backbone_post_layer_norm", "backbone_head"], "backbone_encoder_block_0"),
    ("clip", ["backbone_encoder_block_1", "backbone_layer_norm"], "backbone_encoder_block_0"),
    ("efficientnet", ["block2a_expand_conv", "block2b_project", "top_conv"], "block1a_project"),
])
def test_blocks_and_layerwise_decay_count_transformer_layers_and_stages(presets, family, last_block, below):
    from kerastl.config import PhaseConfig
    from kerastl.training.phases import lr_multipliers, set_trainable

    model = _hub_model(presets, family)
    trained = set_trainable(model, PhaseConfig(name="finetune", unfreeze="blocks:1"))
    assert set(last_block) <= set(trained) and below not in trained
    backbone = model.get_layer("backbone")
    assert 0 < len(backbone.trainable_weights) < len(backbone.weights)
    set_trainable(model, PhaseConfig(name="finetune", unfreeze="all"))
    multipliers = lr_multipliers(model, 0.5)
    by_layer = {}
    for layer in backbone._flatten_layers(include_self=False):
        for variable in layer.trainable_weights:
            by_layer.setdefault(layer.name, multipliers[variable.path])
    assert by_layer[last_block[0]] == 1.0 and by_layer[below] == 0.5
    assert min(multipliers.values()) == 0.25  # the embeddings (stem): one block below the first
    assert len(multipliers) == len(backbone.trainable_weights)


def test_blocks_beyond_the_transformer_depth_name_its_layers(presets):
    from kerastl.config import PhaseConfig
    from kerastl.training.phases import set_trainable

    with pytest.raises(ConfigError, match=r"has 2 blocks \(transformer_block_1, transformer_block_2\)"):
        set_trainable(_hub_model(presets, "vit"), PhaseConfig(name="finetune", unfreeze="blocks:3"))
