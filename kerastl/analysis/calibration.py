"""Confidence you can use: temperature scaling, reliability and the accuracy/coverage trade-off.

Temperature scaling (Guo et al., 2017) divides the model's logits by one number `T`, fitted to
minimise the cross-entropy on the validation split. It changes no prediction (the order of the
classes is kept) but makes the probabilities mean what they say: of the images answered with
probability 0.8, about 80% are right. `T` lives in the model's `Calibrated` output layer, so the
saved model and its exports answer calibrated.

Example:
    >>> summary = calibrate(model, splits.validation, batch_size=32)
    >>> summary["temperature"], temperature(model)
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from kerastl.analysis.metrics import expected_calibration_error
from kerastl.data.pipeline import image_batches
from kerastl.data.sources import ImageSource
from kerastl.models.classifier import LOGITS_LAYER, OUTPUT_LAYER, is_multi_label
from kerastl.models.layers import Calibrated

TEMPERATURE_RANGE = (0.05, 20.0)  # the fitted temperature is searched within, on a log scale


def temperature(model) -> Optional[float]:
    """The temperature of a kerastl model's output, or None for a model saved before models had one."""
    layer = model.get_layer(OUTPUT_LAYER)
    return float(layer.temperature.numpy()) if isinstance(layer, Calibrated) else None


def calibrate(model, source: ImageSource, batch_size: int) -> dict:
    """Fit the temperature of `model` on `source` (the validation split) and set it in the model.

    Returns:
        `temperature`, and the cross-entropy and expected calibration error on `source` before
        (T = 1) and after.
    """
    return calibrate_logits(model, model_logits(model, {"validation": source}, batch_size)["validation"], source)


def model_logits(model, sources: dict, batch_size: int) -> dict[str, np.ndarray]:
    """The logits (the output layer's input, before the temperature) of a kerastl model on each `ImageSource` of
    `sources` (name -> source), float64; one logits model serves them all (Keras traces its predict once)."""
    import keras

    logits_model = keras.Model(model.input, model.get_layer(LOGITS_LAYER).output)
    return {name: np.asarray(logits_model.predict(image_batches(source.images, batch_size), verbose=0)[: len(source)], np.float64)
            for name, source in sources.items()}


def calibrate_logits(model, logits: np.ndarray, source: ImageSource) -> dict:
    """`calibrate` from the model's `logits` on `source`, already computed."""
    multi_label = is_multi_label(model)
    fitted = fit_temperature(logits, source.labels, multi_label)
    model.get_layer(OUTPUT_LAYER).temperature.assign(fitted)
    summary = {"temperature": round(fitted, 6), "fitted_on": f"{len(source)} validation images"}
    for when, value in (("before", 1.0), ("after", fitted)):
        probabilities = scaled_probabilities(logits, value, multi_label)
        summary[f"loss_{when}"] = round(cross_entropy(probabilities, source.labels, multi_label), 6)
        if not multi_label:
            summary[f"ece_{when}"] = round(expected_calibration_error(probabilities, source.labels), 6)
    return summary


def fit_temperature(logits: np.ndarray, labels: np.ndarray, multi_label: bool = False) -> float:
    """The temperature minimising the cross-entropy of `logits / T` against `labels`.

    Example:
        >>> fit_temperature(np.array([[9.0, 0.0], [9.0, 0.0]]), np.array([0, 1]))  # half wrong: T grows
    """
    from scipy.optimize import minimize_scalar

    def loss(log_t: float) -> float:
        return cross_entropy(scaled_probabilities(logits, float(np.exp(log_t)), multi_label), labels, multi_label)

    low, high = np.log(TEMPERATURE_RANGE)
    return float(np.exp(minimize_scalar(loss, bounds=(low, high), method="bounded", options={"xatol": 1e-4}).x))


def scaled_probabilities(logits: np.ndarray, value: float, multi_label: bool) -> np.ndarray:
    """softmax(logits / T), or sigmoid per class with `multi_label`, in float64."""
    scaled = np.asarray(logits, np.float64) / value
    if multi_label:
        return 1.0 / (1.0 + np.exp(-scaled))
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def uncalibrated(probabilities: np.ndarray, value: float, multi_label: bool) -> np.ndarray:
    """What a model at temperature `value` would have answered at T = 1: its logits are `value * log p`
    up to a constant per image (softmax), or `value * logit(p)` (sigmoid)."""
    clipped = np.clip(np.asarray(probabilities, np.float64), 1e-30, 1 - 1e-12)
    logits = np.log(clipped) - np.log1p(-clipped) if multi_label else np.log(clipped)
    return scaled_probabilities(logits * value, 1.0, multi_label)


def cross_entropy(probabilities: np.ndarray, labels: np.ndarray, multi_label: bool) -> float:
    """Mean categorical cross-entropy (binary per class with `multi_label`)."""
    clipped = np.clip(probabilities, 1e-12, 1 - 1e-12)
    if multi_label:
        truth = labels.astype(bool)
        return float(-(truth * np.log(clipped) + ~truth * np.log(1 - clipped)).mean())
    return float(-np.log(clipped[np.arange(len(labels)), labels]).mean())


def coverage_curve(probabilities: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Accuracy on the images answered and the fraction answered, when images whose top probability is
    below a threshold are answered "unknown" instead (`predict --min-confidence`), for thresholds 0..0.99."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    rows = []
    for threshold in np.round(np.arange(0.0, 1.0, 0.05).tolist() + [0.99], 2):
        answered = confidence >= threshold
        accuracy = round(float(correct[answered].mean()), 6) if answered.any() else None  # none answered
        rows.append({"min_confidence": float(threshold), "coverage": round(float(answered.mean()), 6), "accuracy": accuracy})
    return rows
