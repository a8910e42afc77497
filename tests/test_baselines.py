"""Linear probe, k-NN, the head started from the probe (LP-FT), prediction health, and the from-scratch BatchNorm policy."""

import json
from dataclasses import replace

import numpy as np
import pytest

from kerastl import ModelConfig, build_model
from kerastl.training.baselines import health_warning, init_head_from_probe, prediction_health, probe_warning
from kerastl.config import HeadConfig, load_config
from kerastl.data.sources import from_arrays
from kerastl.errors import ConfigError
from kerastl.training.features import extract_features
from kerastl.training.linear_probe import fit_probe, knn_accuracy
from kerastl.training.strategies import plan_phases
from tests.conftest import TINY


def _blobs(n_per_class, num_classes, dims=6, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, (num_classes, dims))
    labels = np.repeat(np.arange(num_classes), n_per_class)
    return centres[labels] + rng.normal(0, spread, (len(labels), dims)) * 50 + 300, labels  # large, un-normalized


def _probabilities(probe, features):
    """The probe's softmax probabilities on `features`."""
    logits = probe.logits(features)
    exponentials = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def test_probe_separates_large_unnormalized_features_and_picks_c_on_validation():
    features, labels = _blobs(30, 3, spread=0.02)
    val_features, val_labels = _blobs(10, 3, seed=0, spread=0.02)
    probe = fit_probe(features, labels, val_features, val_labels)
    assert probe.accuracy(features, labels) == 1.0
    assert probe.c in (0.001, 0.01, 0.1, 1.0, 10.0) and probe.val_accuracy == 1.0
    assert probe.coef.shape == (3, 6) and probe.intercept.shape == (3,)


def test_probe_logits_match_scikit_learn_including_two_classes():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    features, labels = _blobs(20, 2, spread=1.0)
    probe = fit_probe(features, labels)  # no validation: C = 1
    standardized = StandardScaler().fit_transform(features)
    reference = LogisticRegression(C=1.0, max_iter=2000).fit(standardized, labels)
    np.testing.assert_allclose(_probabilities(probe, features), reference.predict_proba(standardized), atol=1e-4)


def test_probe_chosen_on_validation_is_the_optimum_at_its_c():
    """The grid is fitted with warm starts in float32; the probe returned is still the regularized optimum at the C it
    chose, as a tightly converged float64 fit from zero finds it."""
    from sklearn.linear_model import LogisticRegression

    features, labels = _blobs(40, 4, spread=2.5)
    val_features, val_labels = _blobs(15, 4, seed=1, spread=2.5)
    probe = fit_probe(features, labels, val_features, val_labels)
    assert probe.c == 0.01  # not the grid's first C: its fit started from the first's solution
    standardized = (features - probe.mean) / probe.scale
    reference = LogisticRegression(C=probe.c, max_iter=20000, tol=1e-10).fit(standardized, labels)
    np.testing.assert_allclose(_probabilities(probe, features), reference.predict_proba(standardized), atol=2e-3)


