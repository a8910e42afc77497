"""The default loss and metric of `ImageClassifier.compile()`: cross-entropy and accuracy on integer labels or
one-hot rows alike.

Registered under the `kerastl` package, so a compiled `model.keras` reloads after `import kerastl`.

Example:
    >>> loss = ClassCrossentropy()
    >>> float(loss(np.array([1]), np.array([[0.5, 0.5]])))   # integer labels
    0.6931...
    >>> float(loss(np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]])))   # one-hot rows
    0.6931...
    >>> accuracy = ClassAccuracy(); accuracy.update_state(np.array([1, 0]), np.array([[0.2, 0.8], [0.3, 0.7]]))
    >>> float(accuracy.result())
    0.5
"""

from __future__ import annotations

import keras


def holds_rows(y_true, y_pred) -> bool:
    """Whether the labels are one-hot (or soft) rows [B, K] rather than class indices [B] or [B, 1], read from the
    static shapes."""
    return len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1] and y_true.shape[-1] != 1


@keras.saving.register_keras_serializable(package="kerastl")
class ClassCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy of probabilities against one-hot (or soft) rows [B, K], or sparse
    cross-entropy against class indices [B] or [B, 1]; which one is read from the labels' static shape."""

    def __init__(self, name: str = "class_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        if holds_rows(y_true, y_pred):
            return keras.losses.categorical_crossentropy(y_true, y_pred)
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)


def class_accuracy(y_true, y_pred):
    """Per image, 1.0 where the most probable class is the label (one-hot rows or class indices), else 0.0."""
    if holds_rows(y_true, y_pred):
        return keras.metrics.categorical_accuracy(y_true, y_pred)
    return keras.metrics.sparse_categorical_accuracy(y_true, y_pred)


@keras.saving.register_keras_serializable(package="kerastl")
class ClassAccuracy(keras.metrics.MeanMetricWrapper):
    """"accuracy" on integer labels or one-hot rows alike, as Keras' "accuracy" string; but Keras resolves the string
    (and creates its variables) inside the first trace of the training step, which makes TensorFlow trace the step
    twice, while this metric holds its variables from the start."""

    def __init__(self, name: str = "accuracy", dtype=None):
        super().__init__(fn=class_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}
