"""Pictures of a run: training curves, confusion matrix, image grids, reliability and coverage (matplotlib, Agg).

Example:
    >>> plot_curves(pd.read_csv("runs/quickstart/history.csv"), "runs/quickstart/plots/curves.png")
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from kerastl.rundir import atomic_path

DPI = 110  # of every picture
NO_TICKS = {"xticks": [], "yticks": []}  # axes of an image grid: an axis turned off still lays out its ticks (slow)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(figure, target: Path) -> None:
    """Write `figure` as a PNG at `target` (atomically) and close it, cropped to what it draws as matplotlib's
    `bbox_inches="tight"` crops it (plus its `savefig.pad_inches`), but measured without the whole draw with
    rendering off that `savefig` does first for "tight": the same bytes for every picture kerastl draws (tested), in
    0.67× the time for the six pictures of a run (2.58 s against 3.87 s for twelve, two runs' worth)."""
    plt = pyplot()
    figure.set_dpi(DPI)  # the crop is measured at the resolution the picture is drawn at
    crop = figure.get_tightbbox(figure.canvas.get_renderer()).padded(plt.rcParams["savefig.pad_inches"])
    with atomic_path(Path(target)) as temp:
        figure.savefig(temp, dpi=DPI, bbox_inches=crop, format="png")
    plt.close(figure)


def plot_curves(history, target: Path) -> None:
    """Loss and accuracy per epoch, train and validation, with each phase boundary marked; `history`: a DataFrame
    (history.csv) or its rows (dicts)."""
    import pandas as pd

    history = pd.DataFrame(history)
    plt = pyplot()
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
    save_figure(figure, target)


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str], target: Path) -> None:
    """Counts and the row-normalised fraction (recall per true class) in each cell, shaded by the fraction."""
    plt = pyplot()
    size = max(4.0, 0.5 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size))
    rows = matrix.sum(axis=1, keepdims=True)
    fraction = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    axis.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        text = f"{count}\n{fraction[i, j]:.0%}" if count else "0"
        axis.text(j, i, text, ha="center", va="center", fontsize=7, color="white" if fraction[i, j] > 0.5 else "black")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title("confusion matrix (shading: fraction of the true class)")
    save_figure(figure, target)


