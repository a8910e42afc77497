"""Grad-CAM (`kerastl explain`): the heatmap finds the region that decides the class."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from kerastl.cli import cli
from kerastl.config import load_config
from tests.conftest import small_cnn_overrides, write_pixel_csv

SIDE = 32  # the images' side, and the small CNN's input


CLASSES = ("h", "v", "dot")


def bars(count, seed):
    """Noise with, in the top-left quadrant, a horizontal bar (class h), a vertical bar (class v) or a
    small square (class dot), and a bright square in the bottom-right quadrant that says nothing about
    the class. Three classes, so that each bar is evidence *for* its class (with two, a model may learn
    "h or not h", and have no evidence for v anywhere)."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(count, SIDE, SIDE), dtype=np.uint8)
    labels = rng.integers(0, 3, size=count)
    for image, label in zip(images, labels):
        row, column = rng.integers(1, 9, size=2)
        if label == 0:
            image[row + 3 : row + 5, column : column + 7] = 255
        elif label == 1:
            image[row : row + 7, column + 3 : column + 5] = 255
        else:
            image[row + 2 : row + 5, column + 2 : column + 5] = 255
        row, column = rng.integers(17, 26, size=2)
        image[row : row + 5, column : column + 5] = 255
    return images, labels


@pytest.fixture(scope="module")
def bars_run(tmp_path_factory, small_cnn_backbone):
    from kerastl.training.trainer import train

    folder = tmp_path_factory.mktemp("bars")
    images, labels = bars(360, seed=0)
    frame = pd.DataFrame(images.reshape(len(images), -1))
    frame.insert(0, "label", np.array(CLASSES)[labels])
    frame.to_csv(folder / "bars.csv", index=False)
    # 12 epochs learned the task on some seeds only (test accuracy 0.67-1.00 over 7 seeds, and Grad-CAM found the
    # bar in 25-100% of images); 25 epochs reached 1.00 and 100% top-left on all 5 seeds tried. Deterministic ops
    # make the run the same on every invocation.
    overrides = small_cnn_overrides(f"csv:{folder / 'bars.csv'}", "phases.1.epochs=25", "deterministic=true")
    return train(load_config(None, overrides), output_dir=folder / "run", verbose=0)


def test_gradcam_heatmap_peaks_in_the_region_that_decides_the_class(bars_run):
    from kerastl.analysis.gradcam import gradcam

    images, labels = bars(60, seed=1)
    maps, probabilities = gradcam(bars_run.model, images[..., None])
    predicted = np.array(bars_run.metrics["class_names"])[probabilities.argmax(axis=1)]
    assert (predicted == np.array(CLASSES)[labels]).mean() >= 0.8  # the model learned the classes
    assert maps.shape == (60, SIDE, SIDE) and maps.dtype == np.float32 and maps.min() >= 0 and maps.max() <= 1
    bars_only = labels < 2  # the two bar classes: the bar is the evidence for the class
    found = maps[bars_only].max(axis=(1, 2)) == 1.0  # scaled to 1 where Grad-CAM found any evidence
    half = SIDE // 2
    peaks = np.array([np.unravel_index(heatmap.argmax(), heatmap.shape) for heatmap in maps[bars_only]])
    in_top_left = (peaks[:, 0] < half) & (peaks[:, 1] < half) & found
    in_bottom_right = (peaks[:, 0] >= half) & (peaks[:, 1] >= half) & found
    print(f"Grad-CAM of {bars_only.sum()} bar images: evidence found in {found.mean():.2f}, peak top-left "
          f"{in_top_left.mean():.2f}, bottom-right (the distractor) {in_bottom_right.mean():.2f}")
    assert in_top_left.mean() >= 0.75 and in_bottom_right.mean() <= 0.15


def test_explain_cli_writes_overlays_of_images_and_table_rows(bars_run, tmp_path):
    images, _ = bars(3, seed=2)
    Image.fromarray(images[0]).save(tmp_path / "first.png")
    pd.DataFrame(images[1:].reshape(2, -1)).to_csv(tmp_path / "rows.csv", index=False)
    result = CliRunner().invoke(cli, ["explain", str(bars_run.run_dir), str(tmp_path / "first.png"), str(tmp_path / "rows.csv"),
                                      "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = result.output.split()
    assert [p.rsplit("/", 1)[-1] for p in written] == ["first.gradcam.png", "rows_row1.gradcam.png", "rows_row2.gradcam.png", "gradcam.png"]
    for path in written:
        assert Image.open(path).size[0] > 200  # a readable picture, not an empty file


def test_explain_names_a_layer_that_is_not_a_feature_map(bars_run, tmp_path):
    images, _ = bars(1, seed=3)
    Image.fromarray(images[0]).save(tmp_path / "one.png")
    result = CliRunner().invoke(cli, ["explain", str(bars_run.run_dir), str(tmp_path / "one.png"), "--layer", "nope"])
    assert result.exit_code == 2
    assert "Error: Grad-CAM layer 'nope' is not a feature-map layer of the backbone; for example: " in result.output
    assert "conv3_relu" in result.output


def test_evaluate_explain_draws_grad_cam_over_the_error_gallery(trained_run, monkeypatch, tmp_path):
    """On data the model gets wrong whatever the run learned (its classes, each image labelled as the next class),
    the error gallery is full and each of its 16 images gets a heatmap."""
    import shutil

    import kerastl.analysis.evaluation as evaluation
    from kerastl.data.sources import read_source

    run_dir = shutil.copytree(trained_run.run_dir, tmp_path / "run")  # the shared run's own evaluation stays as it is
    digits = read_source("builtin:digits").select(["0", "1", "2"], max_per_class=20, seed=7)
    write_pixel_csv(tmp_path / "mislabelled.csv", digits.images, np.array(digits.class_names)[(digits.labels + 1) % 3])

    explained = []

    def spy(model, images, **kwargs):
        explained.append(len(images))
        return real(model, images, **kwargs)

    real = evaluation.gradcam
    monkeypatch.setattr(evaluation, "gradcam", spy)
    result = CliRunner().invoke(cli, ["evaluate", str(run_dir), "--data", f"csv:{tmp_path / 'mislabelled.csv'}", "--explain",
                                      "--quiet"])
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert round((1 - report["accuracy"]) * report["num_images"]) >= 16
    assert explained == [16] and (run_dir / "evaluation" / "errors.png").is_file()
