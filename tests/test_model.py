import functools

import keras
import numpy as np
import pytest

from kerastl.config import AugmentConfig, HeadConfig, ModelConfig, PhaseConfig
from kerastl.data.pipeline import make_dataset
from kerastl.data.sources import read_source
from kerastl.models.classifier import ClassifierSpec, build_model, load_model
from kerastl.models.saving import save_keras_file
from kerastl.training.phases import make_optimizer, set_trainable

TINY_MODEL = ModelConfig(weights="none", input_size=32, backbone_options={"alpha": 0.35})


@pytest.fixture(scope="module")
def digits():
    return read_source("builtin:digits").select(["0", "1", "2"], max_per_class=40, seed=0)


def fit_one_epoch(model, source, phase):
    set_trainable(model, phase)
    model.compile(optimizer=make_optimizer(phase, 4), loss="categorical_crossentropy")
    model.fit(make_dataset(source, 32, shuffle=True, seed=0), epochs=1, shuffle=False, verbose=0)


def snapshot(layer):
    return [w.numpy().copy() for w in layer.weights]


def test_model_takes_raw_uint8_pixels_and_outputs_probabilities(digits):
    model = build_model(TINY_MODEL, 3, digits.image_shape)
    assert model.input.dtype == "uint8" and tuple(model.input.shape) == (None, 8, 8, 1)
    probs = model.predict(digits.images[:5], verbose=0)
    assert probs.shape == (5, 3) and np.allclose(probs.sum(axis=1), 1, atol=1e-5)
    assert model.get_layer("backbone").trainable is False


@pytest.mark.parametrize("pooling", ["avg", "max", "flatten"])
def test_head_pooling_pools_the_feature_map_as_named(pooling, small_cnn_backbone):
    """On the small CNN's 8 x 8 feature map (MobileNetV2 at 32 px ends 1 x 1, where every pooling agrees, and its
    random-weight activations are ~1e-10, where any pooling passes a tolerance)."""
    cfg = ModelConfig(backbone=small_cnn_backbone, weights="none", input_size=32, head=HeadConfig(pooling=pooling, hidden=(16,)))
    model = build_model(cfg, 4, (8, 8, 1))
    assert model.get_layer("hidden_0").units == 16 and model.output.shape == (None, 4)
    images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
    feature_map = keras.Model(model.input, model.get_layer("pool").input).predict(images, verbose=0)
    pooled = keras.Model(model.input, model.get_layer("pool").output).predict(images, verbose=0)
    assert feature_map.shape[1:3] == (8, 8) and feature_map.std() > 0.01
    expected = {"avg": feature_map.mean(axis=(1, 2)), "max": feature_map.max(axis=(1, 2)),
                "flatten": feature_map.reshape(len(images), -1)}[pooling]
    np.testing.assert_allclose(pooled, expected, rtol=1e-5, atol=0)


def test_augmentation_is_active_in_training_only(digits):
    model = build_model(TINY_MODEL, 3, digits.image_shape, augment=AugmentConfig(preset="strong"), seed=1)
    augment = model.get_layer("augment")
    x = keras.ops.convert_to_tensor(np.repeat(digits.images[:4], 4, axis=1).astype("float32"))
    assert np.array_equal(augment(x, training=False), x)
    assert not np.array_equal(augment(x, training=True), x)
    np.testing.assert_array_equal(model.predict(digits.images[:4], verbose=0), model.predict(digits.images[:4], verbose=0))


