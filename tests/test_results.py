"""What a run folder holds when `train` ends: the weights kept, calibration, evaluation, report, model card,
label issues; and `predict --min-confidence`."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerastl.analysis.calibration import coverage_curve, fit_temperature, temperature, uncalibrated
from kerastl.labels import LabelKind
from kerastl.cli import cli
from kerastl.config import load_config
from kerastl.data.pipeline import load_splits, make_dataset
from kerastl.errors import ConfigError
from kerastl.models.classifier import load_model
from tests.conftest import TINY, small_cnn_overrides

SINGLE, MULTI = LabelKind(False), LabelKind(True)


def test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_at():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, size=(4000, 5))
    truth = SINGLE.probabilities(logits, 2.5)
    labels = np.array([rng.choice(5, p=p) for p in truth])
    assert fit_temperature(logits, labels) == pytest.approx(2.5, rel=0.08)
    present = (rng.random((4000, 5)) < MULTI.probabilities(logits, 0.5)).astype(np.uint8)
    assert fit_temperature(logits, present, MULTI) == pytest.approx(0.5, rel=0.08)


def test_uncalibrated_undoes_the_temperature():
    logits = np.random.default_rng(1).normal(0, 4, size=(50, 4))
    for kind in (SINGLE, MULTI):
        np.testing.assert_allclose(uncalibrated(kind.probabilities(logits, 3.0), 3.0, kind), kind.probabilities(logits), atol=1e-6)


def test_coverage_falls_and_accuracy_of_the_answered_rises_with_the_threshold():
    rng = np.random.default_rng(2)
    confidence = rng.uniform(0.34, 1.0, 600)
    labels = np.zeros(600, int)
    correct = rng.random(600) < confidence  # right as often as it is confident
    probabilities = np.stack([confidence, 1 - confidence, np.zeros(600)], axis=1)
    probabilities[~correct] = probabilities[~correct][:, [1, 0, 2]] * 0 + np.stack(
        [1 - confidence[~correct], confidence[~correct], np.zeros((~correct).sum())], axis=1)
    rows = coverage_curve(probabilities, labels)
    coverage = [row["coverage"] for row in rows]
    accuracy = [row["accuracy"] for row in rows]
    assert coverage[0] == 1.0 and all(a >= b for a, b in zip(coverage, coverage[1:]))
    assert accuracy[-1] > accuracy[0] + 0.2


def test_train_ends_with_evaluation_report_and_model_card(trained_run):
    run_dir = trained_run.run_dir
    for name in ("metrics.json", "confusion_matrix.csv", "confusion_matrix_normalized.csv", "confusion_matrix.png",
                 "predictions.png", "errors.png", "reliability.png", "coverage.png"):
        assert (run_dir / "evaluation" / name).is_file(), name
    evaluation = json.loads((run_dir / "evaluation" / "metrics.json").read_text())
    assert "test split" in evaluation["data"] and set(evaluation["per_class"]) == {"0", "1", "2"}
    normalized = pd.read_csv(run_dir / "evaluation" / "confusion_matrix_normalized.csv", index_col=0)
    np.testing.assert_allclose(normalized.sum(axis=1), 1.0, atol=1e-5)
    report = (run_dir / "report.md").read_text()
    for section in ("## Per class (", "test split", "## Confidence", "| predict --min-confidence |", "| model kept | epoch ",
                    "![Predictions](evaluation/predictions.png)", "![Reliability](evaluation/reliability.png)"):
        assert section in report, section
    card = (run_dir / "MODEL_CARD.md").read_text()
    for section in ("## Model details", "## Intended use", "## Limitations", "## Training data", "## Training procedure",
                    "## Evaluation", "## Calibration", "## Exports", "| head | 1 | 0.001 | adam | head |"):
        assert section in card, section
    assert card.count("\n| 0 |") == 1 and "Backbone `mobilenet_v2`, started from random initialization" in card


def test_model_keras_holds_the_epoch_with_the_highest_validation_accuracy(trained_run):
    run_dir, kept = trained_run.run_dir, trained_run.metrics["kept"]
    history = pd.read_csv(run_dir / "history.csv")
    best = history.sort_values(["val_accuracy", "val_loss"], ascending=[False, True]).iloc[0]  # ties: lower loss
    assert kept["epoch"] == int(best["epoch"]) and kept["last_epoch"] == 6 and kept["monitor"] == "val_accuracy"
    cfg = load_config(run_dir / "config.yaml")
    validation = load_splits(cfg.data, cfg.seed, image_size=32).validation

    def val_loss_at_t1(file):
        model = load_model(run_dir / file)
        model.get_layer("probabilities").temperature.assign(1.0)
        model.compile(loss="categorical_crossentropy")
        return float(np.atleast_1d(model.evaluate(make_dataset(validation, 32), verbose=0))[0])

    assert val_loss_at_t1("model.keras") == pytest.approx(best["val_loss"], abs=1e-4)
    if kept["epoch"] != kept["last_epoch"]:
        assert kept["also_kept"] == "model_last.keras"
        assert val_loss_at_t1("model_last.keras") == pytest.approx(history["val_loss"].iloc[-1], abs=1e-4)
    else:
        assert not (run_dir / "model_last.keras").exists()


@pytest.mark.parametrize("logs, best, monitor, better", [
    ({"val_accuracy": 0.9, "val_loss": 0.5}, None, "val_accuracy", True),
    ({"val_accuracy": 0.9, "val_loss": 0.5}, {"val_accuracy": 0.8, "val_loss": 0.3}, "val_accuracy", True),
    ({"val_accuracy": 0.8, "val_loss": 0.2}, {"val_accuracy": 0.8, "val_loss": 0.3}, "val_accuracy", True),   # tie: loss
    ({"val_accuracy": 0.8, "val_loss": 0.3}, {"val_accuracy": 0.8, "val_loss": 0.3}, "val_accuracy", False),  # not strictly
    ({"val_accuracy": 0.9, "val_loss": 0.5}, {"val_accuracy": 0.8, "val_loss": 0.3}, "val_loss", False),
    ({"val_accuracy": 0.7, "val_loss": 0.2}, {"val_accuracy": 0.8, "val_loss": 0.3}, "val_loss", True),
])
def test_the_best_epoch_is_judged_by_the_monitor(logs, best, monitor, better):
    from kerastl.training.checkpoints import is_better

    assert is_better(logs, best, monitor) is better


def test_temperature_is_fitted_on_validation_and_saved_in_the_model(trained_run):
    """The temperature minimises the validation cross-entropy (checked on a grid, from the model's own logits),
    and the saved model answers softmax(logits / T). How far T is from 1 depends on what the shared run learned (a
    run at 1.00 test accuracy was calibrated at T = 1.0075); that T is fitted at all, from any start, is
    `test_fit_temperature_recovers_the_temperature_the_labels_were_drawn_at`'s."""
    import keras

    from kerastl.data.pipeline import load_splits

    calibration = trained_run.metrics["calibration"]
    cfg = load_config(trained_run.run_dir / "config.yaml")
    validation = load_splits(cfg.data, cfg.seed).validation
    model = trained_run.model
    logits = keras.Model(model.input, model.get_layer("logits").output).predict(validation.images, verbose=0).astype(np.float64)
    grid = np.geomspace(0.05, 20, 400)
    losses = [SINGLE.cross_entropy(SINGLE.probabilities(logits, t), validation.labels) for t in grid]
    assert abs(np.log(calibration["temperature"])) > 1e-3, "T = 1: the checks of the saved temperature could not fail"
    assert calibration["loss_after"] <= min(losses) + 1e-4 and calibration["loss_after"] <= calibration["loss_before"]
    np.testing.assert_allclose(model.predict(validation.images, verbose=0),
                               SINGLE.probabilities(logits, calibration["temperature"]), atol=1e-5)
    assert temperature(load_model(trained_run.run_dir)) == pytest.approx(calibration["temperature"], rel=1e-5)
    assert temperature(trained_run.model) == pytest.approx(calibration["temperature"], rel=1e-5)


def test_held_out_logits_through_an_already_traced_extractor_follow_the_weights():
    """A run reuses the feature extractor it traced for the frozen features to measure the trained model: its
    logits (features through the head) equal the full model's after the weights changed."""
    import keras

    from kerastl.analysis.calibration import model_logits
    from kerastl.data.images import ImageSource
    from kerastl.models.classifier import build_model, feature_extractor
    from tests.test_model import TINY_MODEL

    rng = np.random.default_rng(0)
    source = ImageSource(rng.integers(0, 256, (20, 8, 8, 1), dtype=np.uint8), np.arange(20) % 3, ["a", "b", "c"], "random")
    model = build_model(TINY_MODEL, 3, (8, 8, 1))
    extractor = feature_extractor(model)
    before = model_logits(model, {"x": source}, 8, extractor)["x"]  # traced with the weights as built
    for layer in model.get_layer("backbone").layers:  # an untrained backbone's features are near 0: shift them
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.beta.assign(layer.beta + 0.5)
    head = model.get_layer("logits")
    head.kernel.assign(rng.normal(0, 1, head.kernel.shape).astype("float32"))
    after = model_logits(model, {"x": source}, 8, extractor)["x"]
    assert np.abs(after - before).max() > 0.1  # the change reached the logits: the comparison below could fail
    np.testing.assert_allclose(after, model_logits(model, {"x": source}, 8)["x"], rtol=1e-4, atol=1e-4)


def test_head_logits_read_in_chunks_are_the_heads_predictions(monkeypatch):
    """`head_logits` reads `HEAD_BATCH` rows at a time with `predict_on_batch`: every row, in order, as `predict` answers."""
    from kerastl.analysis import calibration
    from kerastl.models.classifier import build_model, head_model
    from tests.test_model import TINY_MODEL

    rng = np.random.default_rng(0)
    model = build_model(TINY_MODEL, 3, (8, 8, 1))
    head = head_model(model, logits=True)
    model.get_layer("logits").kernel.assign(rng.normal(0, 1, model.get_layer("logits").kernel.shape).astype("float32"))
    features = rng.normal(0, 1, (20, head.input_shape[-1])).astype("float32")
    monkeypatch.setattr(calibration, "HEAD_BATCH", 8)  # chunks of 8, 8 and 4
    logits = calibration.head_logits(model)(features)
    assert logits.shape == (20, 3) and logits.dtype == np.float64
    np.testing.assert_allclose(logits, head.predict(features, verbose=0), rtol=1e-6, atol=1e-6)


def test_frozen_features_and_held_out_logits_predict_in_one_inference_batch(monkeypatch):
    """The extractor traced for the frozen features predicts the held-out logits in batches of the same shape (a
    new shape would trace the backbone again): at least 64 images, a multiple of the training batch."""
    from kerastl.analysis.calibration import model_logits
    from kerastl.data.images import ImageSource
    from kerastl.data.pipeline import inference_batch_size
    from kerastl.models.classifier import build_model, feature_extractor
    from kerastl.training.features import extract_features
    from tests.test_model import TINY_MODEL

    assert [inference_batch_size(size) for size in (16, 32, 48, 64, 128)] == [64, 64, 48, 64, 128]
    source = ImageSource(np.zeros((70, 8, 8, 1), np.uint8), np.arange(70) % 2, ["a", "b"], "zeros")
    model = build_model(TINY_MODEL, 2, (8, 8, 1))
    extractor, batches = feature_extractor(model), []
    predict = extractor.predict
    monkeypatch.setattr(extractor, "predict", lambda data, **kwargs: (batches.append({int(batch.shape[0]) for batch in data}), predict(data, **kwargs))[1])
    features = extract_features(model, source.images, 32, 0, extractor=extractor)
    logits = model_logits(model, {"x": source}, 32, extractor)["x"]
    assert batches == [{64}, {64}] and features.shape[0] == logits.shape[0] == 70


def test_evaluate_a_runs_other_model_file_into_its_own_folder(trained_run, tmp_path):
    import shutil

    from kerastl.analysis.evaluation import evaluate

    run_dir = shutil.copytree(trained_run.run_dir, tmp_path / "run")
    first = (run_dir / "evaluation" / "metrics.json").read_text()
    model = load_model(run_dir)
    logits = model.get_layer("logits")
    kernel, bias = logits.get_weights()
    logits.set_weights([np.zeros_like(kernel), np.eye(len(bias), dtype=bias.dtype)[0] * 10])  # always class 0
    model.save(run_dir / "always_first.keras")
    report = evaluate(run_dir / "always_first.keras")
    labels = np.load(run_dir / "heldout.npz")["labels"]
    assert report["accuracy"] == pytest.approx(np.mean(labels == 0))
    assert (run_dir / "evaluation_always_first" / "metrics.json").is_file()
    assert (run_dir / "evaluation" / "metrics.json").read_text() == first  # model.keras's evaluation untouched


def test_keep_last_and_no_calibration(tmp_path):
    from kerastl.training.trainer import train

    result = train(load_config(None, [*TINY, "results.keep=last", "results.calibration=none", "phases.1.epochs=0"]),
                   output_dir=tmp_path / "run", verbose=0)
    assert result.metrics["kept"] == {"model": "last", "epoch": 1, "last_epoch": 1}
    assert "calibration" not in result.metrics and temperature(result.model) == 1.0
    assert not (tmp_path / "run" / "model_last.keras").exists() and not (tmp_path / "run" / "evaluation").exists()


def test_predict_min_confidence_answers_unknown(trained_run, tmp_path):
    from kerastl.deploy.predict import UNKNOWN, predict

    frame = pd.DataFrame(np.zeros((2, 64), np.uint8))
    frame.to_csv(tmp_path / "rows.csv", index=False)
    confident = predict(trained_run.run_dir, [tmp_path / "rows.csv"])
    assert all(p.label != UNKNOWN for p in confident)
    threshold = max(p.probability for p in confident) + 1e-6
    assert all(p.label == UNKNOWN for p in predict(trained_run.run_dir, [tmp_path / "rows.csv"], min_confidence=threshold))
    result = CliRunner().invoke(cli, ["predict", str(trained_run.run_dir), str(tmp_path / "rows.csv"), "--min-confidence", str(threshold)])
    assert result.exit_code == 0 and [line.split("\t")[1] for line in result.output.splitlines()] == ["unknown", "unknown"]
    result = CliRunner().invoke(cli, ["predict", str(trained_run.run_dir), str(tmp_path / "rows.csv"), "--min-confidence", "1.5"])
    assert result.exit_code == 2 and "1.5 is not in the range 0.0<=x<=1.0" in result.output
    with pytest.raises(ConfigError, match="min_confidence must be a probability between 0 and 1"):
        predict(trained_run.run_dir, [tmp_path / "rows.csv"], min_confidence=-0.1)


def test_label_issues_rank_flipped_labels_near_the_top(tmp_path, small_cnn_backbone):
    from sklearn.datasets import load_digits

    from kerastl.analysis.labelissues import find_label_issues
    from kerastl.training.trainer import train

    digits = load_digits()
    keep = digits.target < 3
    images, labels = (digits.images[keep] * 255 / 16).astype(np.uint8), digits.target[keep].copy()
    rng = np.random.default_rng(0)
    flipped = rng.choice(len(labels), size=24, replace=False)
    labels[flipped] = (labels[flipped] + rng.integers(1, 3, size=24)) % 3
    frame = pd.DataFrame(images.reshape(len(images), -1))
    frame.insert(0, "label", labels)
    frame.to_csv(tmp_path / "digits.csv", index=False)
    overrides = small_cnn_overrides(f"csv:{tmp_path / 'digits.csv'}", "phases.1.epochs=8")
    run = train(load_config(None, overrides), output_dir=tmp_path / "run", verbose=0)
    assert run.metrics["test_accuracy"] >= 0.85  # it learned the clean majority
    table = find_label_issues(run.run_dir)
    assert list(table["rank"]) == list(range(1, len(table) + 1)) and table["loss"].is_monotonic_decreasing
    assert set(table["split"]) == {"train", "validation"} and len(table) == run.metrics["num_images"]["train"] + run.metrics["num_images"]["validation"]
    flipped_ids = {f"row {k + 1}" for k in flipped}
    seen = table[table["image"].isin(flipped_ids)]  # the flipped images that landed in train or validation
    near_top = (seen["rank"] <= 2 * len(seen)).mean()
    print(f"{len(seen)} flipped labels in train/validation, {near_top:.0%} of them in the top {2 * len(seen)} of {len(table)}")
    assert len(seen) >= 15 and near_top >= 0.7
    assert (run.run_dir / "issues" / "label_issues.png").is_file()
    on_disk = pd.read_csv(run.run_dir / "issues" / "label_issues.csv")
    assert list(on_disk.columns) == ["rank", "split", "source", "image", "given", "predicted", "p_given", "p_predicted", "loss"]
    result = CliRunner().invoke(cli, ["data", "issues", str(run.run_dir), "--top", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    printed = [line for line in result.output.splitlines() if line[:1].isdigit()]
    assert [line.split("\t")[3] for line in printed] == list(on_disk["image"][:3])
