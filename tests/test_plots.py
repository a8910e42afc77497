"""Every picture kerastl draws is cropped as matplotlib's `bbox_inches="tight"` crops it: `save_figure` measures the
crop without the draw `savefig` does first, and must write the same bytes."""

import numpy as np
import pandas as pd
import pytest

from kerastl.analysis import plots
from kerastl.analysis.duplicates import plot_duplicate_pairs
from kerastl.data.sources import from_arrays
from kerastl.deploy.benchmark import plot_benchmark
from kerastl.tuning.leaderboard import plot_trials
from kerastl.tuning.space import Dimension

RNG = np.random.default_rng(0)
DIGITS = RNG.integers(0, 256, (16, 8, 8, 1), dtype=np.uint8)
PHOTOS = RNG.integers(0, 256, (4, 12, 12, 3), dtype=np.uint8)
NAMES = [f"class {i} with a long name" for i in range(10)]
MATRIX = RNG.integers(0, 30, (10, 10))
HEATMAPS = RNG.random((4, 3, 3))
CURVES = [{"epoch": e, "phase": "head" if e < 3 else "finetune", "loss": 2.0 / e, "accuracy": 0.2 * e,
           "val_loss": 2.2 / e, "val_accuracy": 0.18 * e} for e in range(1, 6)]
BINS = [{"confidence": c, "accuracy": c - 0.1, "count": n} for c, n in ((0.3, 5), (0.6, 20), (0.9, 40))]
LR_FIND = {"head": {"learning_rates": [1e-5, 1e-4, 1e-3, 1e-2], "smoothed_losses": [2.3, 2.1, 1.5, 3.0],
                    "suggested_learning_rate": 1e-4}}
TRIALS = pd.DataFrame({"trial": ["t0", "t1", "t2"], "status": ["completed"] * 3, "val_accuracy": [0.5, 0.7, 0.6],
                       "phases.0.learning_rate": [1e-4, 1e-3, 3e-3], "augment.preset": ["none", "light", "none"]})
SPACE = [Dimension("phases.0.learning_rate", low=1e-5, high=1e-2, log=True), Dimension("augment.preset", choices=("none", "light"))]
EXPORTS = pd.DataFrame({"export": ["keras", "tflite"], "status": ["measured"] * 2, "size_mb": [5.2, 1.6],
                        "ms_batch_1": [50.0, 0.1], "ms_batch_32": [1.9, 0.04], "accuracy": [0.91, 0.91]})
PAIRS = pd.DataFrame({"split_a": ["test"], "index_a": [0], "id_a": ["a/1.png"], "split_b": ["train"], "index_b": [1],
                      "id_b": ["b/2.png"], "kind": ["near"], "similarity": [0.995]})
SPLITS = {"test": from_arrays(DIGITS[:2], [0, 1]), "train": from_arrays(DIGITS[2:4], [0, 1])}

PICTURES = {
    "curves": lambda target: plots.plot_curves(CURVES, target),
    "confusion matrix": lambda target: plots.plot_confusion_matrix(MATRIX, NAMES, target),
    "labelled images": lambda target: plots.plot_labelled_images(
        DIGITS, [f"true {i}\npred {i % 3} (0.{i:02d})" for i in range(16)], ["tab:red", "tab:green"] * 8, target, "errors"),
    "Grad-CAM": lambda target: plots.plot_labelled_images(
        PHOTOS, ["a", "b", "c", "d"], ["tab:red"] * 4, target, "Grad-CAM", overlays=HEATMAPS),
    "no images": lambda target: plots.plot_labelled_images(DIGITS[:0], [], [], target, "errors", empty="no errors"),
    "reliability": lambda target: plots.plot_reliability({"model": BINS, "calibrated": BINS[::-1]}, target),
    "coverage": lambda target: plots.plot_coverage(
        [{"min_confidence": t, "accuracy": None if t > 0.8 else 1 - t / 2, "coverage": 1 - t} for t in (0.0, 0.5, 0.9)], target),
    "image grid": lambda target: plots.plot_image_grid([PHOTOS[:3], PHOTOS[3:]], ["cat", "dog"], target, "samples"),
    "class counts": lambda target: plots.plot_class_counts(NAMES, np.arange(10) * 7 + 1, target, "imbalanced: 64 to 1"),
    "lr find": lambda target: plots.plot_lr_find(LR_FIND, target),
    "tune trials": lambda target: plot_trials(TRIALS, SPACE, "val_accuracy", target),
    "export benchmark": lambda target: plot_benchmark(EXPORTS, target, "270 digits"),
    "duplicate pairs": lambda target: plot_duplicate_pairs(PAIRS, SPLITS, target),
}


def tight_save(figure, target):
    """What `save_figure` stands for: matplotlib's own tight crop."""
    figure.savefig(target, dpi=plots.DPI, bbox_inches="tight", format="png")
    plots.pyplot().close(figure)


@pytest.mark.parametrize("picture", PICTURES)
def test_every_picture_is_cropped_as_matplotlibs_tight_crop_would(picture, tmp_path, monkeypatch):
    PICTURES[picture](tmp_path / "saved.png")
    monkeypatch.setattr(plots, "save_figure", tight_save)
    PICTURES[picture](tmp_path / "tight.png")
    assert (tmp_path / "saved.png").read_bytes() == (tmp_path / "tight.png").read_bytes()
