"""Every documented training option reaches Keras: each test runs a phase the way `train` does (`run_phase`)
with the option set and checks what Keras' `fit` was given or what the compiled model holds, against the
same phase without it. Removing the wiring of any option makes its test fail (each was checked so once)."""

from dataclasses import replace

import keras
import numpy as np
import pytest

from kerastl.config import load_config
from kerastl.data.pipeline import load_splits
from kerastl.models.classifier import build_model, input_size
from kerastl.training.checkpoints import Progress
from kerastl.training.distribute import ONE_DEVICE
from kerastl.training.runstate import RunState
from kerastl.training.fitting import class_weight, run_phase
from tests.conftest import TINY


@pytest.fixture(scope="module")
def splits():
    cfg = load_config(None, TINY)
    return load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model))


def fitted_phase(tmp_path, monkeypatch, splits, *overrides, cached=False):
    """Run phase 0 (the head; on cached features when `cached`) of TINY + `overrides` up to Keras' `fit`, which
    only records what it was called on and with: (the model fitted, its keyword arguments, the first batch)."""
    cfg = load_config(None, [*TINY, f"compute.cache_features={str(cached).lower()}", *overrides])
    model = build_model(cfg.model, len(splits.class_names), splits.train.image_shape, cfg.augment, cfg.seed)
    calls = []

    def recording_fit(self, x=None, **kwargs):
        calls.append((self, kwargs, next(iter(x))))

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    run_phase(model, cfg.phases[0], cfg, splits, RunState(tmp_path, Progress(tmp_path / "progress.json"), ONE_DEVICE, verbose=0))
    assert len(calls) == 1
    return calls[0]


def test_class_weight_balanced_reaches_fit(tmp_path, monkeypatch, splits):
    labels = splits.train.labels
    rare = np.flatnonzero(labels == 2)[:10]  # class 2 ten times rarer than the others
    imbalanced = replace(splits, train=splits.train.take(np.sort(np.concatenate([np.flatnonzero(labels != 2), rare]))))
    _, plain, _ = fitted_phase(tmp_path / "a", monkeypatch, imbalanced)
    _, weighted, _ = fitted_phase(tmp_path / "b", monkeypatch, imbalanced, "data.class_weight=balanced")
    assert plain["class_weight"] is None
    assert weighted["class_weight"] == class_weight(imbalanced) and len(set(weighted["class_weight"].values())) > 1


def test_focal_loss_and_its_gamma_reach_the_compiled_model(tmp_path, monkeypatch, splits):
    fitted, _, _ = fitted_phase(tmp_path, monkeypatch, splits, "loss.kind=focal", "loss.focal_gamma=3.5")
    assert isinstance(fitted.loss, keras.losses.CategoricalFocalCrossentropy) and fitted.loss.gamma == 3.5


def test_label_smoothing_reaches_the_phase_loss(tmp_path, monkeypatch, splits):
    fitted, _, _ = fitted_phase(tmp_path, monkeypatch, splits, "phases.0.label_smoothing=0.25")
    assert isinstance(fitted.loss, keras.losses.CategoricalCrossentropy) and fitted.loss.label_smoothing == 0.25


def test_ema_reaches_the_phase_optimizer(tmp_path, monkeypatch, splits):
    fitted, _, _ = fitted_phase(tmp_path, monkeypatch, splits, "phases.0.ema=0.97")
    assert fitted.optimizer.use_ema and fitted.optimizer.ema_momentum == pytest.approx(0.97)
    plain, _, _ = fitted_phase(tmp_path / "plain", monkeypatch, splits)
    assert not plain.optimizer.use_ema


def test_distillation_soft_targets_are_what_fit_trains_on(tmp_path, monkeypatch, splits):
    soft = np.tile(np.float32([0.2, 0.3, 0.5]), (len(splits.train), 1))
    for cached in (False, True):  # the model on images, and its head on the features computed once
        fitted, _, (inputs, targets) = fitted_phase(tmp_path / str(cached), monkeypatch, replace(splits, train_targets=soft),
                                                    cached=cached)
        assert (fitted.input.dtype == "uint8") != cached
        np.testing.assert_allclose(keras.ops.convert_to_numpy(targets), soft[: len(targets)])
    _, _, (_, hard) = fitted_phase(tmp_path / "hard", monkeypatch, splits)
    assert set(np.unique(keras.ops.convert_to_numpy(hard))) == {0.0, 1.0}
