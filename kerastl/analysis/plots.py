"""Pictures of a run: training curves, confusion matrix, most confidently wrong images (matplotlib, Agg).

Example:
    >>> plot_curves(pd.read_csv("runs/quickstart/history.csv"), "runs/quickstart/plots/curves.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from kerastl.rundir import atomic_path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(figure, target: Path) -> None:
    with atomic_path(Path(target)) as temp:
        figure.savefig(temp, dpi=110, bbox_inches="tight", format="png")
    _pyplot().close(figure)


def plot_curves(history, target: Path) -> None:
    """Loss and accuracy per epoch, train and validation, with each phase boundary marked."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, metric in zip(axes, ("loss", "accuracy")):
        for column, style in ((metric, "-o"), (f"val_{metric}", "--s")):
            if column in history:
                axis.plot(history["epoch"], history[column], style, markersize=3, label=column)
        starts = history.groupby("phase", sort=False)["epoch"].min()
        for phase, first in starts.items():
            axis.axvline(first - 0.5, color="grey", linewidth=0.8, linestyle=":")
            axis.text(first - 0.4, 1.0, phase, transform=axis.get_xaxis_transform(), va="top", fontsize=8, color="grey")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend(loc="best", fontsize=8)
    _save(figure, target)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], target: Path) -> None:
    """Counts in each cell, shading by the row-normalised fraction (recall per true class)."""
    plt = _pyplot()
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    rows = matrix.sum(axis=1, keepdims=True)
    fraction = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    axis.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        axis.text(j, i, str(count), ha="center", va="center", fontsize=8, color="white" if fraction[i, j] > 0.5 else "black")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("confusion matrix (shading: fraction of the true class)")
    _save(figure, target)


def plot_errors(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
                target: Path, count: int = 16) -> int:
    """A grid of the most confidently wrong images with true and predicted label; returns how many it shows."""
    plt = _pyplot()
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    columns = 4
    rows = max(1, -(-len(wrong) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for axis, index in zip(axes.ravel(), wrong):
        image = images[index]
        axis.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None,
                    vmin=0, vmax=255)
        p = probabilities[index, predicted[index]]
        axis.set_title(f"true {class_names[labels[index]]}\npred {class_names[predicted[index]]} ({p:.2f})", fontsize=8)
    if not len(wrong):
        axes[0, 0].text(0.5, 0.5, "no errors", ha="center", va="center")
    _save(figure, target)
    return len(wrong)


def plot_image_grid(rows: Sequence[np.ndarray], row_names: Sequence[str], target: Path, title: str) -> None:
    """One row of images per class, labelled with the class name."""
    plt = _pyplot()
    columns = max(len(r) for r in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.3 * columns, 1.4 * len(rows)), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for row, (images, name) in enumerate(zip(rows, row_names)):
        axes[row, 0].set_title(name, fontsize=8, loc="left")
        for column, image in enumerate(images):
            gray = image.shape[-1] == 1
            axes[row, column].imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=255)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    _save(figure, target)


def plot_class_counts(class_names: Sequence[str], counts: np.ndarray, target: Path, warning: str | None = None) -> None:
    """A bar per class: training images; an imbalance warning in red under the title."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(max(4.0, 0.45 * len(class_names) + 2), 3.2))
    axis.bar(range(len(class_names)), counts, color="tab:blue")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_ylabel("training images")
    axis.set_title("class counts" + (f"\n{warning}" if warning else ""), fontsize=9, color="tab:red" if warning else "black")
    _save(figure, target)


def plot_lr_find(results: dict, target: Path) -> None:
    """Smoothed loss against learning rate (log scale), one curve per phase, suggestion marked."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    for phase, values in results.items():
        line, = axis.plot(values["learning_rates"], values["smoothed_losses"], label=phase)
        rate = values["suggested_learning_rate"]
        if rate is not None:
            loss = values["smoothed_losses"][values["learning_rates"].index(rate)]
            axis.plot([rate], [loss], "o", color=line.get_color())
            axis.annotate(f"{rate:.1e}", (rate, loss), textcoords="offset points", xytext=(5, 5), fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss (smoothed)")
    axis.set_title("learning-rate range test (dot: steepest descent)")
    axis.grid(alpha=0.3, which="both")
    axis.legend(fontsize=8)
    _save(figure, target)
