"""Validation through the run's feature extractor, with the logits kept for the end of the run.

On one device a phase validates in a callback instead of Keras' `validation_data`: the validation images go
through the feature extractor that was traced for the frozen features (so each phase does not trace the whole
model again for Keras' `evaluate`), then through the head; a head on cached features reads the cached validation
features. The epoch's `val_loss` and `val_accuracy` are what `model.evaluate` reports: the compiled loss and the
accuracy of the model's probabilities. The logits are kept for the weights the model holds and for the best epoch's,
so the end of the run calibrates and measures `model.keras` and `model_last.keras` without predicting the
validation split again (`kerastl.training.finishing`).

Example:
    >>> kept = ValidationLogits()
    >>> callback = validation_callback(model, head_logits(model), features, splits.validation, 10, model.loss, kept)
    >>> model.fit(train_data, epochs=3, callbacks=[callback])   # first in the list: the others read its scores
    >>> kept.current   # (epoch, [N, K] logits) of the last epoch validated
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from kerastl.data.sources import ImageSource


@dataclass
class ValidationLogits:
    """Validation logits computed during training: `current` of the weights the model holds (None when unknown),
    `best` of the weights `best/` keeps (`kerastl.training.checkpoints.best_keeper`), each as (epoch, logits)."""

    current: Optional[tuple[int, np.ndarray]] = None
    best: Optional[tuple[int, np.ndarray]] = None

    def of_epoch(self, which: str, epoch: int) -> Optional[np.ndarray]:
        """The logits `which` ("current" or "best") holds when they are of `epoch`, else None."""
        held = getattr(self, which)
        return held[1] if held is not None and held[0] == epoch else None

    def after_restore(self, restored_epoch: int) -> None:
        """The model's weights were set to those of `restored_epoch` (Keras `EarlyStopping(restore_best_weights)`)."""
        if self.current is not None and self.current[0] != restored_epoch:
            self.current = None


def loss_and_accuracy(probabilities: np.ndarray, source: ImageSource, num_classes: int, loss) -> tuple[float, float]:
    """What `model.evaluate` reports for `probabilities` on `source`: the compiled `loss` and accuracy
    (categorical, or binary per label at 0.5 for multi-label sources)."""
    kind = source.label_kind
    targets = kind.targets(source.labels, num_classes)
    return float(loss(targets, probabilities)), kind.accuracy_of(probabilities, source.labels)


def validation_callback(model, read_logits: Callable[[np.ndarray], np.ndarray], inputs: np.ndarray, source: ImageSource,
                        num_classes: int, loss, kept: ValidationLogits):
    """A Keras callback validating `model` at the end of every epoch: `read_logits(inputs)` (the validation images,
    or their cached features), then `val_loss` and `val_accuracy` into the epoch's logs, as Keras' own validation
    would write them (at the model's temperature, with the compiled `loss`); the logits go to `kept.current`.
    It must come first among the callbacks, so that every other one sees the validation scores."""
    import keras

    from kerastl.analysis.calibration import temperature

    class HeldOutValidation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            logits = read_logits(inputs)
            probabilities = source.label_kind.probabilities(logits, temperature(model) or 1.0).astype(np.float32)
            logs["val_loss"], logs["val_accuracy"] = loss_and_accuracy(probabilities, source, num_classes, loss)
            kept.current = (epoch + 1, logits)

    return HeldOutValidation()
