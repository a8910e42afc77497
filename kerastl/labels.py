"""Single- vs multi-label, in one place: the output activation, the losses and accuracy, the targets the labels
stand for, the probabilities of logits at a temperature (calibration), the decisions a model answers, how far
each is from changing (margin), and how labels count and stratify.

Example:
    >>> kind = LabelKind(multi_label=False)
    >>> kind.activation, kind.accuracy_of(np.array([[0.2, 0.8]]), np.array([1]))
    ('softmax', 1.0)
    >>> LabelKind(multi_label=True).targets(np.array([[0, 1]]), 2).tolist()
    [[0.0, 1.0]]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

THRESHOLD = 0.5  # a multi-label model answers every class at this probability or above


@dataclass(frozen=True)
class LabelKind:
    """Whether each image holds exactly one class (softmax) or any number of them (independent sigmoids)."""

    multi_label: bool

    @property
    def activation(self) -> str:
        return "sigmoid" if self.multi_label else "softmax"

    def loss(self, kind: str = "crossentropy", focal_gamma: float = 2.0, label_smoothing: float = 0.0):
        """The recipe's Keras loss on one-hot (or multi-hot) targets: categorical or binary, cross-entropy or focal."""
        import keras

        gamma = {"gamma": focal_gamma} if kind == "focal" else {}
        if self.multi_label:
            cls = keras.losses.BinaryFocalCrossentropy if kind == "focal" else keras.losses.BinaryCrossentropy
        else:
            cls = keras.losses.CategoricalFocalCrossentropy if kind == "focal" else keras.losses.CategoricalCrossentropy
        return cls(label_smoothing=label_smoothing, **gamma)

    def default_loss(self):
        """What `ImageClassifier.compile()` uses: binary cross-entropy, or a cross-entropy taking integer
        labels or one-hot rows alike (as a Keras user's `fit(x, y)` may hold either)."""
        import keras

        from kerastl.models.losses import ClassCrossentropy

        return keras.losses.BinaryCrossentropy() if self.multi_label else ClassCrossentropy()

    def accuracy(self, one_hot: bool = False):
        """The "accuracy" metric: per label at 0.5 (multi-label); categorical on the recipe's one-hot targets
        (`one_hot`); else one that follows the labels' form (integer or one-hot), as Keras' "accuracy" does."""
        import keras

        from kerastl.models.losses import ClassAccuracy

        if self.multi_label:
            return keras.metrics.BinaryAccuracy(name="accuracy")
        return keras.metrics.CategoricalAccuracy(name="accuracy") if one_hot else ClassAccuracy()

    def targets(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """The [N, K] float targets `labels` stand for: one-hot rows, or the multi-hot rows as given."""
        if self.multi_label:
            return np.asarray(labels, np.float64)
        return np.eye(num_classes)[labels]

    def accuracy_of(self, probabilities: np.ndarray, labels: np.ndarray) -> float:
        """Accuracy as the compiled metric counts it (what `model.evaluate` reports): per label with probability
        above 0.5 (Keras' `BinaryAccuracy`), or per image by the most probable class."""
        if self.multi_label:
            return float(np.mean((probabilities > THRESHOLD) == (np.asarray(labels) > 0.5)))
        return float(np.mean(np.argmax(probabilities, axis=1) == labels))

    def probabilities(self, logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
        """softmax(logits / T), or a sigmoid per class (multi-label), in float64."""
        scaled = np.asarray(logits, np.float64) / temperature
        if self.multi_label:
            return 1.0 / (1.0 + np.exp(-scaled))
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        exp = np.exp(scaled)
        return exp / exp.sum(axis=1, keepdims=True)

    def logits(self, probabilities: np.ndarray) -> np.ndarray:
        """Logits that give `probabilities` at T = 1: log p (softmax: up to a constant per image) or logit(p)."""
        clipped = np.clip(np.asarray(probabilities, np.float64), 1e-30, 1 - 1e-12)
        return np.log(clipped) - np.log1p(-clipped) if self.multi_label else np.log(clipped)

    def cross_entropy(self, probabilities: np.ndarray, labels: np.ndarray) -> float:
        """Mean categorical cross-entropy against class indices (binary per class against 0/1 rows)."""
        clipped = np.clip(probabilities, 1e-12, 1 - 1e-12)
        if self.multi_label:
            truth = labels.astype(bool)
            return float(-(truth * np.log(clipped) + ~truth * np.log(1 - clipped)).mean())
        return float(-np.log(clipped[np.arange(len(labels)), labels]).mean())

    def decisions(self, probabilities: np.ndarray) -> np.ndarray:
        """What a model answers: the class index per image [N], or the 0/1 presence of each class [N, K]."""
        probabilities = np.asarray(probabilities)
        return (probabilities >= THRESHOLD).astype(np.uint8) if self.multi_label else probabilities.argmax(axis=1)

    def agreement(self, probabilities: np.ndarray, reference: np.ndarray) -> float:
        """The share of images two models answer the same (the whole label set, multi-label)."""
        same = self.decisions(probabilities) == self.decisions(reference)
        return float(np.mean(same.all(axis=1) if self.multi_label else same))

    def margin(self, probabilities: np.ndarray) -> np.ndarray:
        """How far each image's answer is from changing: top-1 minus top-2 probability, or (multi-label) the
        smallest distance of a class's probability to the threshold."""
        if self.multi_label:
            return np.abs(probabilities - THRESHOLD).min(axis=1)
        top_two = np.sort(probabilities, axis=1)[:, -2:]
        return top_two[:, 1] - top_two[:, 0]

    @property
    def stratifies(self) -> bool:
        """Whether splits can keep each class's share: class indices do, label sets do not (a seeded random split)."""
        return not self.multi_label

    def class_counts(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """Images per class (multi-label: images holding each class)."""
        if self.multi_label:
            return labels.sum(axis=0).astype(np.int64)
        return np.bincount(labels, minlength=num_classes)

    def holds(self, labels: np.ndarray, classes) -> np.ndarray:
        """[N] bool: which images hold any of the class indices `classes`."""
        return labels[:, classes].any(axis=1) if self.multi_label else np.isin(labels, classes)
