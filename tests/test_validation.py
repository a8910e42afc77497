"""Validation in a callback through the run's feature extractor, its logits reused at the end of the run
(`kerastl.training.validation`)."""

import json

import numpy as np
import pytest

import kerastl
from kerastl import PhaseConfig, Recipe
from kerastl.config import ResultsConfig
from tests.test_fine_tune import digits, new_model  # noqa: F401 (digits: the module's fixture)


def _validation_checks(run_dir, validation, history):
    """For each model the run saved: its temperature is the one fitted on its own validation logits, and at T = 1 its
    validation loss is the one the epoch it holds logged."""
    import keras

    from kerastl.analysis.calibration import fit_temperature, temperature

    metrics = json.loads((run_dir / "metrics.json").read_text())
    kept = metrics["kept"]
    saved = {"model.keras": kept["epoch"]}
    if kept.get("also_kept"):
        saved[kept["also_kept"]] = kept["last_epoch"]
    for file, epoch in saved.items():
        model = kerastl.load_model(run_dir / file)
        logits = keras.Model(model.input, model.get_layer("logits").output).predict(validation[0], verbose=0).astype(np.float64)
        assert temperature(model) == pytest.approx(fit_temperature(logits, validation[1]), rel=1e-4), file
        probabilities = keras.ops.softmax(logits)  # at T = 1, as during training; the compiled loss clips them as Keras does
        loss = float(keras.losses.CategoricalCrossentropy()(np.eye(3)[validation[1]], probabilities))
        assert loss == pytest.approx(history.history["val_loss"][epoch - 1], abs=1e-4), file
    return saved


@pytest.mark.parametrize("keep", ["best", "last"])
def test_validation_is_predicted_once_and_the_end_of_the_run_reuses_it(keep, digits, tmp_path, monkeypatch):  # noqa: F811
    """On one device each epoch validates through the run's feature extractor, not Keras' `evaluate`, with the scores
    `evaluate` would report; the end of the run calibrates `model.keras` and `model_last.keras` on the logits
    validation computed for their epochs. The test split is predicted only for weights whose backbone has trained:
    for a head epoch's (kept as the best here) its logits are the head's on the frozen features computed before
    training. Either way the test scores are those of `model.keras` itself."""
    import keras

    from kerastl.training import finishing

    _, arrays = digits
    predicted, real = [], finishing.model_logits
    monkeypatch.setattr(finishing, "model_logits", lambda model, sources, *rest: predicted.append(sorted(sources)) or real(model, sources, *rest))
    monkeypatch.setattr(keras.Model, "evaluate", lambda *a, **k: pytest.fail("Keras' own validation ran"))
    # At a learning rate of 1.0 the fine-tune epoch's validation loss explodes: the head epoch is the best by loss.
    recipe = Recipe(phases=(PhaseConfig("head", epochs=1), PhaseConfig("finetune", epochs=1, learning_rate=1.0, unfreeze=20)),
                    results=ResultsConfig(keep=keep, monitor="val_loss"), deterministic=True)
    history = kerastl.fine_tune(new_model(), *arrays["train"], validation_data=arrays["validation"], test_data=arrays["test"],
                                recipe=recipe, run_dir=tmp_path / "run", verbose=0)
    saved = _validation_checks(tmp_path / "run", arrays["validation"], history)
    if keep == "best":
        assert saved == {"model.keras": 1, "model_last.keras": 2}  # the best epoch is not the last: both models checked
        assert predicted == []
    else:
        assert saved == {"model.keras": 2}
        assert predicted == [["test"]]
    images, labels = arrays["test"]
    probabilities = kerastl.load_model(tmp_path / "run" / "model.keras").predict(images, verbose=0)
    assert history.metrics["test_accuracy"] == pytest.approx(np.mean(probabilities.argmax(axis=1) == labels), abs=1e-6)
    loss = float(keras.losses.CategoricalCrossentropy()(np.eye(3)[labels], probabilities))
    assert history.metrics["test_loss"] == pytest.approx(loss, abs=1e-4)


@pytest.mark.parametrize("change", ["early stopping restores", "weight averages"])
def test_weights_keras_changes_after_the_last_epoch_are_measured_again(change, digits):  # noqa: F811
    """`EarlyStopping(restore_best_weights=True)` and an optimizer's `use_ema` give the model other weights than the last
    epoch validated: the end of the run predicts the validation split again for them."""
    import keras

    from kerastl.analysis.calibration import fit_temperature, temperature
    from kerastl.labels import LabelKind

    _, arrays = digits
    train, validation = arrays["train"], arrays["validation"]
    if change == "early stopping restores":
        # Whatever the frozen features hold, every epoch makes the validation loss worse: the head, from random
        # weights, learns that digit 2 is rare in training (10 images), and the validation images, digits 0 and 1,
        # are all labelled 2. Early stopping ends after the second epoch and restores the first.
        rare = np.flatnonzero(train[1] == 2)[10:]
        train = (np.delete(train[0], rare, axis=0), np.delete(train[1], rare))
        validation = (validation[0][validation[1] != 2], np.full(np.sum(validation[1] != 2), 2))
        model, phase = new_model(head={"init": "random"}), PhaseConfig("head", epochs=4, learning_rate=0.03, early_stopping=1)
    else:
        model, phase = new_model(), PhaseConfig("head", epochs=2, learning_rate=0.3, ema=0.5)
    recipe = Recipe(phases=(phase,), results=ResultsConfig(keep="last"), deterministic=True)
    history = kerastl.fine_tune(model, *train, validation_data=validation, recipe=recipe, verbose=0)  # model: kept, calibrated
    if change == "early stopping restores":
        losses = history.history["val_loss"]
        assert len(losses) == 2 and losses[1] > losses[0]  # it stopped, and restored the first epoch
    labels = validation[1]
    logits = keras.Model(model.input, model.get_layer("logits").output).predict(validation[0], verbose=0)
    logits = logits.astype(np.float64)
    single = LabelKind(False)
    calibration = history.metrics["calibration"]  # fitted on the logits the end of the run had for these weights
    assert calibration["loss_before"] == pytest.approx(single.cross_entropy(single.probabilities(logits), labels), abs=2e-6)
    assert temperature(model) == pytest.approx(fit_temperature(logits, labels), rel=1e-4)
