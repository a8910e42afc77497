"""Classification metrics computed from predicted probabilities (NumPy only).

Example:
    >>> probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> classification_metrics(probabilities, np.array([0, 1, 1]), ["cat", "dog"])["accuracy"]
    0.666667
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = which == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


THRESHOLD = 0.5  # a multi-label class is predicted present at this probability or above


def decisions(probabilities: np.ndarray, multi_label: bool) -> np.ndarray:
    """What a model answers: the class index per image, or the 0/1 presence of each class (multi-label)."""
    return (probabilities >= THRESHOLD).astype(np.uint8) if multi_label else probabilities.argmax(axis=1)


def multi_label_metrics(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """Multi-label metrics at the 0.5 threshold: accuracy (exact match of the whole label set, as
    scikit-learn's `accuracy_score`), per-label accuracy,
    binary cross-entropy, per-class precision/recall/F1/support, and their micro and macro averages."""
    predicted = decisions(probabilities, True).astype(bool)
    truth = labels.astype(bool)
    true_positive = (predicted & truth).sum(axis=0).astype(float)
    predicted_count, support = predicted.sum(axis=0), truth.sum(axis=0)
    precision = np.divide(true_positive, predicted_count, out=np.zeros(len(class_names)), where=predicted_count > 0)
    recall = np.divide(true_positive, support, out=np.zeros(len(class_names)), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(len(class_names)), where=precision + recall > 0)
    micro_p = true_positive.sum() / max(predicted_count.sum(), 1)
    micro_r = true_positive.sum() / max(support.sum(), 1)
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    rounded = lambda value: round(float(value), 6)  # noqa: E731
    return {
        "accuracy": rounded((predicted == truth).all(axis=1).mean()),
        "label_accuracy": rounded((predicted == truth).mean()),
        "loss": rounded(-(truth * np.log(clipped) + ~truth * np.log(1 - clipped)).mean()),
        "threshold": THRESHOLD,
        "num_images": int(len(labels)),
        "per_class": {
            name: {"precision": rounded(precision[i]), "recall": rounded(recall[i]), "f1": rounded(f1[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "micro_avg": {
            "precision": rounded(micro_p), "recall": rounded(micro_r),
            "f1": rounded(2 * micro_p * micro_r / (micro_p + micro_r) if micro_p + micro_r else 0.0),
        },
        "macro_avg": {"precision": rounded(precision.mean()), "recall": rounded(recall.mean()), "f1": rounded(f1.mean())},
    }


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str], top_k: int = 5) -> dict:
    """Accuracy, top-k accuracy, cross-entropy, per-class precision/recall/F1/support, their macro and
    weighted averages, and the expected calibration error."""
    num_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, num_classes)
    true_positive = np.diag(matrix).astype(float)
    support = matrix.sum(axis=1)
    predicted_count = matrix.sum(axis=0)
    precision = np.divide(true_positive, predicted_count, out=np.zeros(num_classes), where=predicted_count > 0)
    recall = np.divide(true_positive, support, out=np.zeros(num_classes), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(num_classes), where=denominator > 0)
    k = min(top_k, max(1, num_classes - 1))  # top-k of all classes would be 1.0 by construction
    top = np.argsort(-probabilities, axis=1)[:, :k]
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    weights = support / max(support.sum(), 1)
    rounded = lambda value: round(float(value), 6)  # noqa: E731
    return {
        "accuracy": rounded((predicted == labels).mean()),
        f"top_{k}_accuracy": rounded((top == labels[:, None]).any(axis=1).mean()),
        "loss": rounded(-np.log(picked).mean()),
        "expected_calibration_error": rounded(expected_calibration_error(probabilities, labels)),
        "num_images": int(len(labels)),
        "per_class": {
            name: {"precision": rounded(precision[i]), "recall": rounded(recall[i]), "f1": rounded(f1[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "macro_avg": {"precision": rounded(precision.mean()), "recall": rounded(recall.mean()), "f1": rounded(f1.mean())},
        "weighted_avg": {
            "precision": rounded((precision * weights).sum()),
            "recall": rounded((recall * weights).sum()),
            "f1": rounded((f1 * weights).sum()),
        },
    }
