"""What the frozen pretrained features are worth, measured in every run, and the head started from it.

Before the first phase, the frozen backbone runs once over the training, validation and test
images; a linear probe and k-NN on those features give the baselines recorded in metrics.json and
report.md, and with `model.head.init` probe/auto the head starts from the probe (LP-FT). After
training, `prediction_health` flags a model whose predictions collapsed to one class or sit at chance.

Example:
    >>> baselines = start_head(model, cfg, splits, init=True)       # before the phases
    >>> baselines["linear_probe"]["test_accuracy"]
    >>> prediction_health(model.predict(test_images), splits.test)["collapsed"]
"""

from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numpy as np

from kerastl.config import Config
from kerastl.weights import Weights
from kerastl.data.pipeline import Splits
from kerastl.run_metrics import RunMetrics
from kerastl.offload import computed
from kerastl.training.linear_probe import LinearProbe

COLLAPSE_SHARE = 0.9  # one class predicted for at least this share of the images ...
COLLAPSE_EXCESS = 0.25  # ... and for this much more than its share of the true labels: collapsed


def head_init(cfg: Config) -> str:
    """`model.head.init` resolved: "probe" or "random" (`auto` is probe wherever a probe fits the head)."""
    init = cfg.model.head.init
    if init == "auto":
        return "random" if cfg.model.head.hidden or cfg.data.multi_label else "probe"
    return init


def start_head(
    model, cfg: Config, splits: Splits, init: bool, verbose: int | str = 0, features: Optional[dict] = None
) -> dict:
    """Measure the baselines on the frozen features (computed here, or `features` from `split_features`) and,
    with `init`, start the head from the probe.

    Returns:
        The baselines for metrics.json (see `measure_baselines`) plus `head_init`.
    """
    sources = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    features = features if features is not None else frozen_features(model, sources, cfg.data.batch_size, verbose)
    baselines, probe = measure_baselines(features, sources, len(splits.class_names))
    if init:
        init_head_from_probe(model, probe)
    baselines["head_init"] = "probe" if init else "random"
    return baselines


def split_features(model, splits: Splits, batch_size: int, verbose: int | str = 0, extractor=None) -> dict[str, np.ndarray]:
    """Pooled frozen-backbone features of each split of `splits` ("train", "validation", "test" when present)."""
    sources = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    return frozen_features(model, sources, batch_size, verbose, extractor)


def frozen_features(model, sources: dict, batch_size: int, verbose: int | str = 0, extractor=None) -> dict[str, np.ndarray]:
    """Pooled backbone features of each split in `sources` (name -> ImageSource or None), in inference mode, through
    `extractor` (default: a new `feature_extractor(model)`; one model for every split: Keras traces its predict once)."""
    from kerastl.models.classifier import feature_extractor
    from kerastl.training.features import extract_features

    extractor = extractor or feature_extractor(model)
    return {name: extract_features(model, source.images, batch_size, verbose, extractor=extractor)
            for name, source in sources.items() if source is not None}


def measure_baselines(features: dict[str, np.ndarray], sources: dict, num_classes: int) -> tuple[dict, LinearProbe]:
    """The linear probe and k-NN on frozen `features` (from `frozen_features`): fitted on "train",
    the probe's L2 strength chosen on "validation", accuracies on "validation" and "test"
    (`kerastl.training.linear_probe.frozen_baselines`, through `kerastl.offload`).

    Returns:
        The baselines for metrics.json, e.g. `{"linear_probe": {"c": 0.1, "val_accuracy": 0.8, "test_accuracy": 0.79},
        "knn": {"k": 10, "test_accuracy": 0.6}}`, and the fitted probe.
    """
    labels = {split: sources[split].labels for split in features}
    answer = computed("frozen_baselines", features=features, labels=labels, num_classes=num_classes)
    return answer["scores"], LinearProbe(**answer["probe"])


def init_head_from_probe(model, probe: LinearProbe) -> None:
    """Set the head of a kerastl model so that, in inference mode, it computes the probe's logits.

    With `head.norm: batch` the head's BatchNormalization takes the probe's standardization as its
    moving statistics and the output layer its coefficients; without, the standardization is folded
    into the output layer. The model's outputs then equal `softmax(probe.logits(features))`.
    """
    from kerastl.models.classifier import HEAD_NORM, LOGITS_LAYER

    output = model.get_layer(LOGITS_LAYER)
    if HEAD_NORM not in {layer.name for layer in model.layers}:
        output.set_weights(list(probe.dense_weights()))
        return
    norm = model.get_layer(HEAD_NORM)
    variance = np.maximum(probe.scale**2 - norm.epsilon, 0.0)
    norm_scale = np.sqrt(variance + norm.epsilon)  # what BatchNormalization divides by
    norm.set_weights([np.ones_like(variance), np.zeros_like(variance), probe.mean, variance])
    kernel = (probe.coef * (norm_scale / probe.scale)).T
    output.set_weights([kernel.astype(np.float32), probe.intercept.astype(np.float32)])