def test_probe_fits_with_blas_on_one_thread(monkeypatch):
    """NumPy's and SciPy's OpenBLAS, both multithreaded, made each lbfgs fit several times slower here: every fit of
    the grid runs with BLAS limited to one thread, and the limit is lifted afterwards."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_info

    def blas_threads():
        return {info["filepath"]: info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"}

    seen, fit = [], LogisticRegression.fit
    monkeypatch.setattr(LogisticRegression, "fit", lambda self, *a, **k: seen.append(blas_threads()) or fit(self, *a, **k))
    before = blas_threads()
    features, labels = _blobs(20, 3)
    fit_probe(features, labels, *_blobs(5, 3, seed=1))
    assert len(seen) == 5 and all(set(threads.values()) == {1} for threads in seen)
    assert blas_threads() == before


def test_probe_never_predicts_a_class_missing_from_training():
    features, labels = _blobs(10, 3)
    keep = labels != 1
    probe = fit_probe(features[keep], labels[keep], num_classes=3)
    assert probe.coef.shape[0] == 3 and 1 not in np.argmax(probe.logits(features), axis=1)


def test_knn_votes_by_cosine_similarity():
    train = np.array([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [0.1, 3.0]])
    labels = np.array([0, 0, 1, 1])
    assert knn_accuracy(train, labels, np.array([[10.0, 0.5], [0.2, 7.0]]), np.array([0, 1]), neighbours=1) == 1.0


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_head_started_from_the_probe_computes_the_probe(norm):
    rng = np.random.default_rng(0)
    labels = np.arange(40) % 4
    images = (rng.integers(0, 60, (40, 16, 16, 3)) + labels[:, None, None, None] * 60).astype(np.uint8)
    model = build_model(ModelConfig(backbone="vgg16", weights="none", input_size=32, head=HeadConfig(norm=norm)), 4, (16, 16, 3))
    features = extract_features(model, images, 16, verbose=0)
    probe = fit_probe(features, labels, num_classes=4)
    init_head_from_probe(model, probe)
    np.testing.assert_allclose(model.predict(images, verbose=0), _probabilities(probe, features), atol=1e-5)
    assert probe.accuracy(features, labels) == 1.0


def test_head_norm_is_a_batchnorm_after_pooling_for_pretrained_weights_only(tmp_path):
    options = dict(input_size=32, backbone_options={"alpha": 0.35})
    weights = tmp_path / "b.weights.h5"
    build_model(ModelConfig(weights="none", **options), 3, (8, 8, 1)).get_layer("backbone").save_weights(weights)
    pretrained = build_model(ModelConfig(weights=str(weights), **options), 3, (8, 8, 1))
    names = [layer.name for layer in pretrained.layers]
    assert names.index("head_norm") == names.index("pool") + 1
    scratch = build_model(ModelConfig(weights="none", **options), 3, (8, 8, 1))  # auto: tiny random features, no norm
    assert "head_norm" not in [layer.name for layer in scratch.layers]
    forced = build_model(ModelConfig(weights="none", head=HeadConfig(norm="batch"), **options), 3, (8, 8, 1))
    assert "head_norm" in [layer.name for layer in forced.layers]


def test_probe_init_is_refused_where_it_cannot_apply():
    with pytest.raises(ConfigError, match="model.head.init"):
        load_config(None, ["model.head.init=probe", "model.head.hidden=[16]"])


def test_prediction_health_flags_a_collapsed_model_and_passes_a_good_one():
    labels = np.arange(30) % 3
    source = from_arrays(np.zeros((30, 2, 2, 1), np.uint8), labels, class_names=["0", "1", "2"])
    always_2 = np.tile([0.1, 0.1, 0.8], (30, 1))
    collapsed = prediction_health(always_2, source)
    assert collapsed["collapsed"] and collapsed["at_chance"] and collapsed["predicted_classes"] == 1
    assert collapsed["largest_predicted_share"] == 1.0 and collapsed["largest_predicted_class"] == "2"
    assert "predicts '2' for 100% of the test images" in health_warning({"split": "test", **collapsed})
    right = np.eye(3)[labels] * 0.7 + 0.1
    good = prediction_health(right, source)
    assert not good["collapsed"] and not good["at_chance"] and good["predicted_classes"] == 3
    assert health_warning({"split": "test", **good}) is None


def test_probe_warning_names_both_accuracies():
    from kerastl.run_metrics import RunMetrics

    def metrics(accuracy, baselines=None):
        return RunMetrics("run", "small_cnn", 3, ["0", "1", "2"], {"train": 9}, {}, test_accuracy=accuracy, baselines=baselines)

    assert "0.6000 is below the linear probe's 0.8000" in probe_warning(metrics(0.6, {"linear_probe": {"test_accuracy": 0.8}}))
    assert probe_warning(metrics(0.9, {"linear_probe": {"test_accuracy": 0.8}})) is None
    assert probe_warning(metrics(0.9)) is None


def test_batchnorm_trains_from_scratch_and_stays_frozen_for_pretrained_weights():
    scratch = plan_phases(load_config(None, ["model.weights=none"]), np.full(3, 50))
    pretrained = plan_phases(load_config(None, ["model.weights=imagenet"]), np.full(3, 50))
    assert [p.bn for p in scratch.phases] == ["train", "train"]
    assert [p.bn for p in pretrained.phases] == ["frozen", "frozen"]
    explicit = plan_phases(load_config(None, ["model.weights=none", "phases.1.bn=frozen"]), np.full(3, 50))
    assert explicit.phases[1].bn == "frozen"


def test_random_backbone_batchnorm_momentum_is_lowered():
    import keras

    model = build_model(ModelConfig(weights="none", input_size=32, backbone_options={"alpha": 0.35}), 3, (8, 8, 1))
    momenta = {layer.momentum for layer in model.get_layer("backbone").layers if isinstance(layer, keras.layers.BatchNormalization)}
    assert momenta == {0.9}


def test_baselines_measure_what_the_frozen_features_hold():
    """Four classes told apart by brightness: frozen VGG16 features (random weights) separate them, so the probe
    and k-NN recorded for the run are right on every held-out image, and the head starts as the probe."""
    from kerastl.data.pipeline import Splits
    from kerastl.training.baselines import start_head

    import keras

    keras.utils.set_random_seed(0)  # the random VGG16 weights: the k-NN bound holds for these (measured 0.95)
    rng = np.random.default_rng(0)

    def part(count):
        labels = np.arange(count) % 4
        return from_arrays((rng.integers(0, 40, (count, 16, 16, 3)) + labels[:, None, None, None] * 60).astype(np.uint8), labels)

    splits = Splits(part(40), part(12), part(20))
    cfg = load_config(None, ["model.backbone=vgg16", "model.weights=none", "model.input_size=32"])
    model = build_model(cfg.model, 4, (16, 16, 3))
    baselines = start_head(model, cfg, splits, init=True)
    assert baselines["linear_probe"]["test_accuracy"] == 1.0 and baselines["linear_probe"]["val_accuracy"] == 1.0
    assert baselines["knn"]["test_accuracy"] >= 0.9 and baselines["head_init"] == "probe"  # measured 0.95 (k = 10)
    assert (model.predict(splits.test.images, verbose=0).argmax(axis=1) == splits.test.labels).all()
    chance = Splits(part(40), part(12), replace(part(20), labels=rng.permutation(np.arange(20) % 4)))  # labels unrelated
    assert start_head(build_model(cfg.model, 4, (16, 16, 3)), cfg, chance, init=False)["linear_probe"]["test_accuracy"] < 0.6


def test_every_run_records_baselines_health_and_warnings(trained_run):
    metrics = json.loads((trained_run.run_dir / "metrics.json").read_text())
    baselines = metrics["baselines"]
    assert baselines["head_init"] == "probe"
    for name in ("linear_probe", "knn"):
        assert {"test_accuracy", "val_accuracy"} <= set(baselines[name])
    health = metrics["health"]
    assert health["split"] == "test" and health["predicted_classes"] == 3 and not health["collapsed"]
    assert isinstance(metrics["warnings"], list)
    assert "linear probe on the frozen features" in (trained_run.run_dir / "report.md").read_text()
    assert load_config(None, TINY).model.head.init == "auto"
