"""Multi-label heads: a label column holding several labels, sigmoid + binary cross-entropy, per-label metrics."""

import json

import numpy as np
import pytest

from kerastl.config import load_config
from kerastl.data.sources import encode_label_sets, from_arrays, read_source
from kerastl.errors import ConfigError, DataError
from kerastl.analysis.metrics import multi_label_metrics
from tests.conftest import small_cnn_overrides, write_pixel_csv
from tests.test_cli import run, sets


def tags(digit: int) -> str:
    return "|".join(["even" if digit % 2 == 0 else "odd"] + (["round"] if digit in (0, 6, 8, 9) else []))


@pytest.fixture(scope="module")
def tagged_csv(tmp_path_factory):
    digits = read_source("builtin:digits")
    labels = [tags(int(digits.class_names[k])) for k in digits.labels[:400]]
    return write_pixel_csv(tmp_path_factory.mktemp("data") / "tagged.csv", digits.images[:400], labels)


def test_label_sets_become_multi_hot_columns():
    names, multi_hot = encode_label_sets(np.array(["odd|round", "even", "", "round | even"]), "|")
    assert names == ("even", "odd", "round")
    np.testing.assert_array_equal(multi_hot, [[0, 1, 1], [1, 0, 0], [0, 0, 0], [1, 0, 1]])
    source = from_arrays(np.zeros((2, 4, 4), "uint8"), np.array([[1, 0], [1, 1]]), ["a", "b"])
    assert source.multi_label and list(source.class_counts()) == [2, 1]


def test_multi_label_csv_reads_and_splits(tagged_csv):
    cfg = load_config(None, [f"data.source=csv:{tagged_csv}", "data.multi_label=true"])
    from kerastl.data.pipeline import load_splits

    splits = load_splits(cfg.data, cfg.seed)
    assert splits.class_names == ("even", "odd", "round")
    assert splits.train.labels.shape == (len(splits.train), 3) and splits.train.labels.dtype == np.uint8
    assert len(splits.train) + len(splits.validation) + len(splits.test) == 400


def test_multi_label_errors_are_clear(tmp_path):
    with pytest.raises(DataError, match="multi-label data needs a label column"):
        read_source("builtin:digits", label_separator="|")
    with pytest.raises(ConfigError, match="'data.class_weight' works for single-label data only"):
        load_config(None, ["data.multi_label=true", "data.class_weight=balanced"])


def test_multi_label_metrics_per_label_and_exact_match():
    labels = np.array([[1, 0], [1, 1], [0, 1]], np.uint8)
    probabilities = np.array([[0.9, 0.2], [0.8, 0.4], [0.1, 0.7]])
    result = multi_label_metrics(probabilities, labels, ["a", "b"])
    assert result["accuracy"] == pytest.approx(2 / 3)  # the second image misses b
    assert result["label_accuracy"] == pytest.approx(5 / 6)
    assert result["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3, abs=1e-6), "support": 2}
    from sklearn.metrics import f1_score

    assert result["micro_avg"]["f1"] == pytest.approx(f1_score(labels, probabilities >= 0.5, average="micro"), abs=1e-6)


def test_multi_label_run_learns_evaluates_predicts_and_exports(tagged_csv, tmp_path, small_cnn_backbone):
    """The small CNN, 1 head epoch then 20 of the whole network: per-label test accuracy 0.76-0.83 over two seeds,
    where always answering each label's majority scores about 0.55 here."""
    overrides = small_cnn_overrides(f"csv:{tagged_csv}", "data.multi_label=true", "phases.1.epochs=20", "deterministic=true")
    config = tmp_path / "c.yaml"
    config.write_text("name: tags\n")
    result = run("train", "--config", config, "--output-dir", tmp_path / "run", "--quiet", *sets(overrides))
    assert result.exit_code == 0, result.output
    from kerastl.models.classifier import label_kind, load_model

    model = load_model(tmp_path / "run")
    assert label_kind(model).multi_label and model.loss.__class__.__name__ == "BinaryCrossentropy"
    import keras

    from kerastl.analysis.calibration import temperature

    images = np.random.default_rng(0).integers(0, 16, (4, 8, 8, 1)).astype("uint8")
    probabilities = model.predict(images, verbose=0)
    logits = keras.Model(model.input, model.get_layer("logits").output).predict(images, verbose=0).astype(np.float64)
    assert probabilities.shape == (4, 3)  # independent sigmoids of the calibrated logits, not a softmax over them
    np.testing.assert_allclose(probabilities, 1 / (1 + np.exp(-logits / temperature(model))), rtol=1e-4, atol=1e-6)
    from kerastl.config import load_config
    from kerastl.data.pipeline import load_splits, make_dataset

    cfg = load_config(tmp_path / "run" / "config.yaml")
    loss, label_accuracy = model.evaluate(make_dataset(load_splits(cfg.data, cfg.seed).test, 16), verbose=0)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["test_loss"] == pytest.approx(loss, abs=1e-5) and metrics["test_accuracy"] == pytest.approx(label_accuracy, abs=1e-6)
    test_labels = load_splits(cfg.data, cfg.seed).test.labels
    majority = np.maximum(test_labels.mean(axis=0), 1 - test_labels.mean(axis=0)).mean()
    assert metrics["test_accuracy"] >= majority + 0.12, (metrics["test_accuracy"], majority)  # it learned the tags

    assert run("evaluate", tmp_path / "run", "--quiet").exit_code == 0
    report = json.loads((tmp_path / "run" / "evaluation" / "metrics.json").read_text())
    assert set(report["per_class"]) == {"even", "odd", "round"} and 0 <= report["micro_avg"]["f1"] <= 1

    predicted = run("predict", tmp_path / "run", tagged_csv)
    assert predicted.exit_code == 0
    first_label = predicted.output.splitlines()[0].split("\t")[1]
    assert set(filter(None, first_label.split("|"))) <= {"even", "odd", "round"}

    exported = run("export", tmp_path / "run", "--format", "savedmodel", "--output", tmp_path / "sm")
    assert exported.exit_code == 0, exported.output
    import tensorflow as tf

    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"](images=tf.zeros((2, 8, 8, 1), tf.uint8))
    np.testing.assert_array_equal(served["present"].numpy(), (served["probabilities"].numpy() >= 0.5).astype(int))
