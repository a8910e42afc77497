"""Baselines on frozen features: a linear probe and k-NN, and the probe as the head's starting point.

The linear probe is what the pretrained features hold for a linear classifier: features
standardized per dimension, then an L2-regularized multinomial logistic regression (scikit-learn's lbfgs, in
float32, BLAS on one thread), its regularization chosen on the validation split among `C_GRID`, fitted along the grid
with warm starts. k-NN votes among the nearest training
features by cosine similarity. `head.init: probe` starts the model's Dense head from the fitted
probe (LP-FT, Kumar et al., ICLR 2022): fine-tuning then begins where the probe ends.

Example:
    >>> probe = fit_probe(train_features, train_labels, val_features, val_labels)
    >>> probe.accuracy(test_features, test_labels), knn_accuracy(train_features, train_labels, test_features, test_labels)
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np

C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)  # inverse L2 strengths tried on the validation split
KNN_NEIGHBOURS = 10


@dataclass(frozen=True)
class LinearProbe:
    """A fitted standardized logistic regression: `softmax(((x - mean) / scale) @ coef.T + intercept)`.

    Attributes:
        mean, scale: per-feature standardization [D].
        coef: [K, D] weights on the standardized features; intercept: [K].
        c: the chosen inverse regularization strength; val_accuracy: its validation accuracy (None without validation).
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    c: float
    val_accuracy: float | None

    def logits(self, features: np.ndarray) -> np.ndarray:
        return ((np.asarray(features, np.float64) - self.mean) / self.scale) @ self.coef.T + self.intercept

    def accuracy(self, features: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean(np.argmax(self.logits(features), axis=1) == labels))

    def dense_weights(self) -> tuple[np.ndarray, np.ndarray]:
        """Kernel [D, K] and bias [K] of a Dense layer on the *raw* features computing the same logits."""
        kernel = (self.coef / self.scale).T
        bias = self.intercept - (self.coef * (self.mean / self.scale)).sum(axis=1)
        return kernel.astype(np.float32), bias.astype(np.float32)


def standardization(train_features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The probe's per-feature (mean, scale) of `train_features`, in float64; a constant feature keeps scale 1."""
    train_features = np.asarray(train_features, np.float64)
    scale = train_features.std(axis=0)
    scale[scale < 1e-6] = 1.0  # constant features (dead ReLUs) carry nothing; leave them unscaled
    return train_features.mean(axis=0), scale


def fit_probe(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray | None = None,
    val_labels: np.ndarray | None = None,
    num_classes: int | None = None,
) -> LinearProbe:
    """Fit the linear probe; with validation data, pick the L2 strength from `C_GRID` on it, else C = 1.

    `num_classes` keeps one row per class even when the training split misses a class.

    Example:
        >>> probe = fit_probe(np.random.rand(40, 8), np.arange(40) % 4)
        >>> probe.coef.shape
        (4, 8)
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    train_features = np.asarray(train_features, np.float64)
    mean, scale = standardization(train_features)
    standardized = ((train_features - mean) / scale).astype(np.float32)  # lbfgs keeps float32: half float64's time
    grid = C_GRID if val_features is not None and len(val_features) else (1.0,)
    # Along the grid (strongest regularization first) each fit starts from the previous solution, as scikit-learn's
    # own regularization path does: 0.34x the time of cold starts on 2,048-d ResNet50 features of 1,257 digits.
    model = LogisticRegression(max_iter=2000, warm_start=True)
    best = None
    # BLAS on one thread: NumPy and SciPy each load their own OpenBLAS, and with both multithreaded their threads
    # wait on each other's cores between lbfgs's many small calls (5.2 s against 0.34 s for the grid on 288 HED
    # VGG16 photo features; 3.1-3.8 s against 1.0-1.1 s for 60 iterations on 5,028 x 2,048 features, 2 cores).
    with warnings.catch_warnings(), threadpool_limits(limits=1, user_api="blas"):
        warnings.simplefilter("ignore")  # lbfgs convergence notes on tiny or separable data
        for c in grid:
            model.set_params(C=c).fit(standardized, train_labels)
            coef, intercept = _all_classes(model, num_classes or int(np.max(train_labels)) + 1)
            probe = LinearProbe(mean, scale, coef, intercept, c, None)
            if len(grid) == 1:
                return probe
            accuracy = probe.accuracy(val_features, val_labels)
            if best is None or accuracy > best.val_accuracy:
                best = LinearProbe(mean, scale, coef, intercept, c, accuracy)
    return best


def _all_classes(model, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's coefficients as [num_classes, D] (one row for binary problems, none for absent classes)."""
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # scikit-learn keeps one row for two classes: logits (0, z) match softmax
        coef, intercept = np.stack([np.zeros_like(coef[0]), coef[0]]), np.array([0.0, intercept[0]])
    full_coef = np.zeros((num_classes, coef.shape[1]))
    full_intercept = np.full(num_classes, -1e3)  # a class never seen in training is never predicted
    full_coef[model.classes_] = coef
    full_intercept[model.classes_] = intercept
    return full_coef, full_intercept


def frozen_baselines(features: dict[str, np.ndarray], labels: dict[str, np.ndarray], num_classes: int) -> dict:
    """The linear probe and k-NN on frozen `features` (split name -> [N, D]: "train", and "validation" and "test"
    where present) with those splits' `labels`: fitted on "train", the probe's L2 strength chosen on "validation",
    accuracies on "validation" and "test". A function of arrays only, so that `kerastl.offload` can run it in the
    command's child process.

    Returns:
        {"scores": the baselines for metrics.json, e.g. `{"linear_probe": {"c": 0.1, "val_accuracy": 0.8,
        "test_accuracy": 0.79}, "knn": {"k": 10, "test_accuracy": 0.6}}`, "probe": the fitted `LinearProbe`'s fields}.
    """
    probe = fit_probe(features["train"], labels["train"], features.get("validation"), labels.get("validation"), num_classes)
    scores = {"linear_probe": {"c": probe.c}, "knn": {"k": min(KNN_NEIGHBOURS, len(labels["train"]))}}
    for split in ("validation", "test"):
        if split in features:
            key = "val_accuracy" if split == "validation" else "test_accuracy"
            scores["linear_probe"][key] = round(probe.accuracy(features[split], labels[split]), 6)
            scores["knn"][key] = round(knn_accuracy(features["train"], labels["train"], features[split], labels[split]), 6)
    return {"scores": scores, "probe": asdict(probe)}


def knn_accuracy(
    train_features: np.ndarray, train_labels: np.ndarray, features: np.ndarray, labels: np.ndarray,
    neighbours: int = KNN_NEIGHBOURS,
) -> float:
    """Accuracy of a cosine-similarity k-NN vote (k = `neighbours`, at most the training size)."""
    from sklearn.neighbors import KNeighborsClassifier

    k = min(neighbours, len(train_features))
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine").fit(train_features, train_labels)
    return float(np.mean(knn.predict(features) == labels))