def test_head_phase_leaves_every_backbone_weight_bit_identical(digits):
    model = build_model(TINY_MODEL, 3, digits.image_shape)
    backbone, head = model.get_layer("backbone"), model.get_layer("logits")
    before, head_before = snapshot(backbone), snapshot(head)
    fit_one_epoch(model, digits, PhaseConfig(name="head", learning_rate=0.01))
    for a, b in zip(before, snapshot(backbone), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(head_before[0], snapshot(head)[0])


def test_finetune_changes_only_unfrozen_layers_and_never_batchnorm_statistics(digits):
    model = build_model(TINY_MODEL, 3, digits.image_shape)
    backbone = model.get_layer("backbone")
    phase = PhaseConfig(name="finetune", learning_rate=0.01, unfreeze=20)
    trainable = set(set_trainable(model, phase))
    before = {layer.name: snapshot(layer) for layer in backbone.layers if layer.weights}
    fit_one_epoch(model, digits, phase)
    changed = {
        layer.name
        for layer in backbone.layers
        if layer.weights and any(not np.array_equal(a, b) for a, b in zip(before[layer.name], snapshot(layer), strict=True))
    }
    batchnorm = {layer.name for layer in backbone.layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert trainable and not trainable & batchnorm
    assert changed and changed <= trainable
    assert not changed & batchnorm, "BatchNorm weights or moving statistics moved"
    assert all(name in {l.name for l in backbone.layers[-20:]} for name in trainable)


def test_unfreeze_all_from_named_layer_and_blocks(digits):
    model = build_model(TINY_MODEL, 3, digits.image_shape)
    every = set_trainable(model, PhaseConfig(name="all", unfreeze="all"))
    named = set_trainable(model, PhaseConfig(name="from", unfreeze="from:block_16_expand"))
    assert len(every) > len(named) and named[0] == "block_16_expand"
    two_blocks = set_trainable(model, PhaseConfig(name="blocks", unfreeze="blocks:2"))
    assert two_blocks[0] == "block_15_expand" and two_blocks[-1] == "Conv_1"  # block 15, block 16 and the top conv
    assert set_trainable(model, PhaseConfig(name="head", unfreeze="head")) == []
    from kerastl.errors import ConfigError

    with pytest.raises(ConfigError, match="unfreeze 'from:block_99' names no layer of the backbone"):
        set_trainable(model, PhaseConfig(name="x", unfreeze="from:block_99"))
    with pytest.raises(ConfigError, match="'blocks:40' but backbone 'mobilenet_v2' has 17 blocks"):
        set_trainable(model, PhaseConfig(name="x", unfreeze="blocks:40"))


def test_cosine_schedule_with_warmup():
    optimizer = make_optimizer(PhaseConfig(name="p", epochs=10, learning_rate=0.1, schedule="cosine", warmup_epochs=1), 10)
    schedule = optimizer.learning_rate if callable(optimizer.learning_rate) else optimizer._learning_rate
    assert float(schedule(0)) == pytest.approx(0.0)
    assert float(schedule(10)) == pytest.approx(0.1)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-6)


def test_saved_model_reloads_and_predicts_the_same(tmp_path, digits):
    model = build_model(TINY_MODEL, 3, digits.image_shape, augment=AugmentConfig(preset="light"))
    save_keras_file(model, tmp_path / "m.keras")
    reloaded = load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(reloaded.predict(digits.images[:8], verbose=0), model.predict(digits.images[:8], verbose=0), atol=1e-6)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m.keras"]  # no temporary file left beside it


def test_saving_builds_no_throwaway_layer_per_layer_saved(tmp_path, monkeypatch):
    """Keras 3.15 looks up the attributes its saving skips under another key than it stores them, and builds a
    `Layer` to find them for every layer it saves; `save_keras_file` stores them where Keras looks."""
    from keras.src.layers.layer import Layer

    model = build_model(TINY_MODEL, 3, (8, 8, 1))
    save_keras_file(model, tmp_path / "first.keras")
    built, build = [], Layer.__init__

    @functools.wraps(build)
    def counting_build(self, *args, **kwargs):
        built.append(type(self))
        build(self, *args, **kwargs)

    monkeypatch.setattr(Layer, "__init__", counting_build)
    save_keras_file(model, tmp_path / "second.keras")
    assert built.count(Layer) == 0  # (the model's `head` and `preprocessor` views build their own Functional)
    assert len(model.layers) > 1 and (tmp_path / "second.keras").stat().st_size > 0


def test_the_model_carries_its_facts_and_a_model_saved_before_them_still_works(tmp_path):
    from kerastl.models.classifier import ImageClassifier, model_facts

    spec = ClassifierSpec(ModelConfig(weights="none", input_size=32, backbone_options={"alpha": 0.35}), ["cat", "dog"],
                          (8, 8, 1), multi_label=True)
    model = spec.build()
    assert isinstance(model, ImageClassifier)
    assert model_facts(model) == {
        "backbone": "mobilenet_v2", "class_names": ["cat", "dog"], "multi_label": True, "feature_layer": "pool",
        "normalization": "tf", "input_size": 32, "resize": "squash", "weights": "none", "augment": None, "center_crop": None,
        "backbone_options": {"alpha": 0.35}, "head": {"pooling": "avg", "norm": "auto", "dropout": 0.2, "hidden": [], "init": "auto"},
    }
    model.save(tmp_path / "m.keras")
    assert load_model(tmp_path / "m.keras").facts == model.facts
    older = keras.Model(model.inputs, model.outputs, name=model.name)  # how kerastl saved models before facts
    facts = model_facts(older)
    assert (facts["backbone"], facts["multi_label"], facts["feature_layer"]) == ("mobilenet_v2", True, "pool")
    assert set_trainable(older, PhaseConfig(name="top", unfreeze="blocks:1"))  # the backbone's blocks found


def test_a_run_config_becomes_the_classifier_it_describes():
    from kerastl.config import config_from_dict

    cfg = config_from_dict({"data": {"multi_label": True, "label_separator": "|", "resize": "crop"},
                             "compute": {"precision": "mixed_bfloat16"}, "seed": 5, "model": {"weights": "none"}})
    spec = ClassifierSpec.from_config(cfg, ["a", "b"], [8, 8, 1], weights="/tmp/w.weights.h5")
    assert (spec.multi_label, spec.resize, spec.precision, spec.seed) == (True, "crop", "mixed_bfloat16", 5)
    assert spec.model.weights == "/tmp/w.weights.h5" and spec.augment == cfg.augment
    assert spec.class_names == ("a", "b") and spec.image_shape == (8, 8, 1) and spec.num_classes == 2


def test_from_preset_refuses_class_names_that_do_not_match_num_classes():
    from kerastl import ConfigError, ImageClassifier

    with pytest.raises(ConfigError, match="2 names for num_classes=3"):
        ImageClassifier.from_preset("mobilenet_v2", 3, weights=None, class_names=["a", "b"])
