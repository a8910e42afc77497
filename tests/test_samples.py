"""A run keeps its held-out and calibration images: export and evaluate work after its data is gone."""

import numpy as np
import pandas as pd
import pytest

from kerastl.analysis.evaluation import evaluate
from kerastl.data.samples import balanced_indices, load_calibration, load_heldout, stratified_indices
from kerastl.data.sources import from_arrays
from kerastl.deploy.export import export
from kerastl.training.trainer import train
from kerastl.config import load_config
from tests.conftest import TINY


def test_calibration_takes_every_class_even_from_data_sorted_by_class():
    labels = np.repeat(np.arange(5), [300, 20, 20, 20, 3])  # a folder read class by class, first class large
    source = from_arrays(np.zeros((len(labels), 4, 4), "uint8"), labels)
    chosen = balanced_indices(source, 20, np.random.default_rng(0))
    assert len(chosen) == 20 and len(set(chosen)) == 20
    assert np.bincount(labels[chosen], minlength=5).tolist() == [5, 4, 4, 4, 3]


def test_parity_sample_keeps_the_class_proportions():
    labels = np.repeat(np.arange(3), [600, 300, 100])
    source = from_arrays(np.zeros((len(labels), 4, 4), "uint8"), labels)
    chosen = stratified_indices(source, 100, np.random.default_rng(0))
    assert np.bincount(labels[chosen]).tolist() == [60, 30, 10]


def test_export_and_evaluate_read_the_kept_samples_not_the_data(trained_run, tmp_path, monkeypatch):
    def no_data(*args, **kwargs):
        raise AssertionError("the data was read again")

    monkeypatch.setattr("kerastl.deploy.export.load_splits", no_data)
    monkeypatch.setattr("kerastl.analysis.evaluation.load_splits", no_data)
    held_out = load_heldout(trained_run.run_dir)
    assert held_out.split == "test" and held_out.complete
    assert len(held_out.source) == trained_run.metrics["num_images"]["test"]
    assert set(np.unique(np.load(trained_run.run_dir / "calibration.npz")["labels"])) == {0, 1, 2}
    evaluated = evaluate(trained_run.run_dir)
    assert evaluated["accuracy"] == pytest.approx(trained_run.metrics["test_accuracy"], abs=1e-6)
    info = export(trained_run.run_dir, "keras", tmp_path / "k")
    assert info["parity"]["split"] == "test" and info["parity"]["samples"] == len(held_out.source)


@pytest.mark.slow  # trains its own run (about 45 s): the test above shows the same without deleting anything
def test_a_run_exports_and_evaluates_after_its_data_is_deleted(tmp_path):
    from sklearn.datasets import load_digits  # the digits 0-2 of builtin:digits, as a CSV the run reads

    bunch = load_digits()
    keep = bunch.target < 3
    frame = pd.DataFrame((bunch.data[keep] * 255 / 16).round().astype(int), columns=[f"p{i}" for i in range(64)])
    frame.insert(0, "label", bunch.target[keep])
    csv = tmp_path / "digits.csv"
    frame.to_csv(csv, index=False)
    run_dir = tmp_path / "run"
    result = train(load_config(None, TINY + [f"data.source=csv:{csv}", "data.classes=null"]), output_dir=run_dir, verbose=0)

    held_out, calibration = load_heldout(run_dir), load_calibration(run_dir)
    assert held_out.split == "test" and held_out.complete
    assert len(held_out.source) == result.metrics["num_images"]["test"]
    assert set(np.unique(np.load(run_dir / "calibration.npz")["labels"])) == {0, 1, 2}
    assert calibration.dtype == np.uint8 and calibration.shape[1:] == (8, 8, 1)

    csv.unlink()
    evaluated = evaluate(run_dir)
    assert evaluated["accuracy"] == pytest.approx(result.metrics["test_accuracy"], abs=1e-6)
    assert "kept in heldout.npz" in evaluated["data"]
    info = export(run_dir, "tflite", tmp_path / "int8", quantize="int8")
    assert info["parity"]["split"] == "test" and info["parity"]["samples"] == len(held_out.source)
