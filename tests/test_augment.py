import keras
import numpy as np
import pytest
import tensorflow as tf

from kerastl.models.augment import PRESETS, augmentation_layers
from kerastl.config import AugmentConfig, ModelConfig
from kerastl.models.classifier import build_model


def images(n=8, size=32):
    return np.random.default_rng(0).integers(0, 256, (n, size, size, 3)).astype("float32")


@pytest.mark.parametrize("preset", PRESETS.names())
def test_preset_runs_inside_tf_data(preset):
    layers = augmentation_layers(AugmentConfig(preset=preset), seed=3)
    pipeline = keras.Sequential(layers) if layers else (lambda x, training=True: x)
    ds = tf.data.Dataset.from_tensor_slices(images()).batch(4).map(lambda x: pipeline(x, training=True))
    out = next(iter(ds)).numpy()
    assert out.shape == (4, 32, 32, 3) and out.min() >= 0 and out.max() <= 255.5


@pytest.mark.parametrize("preset", PRESETS.names())
def test_preset_trains_inside_the_model(preset):
    model = build_model(ModelConfig(weights="none", input_size=32, backbone_options={"alpha": 0.35}), 2, (16, 16, 1),
                        augment=AugmentConfig(preset=preset), seed=0)
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    x = np.random.default_rng(0).integers(0, 256, (8, 16, 16, 1)).astype("uint8")
    y = np.eye(2)[[0, 1] * 4].astype("float32")
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_flip_can_be_switched_off():
    with_flip = [type(layer).__name__ for layer in augmentation_layers(AugmentConfig(preset="strong"), seed=0)]
    without = [type(layer).__name__ for layer in augmentation_layers(AugmentConfig(preset="strong", flip=False), seed=0)]
    assert with_flip[0] == "RandomFlip" and "RandomFlip" not in without and "RandAugment" in without


def test_light_augmentation_changes_training_images_only():
    layers = keras.Sequential(augmentation_layers(AugmentConfig(preset="light"), seed=0))
    x = images()
    assert not np.allclose(layers(x, training=True), x)
    np.testing.assert_array_equal(layers(x, training=False), x)


def test_gridmask_blanks_part_of_each_training_image_and_keeps_the_labels():
    from kerastl.data.pipeline import make_dataset
    from kerastl.data.sources import from_arrays
    from kerastl.training.distribute import ONE_DEVICE
    from kerastl.training.features import can_cache
    from kerastl.config import load_config

    source = from_arrays(np.full((16, 32, 32, 3), 200, "uint8"), [0, 1] * 8)
    images, labels = next(iter(make_dataset(source, 16, shuffle=True, seed=3, augment=AugmentConfig(gridmask=0.6))))
    images = images.numpy()
    assert images.dtype == np.uint8 and set(np.unique(images)) == {0, 200}
    masked = (images == 0).mean(axis=(1, 2, 3))
    assert (masked < 0.6).all() and masked.mean() > 0.02  # every image keeps most of itself, the batch is masked
    assert sorted(labels.numpy().argmax(axis=1).tolist()) == [0] * 8 + [1] * 8
    cfg = load_config(None, ["augment.preset=none", "augment.gridmask=0.5"])
    assert not can_cache(cfg, cfg.phases[0], ONE_DEVICE)  # new pixels every epoch: no cached features