def error_grid(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
               count: int = 16, heatmaps=None) -> dict:
    """The `plot_labelled_images` arguments (but `target`) of a grid of the most confidently wrong images with true and
    predicted label. `heatmaps(images) -> [N, H, W]` (e.g. Grad-CAM of the predicted class) are drawn over them."""
    predicted = probabilities.argmax(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    wrong = wrong[np.argsort(-probabilities[wrong, predicted[wrong]])][:count]
    titles = [f"true {class_names[labels[i]]}\npred {class_names[predicted[i]]} ({probabilities[i, predicted[i]]:.2f})" for i in wrong]
    overlays = heatmaps(np.asarray(images[wrong])) if heatmaps is not None and len(wrong) else None
    title = "most confidently wrong" + (" (Grad-CAM of the predicted class)" if overlays is not None else "")
    return {"images": np.asarray(images[wrong]), "titles": titles, "colors": ["tab:red"] * len(wrong), "title": title,
            "overlays": overlays, "empty": "no errors"}


def prediction_grid(source, probabilities: np.ndarray, split: str, count: int = 16) -> dict:
    """The `plot_labelled_images` arguments (but `target`) of a sample of `source`'s images taking the classes in turn,
    each titled with its true class, the predicted one and its probability, green when right and red when wrong."""
    from kerastl.data.samples import balanced_indices

    shown = balanced_indices(source, count, np.random.default_rng(0))
    predicted = probabilities.argmax(axis=1)
    names = source.class_names
    titles = [f"true {names[source.labels[i]]}\npred {names[predicted[i]]} ({probabilities[i, predicted[i]]:.2f})" for i in shown]
    colors = ["tab:green" if predicted[i] == source.labels[i] else "tab:red" for i in shown]
    return {"images": np.asarray(source.images[shown]), "titles": titles, "colors": colors, "title": f"predictions on {split}"}


def plot_labelled_images(images: np.ndarray, titles: Sequence[str], colors: Sequence[str], target: Path, title: str,
                         overlays: np.ndarray | None = None, empty: str = "no images") -> None:
    """Images in a grid of (up to) 4 columns, each with its title in its colour above it; with `overlays` ([N, h, w] in
    [0, 1]) each image is shown with its heatmap stretched over it (Grad-CAM).

    One axes in image pixels holds every image (a cell each, its title in a band above it): a subplot per image
    took 0.3 s for 16 digits, this 0.2 s."""
    plt = pyplot()
    columns = min(4, max(1, len(images)))
    rows = max(1, -(-len(images) // columns))
    title_lines = max((text.count("\n") + 1 for text in titles), default=1)
    height, width = images.shape[1:3] if len(images) else (1, 1)
    gap = 0.08 * width
    cell_width = width + gap  # drawn 2.4 inches wide
    band = (0.05 + 0.15 * title_lines) * cell_width / 2.4  # the title's lines, 0.15 inch each, in pixels
    cell_height = band + height + gap
    figure = plt.figure(figsize=(2.4 * columns, 2.4 * rows * cell_height / cell_width + 0.4))
    axis = figure.add_axes((0, 0, 1, 1 - 0.4 / figure.get_figheight()))
    axis.axis("off")
    for k, image in enumerate(images):
        left, top = (k % columns) * cell_width + gap / 2, (k // columns) * cell_height + band
        extent = (left, left + width, top + height, top)
        gray = image.shape[-1] == 1
        axis.imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=255, extent=extent)
        if overlays is not None:
            axis.imshow(overlays[k], cmap="jet", alpha=0.45, vmin=0, vmax=1, extent=extent)
        axis.text(left + width / 2, top - 0.02 * height, titles[k], ha="center", va="bottom", fontsize=8, color=colors[k])
    if not len(images):
        axis.text(0.5, 0.5, empty, ha="center", va="center", transform=axis.transAxes)
    axis.set_xlim(0, columns * cell_width)
    axis.set_ylim(rows * cell_height, 0)
    figure.suptitle(title, fontsize=10)
    save_figure(figure, target)


def plot_reliability(curves: dict, target: Path) -> None:
    """Reliability diagram: accuracy against mean confidence per confidence bin, one line per curve
    (`{name: kerastl.analysis.metrics.reliability(...)}`); the diagonal is perfect calibration."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(4.8, 4.4))
    axis.plot([0, 1], [0, 1], ":", color="grey", label="perfectly calibrated")
    largest = max((b["count"] for bins in curves.values() for b in bins), default=1)
    for name, bins in curves.items():
        x, y = [b["confidence"] for b in bins], [b["accuracy"] for b in bins]
        line, = axis.plot(x, y, "-", label=name)
        axis.scatter(x, y, s=[12 + 150 * b["count"] / largest for b in bins], color=line.get_color(), alpha=0.8)
    axis.set_xlim(0, 1.02)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("confidence (top probability)")
    axis.set_ylabel("accuracy")
    axis.set_title("reliability: are the probabilities right?\n(dot size: images in the confidence bin)", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper left")
    save_figure(figure, target)


def plot_coverage(rows: Sequence[dict], target: Path) -> None:
    """Accuracy on the answered images and the share answered, against `--min-confidence`."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(5.6, 4.0))
    thresholds = [row["min_confidence"] for row in rows]
    accuracy = [np.nan if row["accuracy"] is None else row["accuracy"] for row in rows]
    axis.plot(thresholds, accuracy, "-o", markersize=3, label="accuracy of the answered")
    axis.plot(thresholds, [row["coverage"] for row in rows], "--s", markersize=3, label="share answered (coverage)")
    axis.set_xlabel("predict --min-confidence (below it: unknown)")
    axis.set_ylim(0, 1.02)
    axis.set_title("accuracy / coverage trade-off")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="lower left")
    save_figure(figure, target)


def plot_image_grid(rows: Sequence[np.ndarray], row_names: Sequence[str], target: Path, title: str) -> None:
    """One row of images per class, labelled with the class name."""
    plt = pyplot()
    columns = max(len(r) for r in rows)
    figure, axes = plt.subplots(len(rows), columns, figsize=(1.3 * columns, 1.4 * len(rows)), squeeze=False,
                                subplot_kw=NO_TICKS)
    for axis in axes.ravel():
        axis.axis("off")
    for row, (images, name) in enumerate(zip(rows, row_names)):
        axes[row, 0].set_title(name, fontsize=8, loc="left")
        for column, image in enumerate(images):
            gray = image.shape[-1] == 1
            axes[row, column].imshow(image[..., 0] if gray else image, cmap="gray" if gray else None, vmin=0, vmax=255)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    save_figure(figure, target)


def plot_class_counts(class_names: Sequence[str], counts: np.ndarray, target: Path, warning: str | None = None) -> None:
    """A bar per class: training images; an imbalance warning in red under the title."""
    plt = pyplot()
    figure, axis = plt.subplots(figsize=(max(4.0, 0.45 * len(class_names) + 2), 3.2))
    axis.bar(range(len(class_names)), counts, color="tab:blue")
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_ylabel("training images")
    axis.set_title("class counts" + (f"\n{warning}" if warning else ""), fontsize=9, color="tab:red" if warning else "black")
    save_figure(figure, target)


def plot_lr_find(results: dict, target: Path) -> None:
    """Smoothed loss against learning rate (log scale), one curve per phase, suggestion marked."""
    plt = pyplot()
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
    save_figure(figure, target)
