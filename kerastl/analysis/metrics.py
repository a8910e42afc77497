"""Classification metrics computed from predicted probabilities (NumPy only).

Example:
    >>> probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    >>> classification_metrics(probabilities, np.array([0, 1, 1]), ["cat", "dog"])["accuracy"]
    0.666667
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from kerastl.labels import THRESHOLD, LabelKind


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts [true class, predicted class]."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels, predicted), 1)
    return matrix


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 15) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    return float(sum(b["count"] / len(labels) * abs(b["accuracy"] - b["confidence"]) for b in reliability(probabilities, labels, bins)))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict]:
    """Per non-empty equal-width bin of confidence (top probability; a bin holds (low, high]): mean confidence,
    accuracy and how many images (the reliability diagram, and what the calibration error averages)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    return [
        {"bin": b, "confidence": float(confidence[which == b].mean()), "accuracy": float(correct[which == b].mean()),
         "count": int((which == b).sum())}
        for b in range(bins) if (which == b).any()
    ]


def multi_label_metrics(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str]) -> dict:
    """Multi-label metrics at the 0.5 threshold: accuracy (exact match of the whole label set, as
    scikit-learn's `accuracy_score`), per-label accuracy,
    binary cross-entropy, per-class precision/recall/F1/support, and their micro and macro averages."""
    predicted = LabelKind(True).decisions(probabilities).astype(bool)
    truth = labels.astype(bool)
    counts = (predicted & truth).sum(axis=0), predicted.sum(axis=0), truth.sum(axis=0)
    precision, recall, f1 = _scores(*counts)
    micro = _scores(*(np.array([count.sum()]) for count in counts))
    clipped = np.clip(probabilities, 1e-7, 1 - 1e-7)
    return {
        "accuracy": _rounded((predicted == truth).all(axis=1).mean()),
        "label_accuracy": _rounded((predicted == truth).mean()),
        "loss": _rounded(-(truth * np.log(clipped) + ~truth * np.log(1 - clipped)).mean()),
        "threshold": THRESHOLD,
        "num_images": int(len(labels)),
        "per_class": _per_class(class_names, precision, recall, f1, counts[2]),
        "micro_avg": _averages(*micro),
        "macro_avg": _averages(precision, recall, f1),
    }


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, class_names: Sequence[str], top_k: int = 5) -> dict:
    """Accuracy, top-k accuracy, cross-entropy, per-class precision/recall/F1/support, their macro and
    weighted averages, and the expected calibration error."""
    num_classes = len(class_names)
    predicted = probabilities.argmax(axis=1)
    matrix = confusion_matrix(labels, predicted, num_classes)
    support = matrix.sum(axis=1)
    precision, recall, f1 = _scores(np.diag(matrix), matrix.sum(axis=0), support)
    k = min(top_k, max(1, num_classes - 1))  # top-k of all classes would be 1.0 by construction
    top = np.argsort(-probabilities, axis=1)[:, :k]
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    return {
        "accuracy": _rounded((predicted == labels).mean()),
        f"top_{k}_accuracy": _rounded((top == labels[:, None]).any(axis=1).mean()),
        "loss": _rounded(-np.log(picked).mean()),
        "expected_calibration_error": _rounded(expected_calibration_error(probabilities, labels)),
        "num_images": int(len(labels)),
        "per_class": _per_class(class_names, precision, recall, f1, support),
        "macro_avg": _averages(precision, recall, f1),
        "weighted_avg": _averages(precision, recall, f1, weights=support / max(support.sum(), 1)),
    }


def _scores(true_positive: np.ndarray, predicted_count: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, ...]:
    """Precision, recall and F1 per class from counts; 0 where a ratio is undefined."""
    true_positive = np.asarray(true_positive, float)
    precision = np.divide(true_positive, predicted_count, out=np.zeros_like(true_positive), where=predicted_count > 0)
    recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(true_positive), where=denominator > 0)
    return precision, recall, f1


def _per_class(class_names: Sequence[str], precision, recall, f1, support) -> dict:
    return {
        name: {"precision": _rounded(precision[i]), "recall": _rounded(recall[i]), "f1": _rounded(f1[i]), "support": int(support[i])}
        for i, name in enumerate(class_names)
    }


def _averages(precision, recall, f1, weights=None) -> dict:
    """Mean of each score, or its `weights`-weighted sum."""
    average = np.mean if weights is None else (lambda values: (values * weights).sum())
    return {"precision": _rounded(average(precision)), "recall": _rounded(average(recall)), "f1": _rounded(average(f1))}


def _rounded(value) -> float:
    return round(float(value), 6)
