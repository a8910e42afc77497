import keras
import numpy as np
import pytest

from kerastl.models.layers import Normalize, Preprocess
from kerastl.models.backbones import backbone_names, get_backbone


def test_preprocess_gray_to_rgb_and_resize():
    gray = np.arange(64, dtype="uint8").reshape(1, 8, 8, 1)
    out = keras.ops.convert_to_numpy(Preprocess(16)(gray))
    assert out.shape == (1, 16, 16, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert 0 <= out.min() and out.max() <= 63


def test_preprocess_center_crop_keeps_the_middle():
    image = np.zeros((1, 10, 10, 3), "uint8")
    image[:, 2:8, 2:8] = 255
    out = keras.ops.convert_to_numpy(Preprocess(5, crop=0.5)(image))
    assert out.shape == (1, 5, 5, 3) and out.min() == 255


def test_rgba_drops_alpha():
    out = Preprocess(4)(np.full((1, 4, 4, 4), 7, "uint8"))
    assert tuple(out.shape) == (1, 4, 4, 3)


@pytest.mark.parametrize("layer", [Preprocess(32, channels=3, crop=0.875, name="p"), Normalize("caffe", name="n")])
def test_layers_round_trip_through_their_config(layer):
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


@pytest.mark.parametrize("name", [n for n in backbone_names() if ":" not in get_backbone(n).constructor])
def test_normalization_matches_the_backbones_own_preprocess_input(name):
    spec = get_backbone(name)
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, 5, 5, 3)).astype("float32")
    module = getattr(keras.applications, spec.module)
    expected = module.preprocess_input(pixels.copy())
    got = keras.ops.convert_to_numpy(Normalize(spec.preprocess)(pixels))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
