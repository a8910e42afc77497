import numpy as np
import pytest

from kerastl.config import AugmentConfig
from kerastl.errors import ConfigError
from kerastl.analysis.tta import tta_probabilities


def brightness_classifier(images):
    """Probabilities that depend on where the bright pixels are, so any augmentation changes them."""
    weights = np.linspace(0, 1, images[0].size)
    score = (images.reshape(len(images), -1) / 255.0) @ weights / weights.sum()
    return np.stack([score, 1 - score], axis=1).astype(np.float32)


def test_tta_averages_the_plain_pass_and_augmented_copies():
    images = np.zeros((4, 16, 16, 1), np.uint8)
    images[:, 2:6, 2:6] = 255
    calls = []

    def recording(batch):
        calls.append(batch.copy())
        return brightness_classifier(batch)

    result = tta_probabilities(recording, images, AugmentConfig(preset="light", flip=True), n=5, seed=1)
    assert len(calls) == 5 and np.array_equal(calls[0], images)
    assert all(batch.dtype == np.uint8 and batch.shape == images.shape for batch in calls)
    np.testing.assert_allclose(result, np.mean([brightness_classifier(b) for b in calls], axis=0), rtol=1e-6)
    assert not np.allclose(result, brightness_classifier(images))


def test_one_pass_is_the_plain_prediction_and_zero_is_an_error():
    images = np.full((2, 8, 8, 1), 9, np.uint8)
    np.testing.assert_array_equal(tta_probabilities(brightness_classifier, images, AugmentConfig(), n=1),
                                  brightness_classifier(images))
    with pytest.raises(ConfigError, match="at least 1"):
        tta_probabilities(brightness_classifier, images, AugmentConfig(), n=0)
