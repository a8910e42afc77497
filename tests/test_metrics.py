import numpy as np
import pytest
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import log_loss, precision_recall_fscore_support, top_k_accuracy_score

from kerastl.analysis.metrics import classification_metrics, confusion_matrix, expected_calibration_error


@pytest.fixture
def predictions():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 4)) + np.eye(4)[rng.integers(0, 4, 200)] * 1.5
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = rng.integers(0, 4, 200)
    labels[:5] = 3  # make sure every class is present
    return probabilities, labels


def test_metrics_agree_with_scikit_learn(predictions):
    probabilities, labels = predictions
    names = ["a", "b", "c", "d"]
    got = classification_metrics(probabilities, labels, names, top_k=2)
    predicted = probabilities.argmax(1)
    assert got["accuracy"] == pytest.approx((predicted == labels).mean(), abs=1e-6)
    assert got["top_2_accuracy"] == pytest.approx(top_k_accuracy_score(labels, probabilities, k=2), abs=1e-6)
    assert got["loss"] == pytest.approx(log_loss(labels, probabilities), abs=1e-5)
    precision, recall, f1, support = precision_recall_fscore_support(labels, predicted, zero_division=0)
    for i, name in enumerate(names):
        assert got["per_class"][name]["precision"] == pytest.approx(precision[i], abs=1e-6)
        assert got["per_class"][name]["recall"] == pytest.approx(recall[i], abs=1e-6)
        assert got["per_class"][name]["f1"] == pytest.approx(f1[i], abs=1e-6)
        assert got["per_class"][name]["support"] == support[i]
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(labels, predicted, average=average, zero_division=0)
        assert [got[f"{average}_avg"][k] for k in ("precision", "recall", "f1")] == pytest.approx([p, r, f], abs=1e-6)
    np.testing.assert_array_equal(confusion_matrix(labels, predicted, 4), sk_confusion_matrix(labels, predicted))


def test_calibration_error_of_perfectly_calibrated_and_overconfident_models():
    labels = np.array([0, 0, 0, 1])
    calibrated = np.tile([0.75, 0.25], (4, 1))  # 75% confident, right 3 times out of 4
    assert expected_calibration_error(calibrated, labels) == pytest.approx(0.0)
    overconfident = np.tile([1.0, 0.0], (4, 1))
    assert expected_calibration_error(overconfident, labels) == pytest.approx(0.25)
