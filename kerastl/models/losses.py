"""The default loss of `ImageClassifier.compile()`: cross-entropy on integer labels or one-hot rows alike.

Registered under the `kerastl` package, so a compiled `model.keras` reloads after `import kerastl`.

Example:
    >>> loss = ClassCrossentropy()
    >>> float(loss(np.array([1]), np.array([[0.5, 0.5]])))   # integer labels
    0.6931...
    >>> float(loss(np.array([[0.0, 1.0]]), np.array([[0.5, 0.5]])))   # one-hot rows
    0.6931...
"""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="kerastl")
class ClassCrossentropy(keras.losses.Loss):
    """Categorical cross-entropy of probabilities against one-hot (or soft) rows [B, K], or sparse
    cross-entropy against class indices [B] or [B, 1]; which one is read from the labels' static shape."""

    def __init__(self, name: str = "class_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        rows = len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1] and y_true.shape[-1] != 1
        if rows:
            return keras.losses.categorical_crossentropy(y_true, y_pred)
        return keras.losses.sparse_categorical_crossentropy(y_true, y_pred)
