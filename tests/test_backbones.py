import numpy as np
import pytest

from kerastl.models.backbones import create_backbone
from kerastl.errors import ConfigError, WeightsError
from kerastl.models.classifier import load_model
from kerastl.models.backbones import backbone_names, get_backbone


@pytest.mark.parametrize("name", backbone_names())
def test_every_backbone_builds_with_its_registered_features_and_size(name):
    spec = get_backbone(name)
    backbone = create_backbone(spec, "none", spec.min_size)
    assert backbone.name == "backbone"
    assert backbone.output_shape[-1] == spec.feature_dim
    assert backbone.count_params() == spec.params
    features = backbone(np.zeros((1, spec.min_size, spec.min_size, 3), "float32"))
    assert features.shape[-1] == spec.feature_dim


def test_imagenet_failure_names_the_cache_file_and_the_alternatives(monkeypatch, tmp_path):
    from keras.src.utils import file_utils

    url = "https://storage.example/keras-applications/mobilenet_v2/mobilenet_v2_weights_x_0.35_96_no_top.h5"

    def offline(*args, **kwargs):
        raise Exception(f"URL fetch failure on {url}: None -- [Errno -2] Name or service not known")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(WeightsError) as info:
        create_backbone(get_backbone("mobilenet_v2"), "imagenet", 96, {"alpha": 0.35})
    message = str(info.value)
    assert str(tmp_path / "keras" / "models" / "mobilenet_v2_weights_x_0.35_96_no_top.h5") in message
    assert "weights file path or to none" in message


def test_weights_file_round_trip_and_mismatch(tmp_path):
    spec = get_backbone("mobilenet_v2")
    source = create_backbone(spec, "none", 32, {"alpha": 0.35})
    path = tmp_path / "b.weights.h5"
    source.save_weights(path)
    loaded = create_backbone(spec, str(path), 32, {"alpha": 0.35})
    for a, b in zip(source.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    with pytest.raises(WeightsError, match=r"does not fit backbone 'mobilenet_v3_small'"):
        create_backbone(get_backbone("mobilenet_v3_small"), str(path), 32)
    with pytest.raises(WeightsError, match=r"Weights file '.*missing\.h5' not found"):
        create_backbone(spec, str(tmp_path / "missing.h5"), 32)


def test_unknown_backbone_option_is_a_config_error():
    with pytest.raises(ConfigError, match="model.backbone_options"):
        create_backbone(get_backbone("resnet50"), "none", 32, {"alpha": 0.5})


def test_alexnet_has_the_papers_shape_and_takes_a_users_weights_file(tmp_path):
    spec = get_backbone("alexnet")
    backbone = create_backbone(spec, "none", 227)
    assert backbone.output_shape == (None, 6, 6, 256)  # 227 -> 55 -> 27 -> 13 -> 6, as in Krizhevsky et al.
    assert [layer.filters for layer in backbone.layers if layer.name.startswith("conv") and hasattr(layer, "filters")] == [
        96, 256, 384, 384, 256,
    ]
    path = tmp_path / "alexnet.weights.h5"
    backbone.save_weights(path)
    loaded = create_backbone(spec, str(path), 227)
    np.testing.assert_array_equal(loaded.get_layer("conv5").kernel.numpy(), backbone.get_layer("conv5").kernel.numpy())
    with pytest.raises(WeightsError, match="'alexnet' has no ImageNet weights in Keras; set model.weights to none"):
        create_backbone(spec, "imagenet", 227)


def test_alexnet_trains_from_scratch_end_to_end(tmp_path):
    from kerastl.config import load_config
    from kerastl.training.trainer import train
    from tests.conftest import TINY

    overrides = [o for o in TINY if not o.startswith(("model.backbone", "model.input_size", "phases.1"))]
    overrides = [o for o in overrides if not o.startswith("phases")]
    cfg = load_config(None, overrides + ["model.backbone=alexnet", "model.input_size=67", "model.backbone_options={batch_norm: true}",
                                         "phases=[{name: scratch, epochs: 1, learning_rate: 0.001, unfreeze: all}]"])
    result = train(cfg, output_dir=tmp_path / "run", verbose=0)
    backbone = result.model.get_layer("backbone")
    assert backbone.get_layer("conv1").kernel.shape == (11, 11, 3, 96)
    phase = result.metrics["phases"]["scratch"]
    trainable = sum(int(np.prod(w.shape)) for w in backbone.weights if "moving" not in w.path)
    assert phase["trainable_params"] >= trainable and phase["batchnorm"]["layers_changed"] > 0  # all of it trained
    assert np.isfinite(result.history["loss"]).all()
    reloaded = load_model(tmp_path / "run" / "model.keras")
    images = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), result.model.predict(images, verbose=0), atol=1e-5)


KERAS_APPLICATIONS = [name for name in backbone_names() if ":" not in get_backbone(name).constructor]


def _one_per_module(names: list[str]) -> list:
    """`names`, the first of each `keras.applications` module by default and its larger siblings (the same
    `preprocess_input` and pooling code, more layers) marked slow."""
    seen: set = set()
    params = []
    for name in names:
        module = get_backbone(name).module
        params.append(pytest.param(name, marks=pytest.mark.slow) if module in seen else name)
        seen.add(module)
    return params


@pytest.mark.parametrize("name", _one_per_module(KERAS_APPLICATIONS))
def test_pooled_features_are_the_keras_applications_own(name):
    """kerastl's features (uint8 in, at the "pool" layer) equal Keras' route with the same weights:
    `preprocess_input` -> `keras.applications.X(include_top=False, pooling="avg")`, which pools where the
    pretrained classifier pools (ConvNeXt: LayerNorm of the average, not the average of LayerNorms)."""
    import importlib

    import keras

    from kerastl import ModelConfig, build_model
    from kerastl.models.classifier import feature_extractor

    spec = get_backbone(name)
    size = 64 if spec.pools_inside else max(spec.min_size, 32)  # ConvNeXt's last map is 2x2 at 64 px: pooling order matters
    model = build_model(ModelConfig(backbone=name, weights="none", input_size=size), 3, (size, size, 3))
    images = np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    ours = np.asarray(feature_extractor(model)(images, training=False))  # what extract_features predicts, called eagerly: no trace
    application = getattr(keras.applications, spec.constructor)(
        include_top=False, weights=None, input_shape=(size, size, 3), pooling="avg"
    )
    application.set_weights(model.get_layer("backbone").get_weights())
    module = importlib.import_module(f"keras.applications.{spec.module}")
    theirs = application(module.preprocess_input(images.astype("float32")), training=False)
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=1e-4, atol=1e-4)


def test_a_corrupt_cached_imagenet_file_is_a_weights_error_naming_the_cache(monkeypatch, tmp_path):
    import keras

    def corrupt(*args, **kwargs):
        raise OSError("Unable to synchronously open file (truncated file: eof = 1024, sblock->base_addr = 0)")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(keras.applications, "MobileNetV2", corrupt)
    with pytest.raises(WeightsError) as info:
        create_backbone(get_backbone("mobilenet_v2"), "imagenet", 96, {"alpha": 0.35})
    message = str(info.value)
    assert "could not be read (Unable to synchronously open file (truncated file" in message
    assert str(tmp_path / "keras" / "models") in message and "delete this backbone's file" in message
