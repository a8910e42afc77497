"""Single- vs multi-label, in one place: the output activation, the losses and accuracy, and the targets the
labels stand for.

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

MULTI_LABEL_THRESHOLD = 0.5  # a multi-label model answers every class whose probability exceeds it


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
        (`one_hot`); else Keras' "accuracy", which follows the labels' form (integer or one-hot)."""
        import keras

        if self.multi_label:
            return keras.metrics.BinaryAccuracy(name="accuracy")
        return keras.metrics.CategoricalAccuracy(name="accuracy") if one_hot else "accuracy"

    def targets(self, labels: np.ndarray, num_classes: int) -> np.ndarray:
        """The [N, K] float targets `labels` stand for: one-hot rows, or the multi-hot rows as given."""
        if self.multi_label:
            return np.asarray(labels, np.float64)
        return np.eye(num_classes)[labels]

    def accuracy_of(self, probabilities: np.ndarray, labels: np.ndarray) -> float:
        """Accuracy as the compiled metric counts it (what `model.evaluate` reports): per label with probability
        above 0.5 (Keras' `BinaryAccuracy`), or per image by the most probable class."""
        if self.multi_label:
            return float(np.mean((probabilities > MULTI_LABEL_THRESHOLD) == (np.asarray(labels) > 0.5)))
        return float(np.mean(np.argmax(probabilities, axis=1) == labels))