def prediction_health(probabilities: np.ndarray, source) -> dict:
    """How a model's predictions (`probabilities` [N, K] on `source`'s N images) spread over the classes,
    and whether they collapsed.

    `collapsed`: one class takes at least 90% of the predictions and at least 25 points more than
    its share of the true labels. `at_chance`: accuracy no better than always answering the most
    common true class.
    """
    predicted = np.argmax(probabilities, axis=1)
    num_classes = probabilities.shape[1]
    predicted_share = np.bincount(predicted, minlength=num_classes) / len(predicted)
    true_share = np.bincount(source.labels, minlength=num_classes) / len(source.labels)
    top = int(np.argmax(predicted_share))
    accuracy = float(np.mean(predicted == source.labels))
    return {
        "predicted_classes": int(np.count_nonzero(predicted_share)),
        "largest_predicted_share": round(float(predicted_share[top]), 4),
        "largest_predicted_class": source.class_names[top],
        "collapsed": bool(predicted_share[top] >= COLLAPSE_SHARE and predicted_share[top] - true_share[top] >= COLLAPSE_EXCESS),
        "at_chance": bool(accuracy <= true_share.max()),
    }


def health_warning(health: dict | None) -> str | None:
    """One line for the user when `health` (`prediction_health` plus its "split") shows a failed model, else None."""
    if health is None:
        return None
    split = health["split"]
    if health["collapsed"]:
        return (f"the model predicts {health['largest_predicted_class']!r} for {health['largest_predicted_share']:.0%} of the "
                f"{split} images: it collapsed to one class and learned nothing usable.")
    if health["at_chance"]:
        return f"{split} accuracy is no better than always answering the most common class: the model learned nothing usable."
    return None


def probe_warning(metrics: RunMetrics) -> str | None:
    """One line when the trained model's accuracy is below the linear probe's on the same split, else None."""
    probe = metrics.linear_probe
    for split, key in (("test", "test_accuracy"), ("validation", "val_accuracy")):
        accuracy = getattr(metrics, key)
        if accuracy is not None and key in probe:
            if accuracy < probe[key]:
                return (f"{split} accuracy {accuracy:.4f} is below the linear probe's {probe[key]:.4f} on the frozen "
                        "features it started from: training lost what those features hold.")
            return None
    return None


def probe(config, overrides=(), verbose: int | str = 0) -> dict:
    """The baselines alone, without training: what `kerastl probe --config FILE` prints.

    Args:
        config: a `Config` or the path of a YAML config.
        overrides: deprecated: `key.sub=value` strings applied to a config read from a path (the command line's
            `--set`); pass a `Config` instead.

    Returns:
        `measure_baselines`' dict plus `seconds`, e.g. `{"linear_probe": {"c": 0.1, "val_accuracy": ..., "test_accuracy": ...},
        "knn": {...}, "seconds": 4.2}`.

    Raises:
        ConfigError: `model.weights: pretrain` (pretrain first and give the file) or multi-label data.
        KerastlError: bad config, data or weights.

    Example:
        >>> probe("configs/offline_transfer.yaml")["linear_probe"]["test_accuracy"]
    """
    import time

    from kerastl.config import read_config
    from kerastl.data.pipeline import load_splits
    from kerastl.errors import ConfigError
    from kerastl.models.classifier import ClassifierSpec, input_size

    cfg = read_config(config, overrides, "probe")
    if Weights.parse(cfg.model.weights).kind == "pretrain":
        raise ConfigError("model.weights 'pretrain' has no weights to probe yet: run kerastl pretrain and pass its file.")
    if cfg.data.multi_label:
        raise ConfigError("The linear probe and k-NN baselines are single-label; data.multi_label is true.")
    started = time.perf_counter()
    splits = load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model), progress=verbose != 0)
    model = replace(ClassifierSpec.from_config(cfg, splits.class_names, splits.train.image_shape), augment=None).build()
    sources = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    baselines, _ = measure_baselines(frozen_features(model, sources, cfg.data.batch_size, verbose), sources, len(splits.class_names))
    return {**baselines, "seconds": round(time.perf_counter() - started, 2)}

