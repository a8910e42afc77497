import json

import numpy as np
import pandas as pd
import pytest

from kerastl.config import load_config
from kerastl.errors import RunDirError
from kerastl.models.classifier import load_model
from kerastl.training.trainer import train
from tests.conftest import TINY, TRAINED_RUN, TRAINED_RUN_MIN_ACCURACY


def test_run_directory_holds_every_artifact(trained_run):
    run_dir = trained_run.run_dir
    for name in ("config.yaml", "history.csv", "metrics.json", "model.keras", "labels.txt"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "labels.txt").read_text().split() == ["0", "1", "2"]
    assert load_config(run_dir / "config.yaml") == load_config(None, TRAINED_RUN)
    assert not (run_dir / "tensorboard").exists()


def test_history_has_one_row_per_epoch_over_both_phases(trained_run):
    history = pd.read_csv(trained_run.run_dir / "history.csv")
    assert history["epoch"].tolist() == [1, 2, 3, 4, 5, 6]
    assert history["phase"].tolist() == ["head"] + ["finetune"] * 5
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(history.columns)


def test_metrics_json(trained_run):
    metrics = json.loads((trained_run.run_dir / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "val_accuracy", "num_classes", "class_names"):
        assert key in metrics
    assert metrics["num_classes"] == 3 and metrics["class_names"] == ["0", "1", "2"]
    assert metrics["phases"]["head"]["epochs"] == 1 and metrics["phases"]["finetune"]["seconds"] > 0
    finetune = metrics["phases"]["finetune"]  # each epoch's wall time, within the phase's
    assert len(finetune["epoch_seconds"]) == 5 and 0 < sum(finetune["epoch_seconds"]) <= finetune["seconds"]
    assert metrics == trained_run.metrics.to_dict()  # the file is the typed object, and reads back as it
    from kerastl.run_metrics import read_metrics

    typed = read_metrics(trained_run.run_dir)
    assert typed == trained_run.metrics and typed.test_accuracy == metrics["test_accuracy"] == typed["test_accuracy"]
    assert typed.get("distillation") is None and "distillation" not in typed  # absent values read as a dict's would


def test_the_shared_run_learned(trained_run):
    """Chance is 1/3 on the three digits; the run is measured at 0.94-1.00 over three seeds."""
    metrics = trained_run.metrics
    assert metrics["test_accuracy"] >= TRAINED_RUN_MIN_ACCURACY and metrics["val_accuracy"] >= TRAINED_RUN_MIN_ACCURACY
    assert not metrics["health"]["collapsed"]


def test_final_metrics_are_what_keras_evaluate_measures(trained_run):
    """metrics.json's loss and accuracy come from one predict per split; they equal model.evaluate's."""
    from kerastl.data.pipeline import load_splits, make_dataset

    cfg = load_config(trained_run.run_dir / "config.yaml")
    splits = load_splits(cfg.data, cfg.seed)
    for prefix, source in (("val", splits.validation), ("test", splits.test)):
        loss, accuracy = trained_run.model.evaluate(make_dataset(source, 16), verbose=0)
        assert trained_run.metrics[f"{prefix}_loss"] == pytest.approx(loss, abs=1e-5)
        assert trained_run.metrics[f"{prefix}_accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_saved_model_predicts_like_the_trained_one(trained_run):
    from kerastl.data.sources import read_source

    images = read_source("builtin:digits").images[:16]
    reloaded = load_model(trained_run.run_dir)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0), trained_run.model.predict(images, verbose=0), atol=1e-6)


def test_existing_run_is_not_overwritten_without_permission(trained_run):
    before = (trained_run.run_dir / "metrics.json").read_bytes()
    with pytest.raises(RunDirError, match=r"already holds a run; pass overwrite=True to replace it \(or resume=True to continue it\)"):
        train(load_config(None, TINY), output_dir=trained_run.run_dir, verbose=0)
    assert (trained_run.run_dir / "metrics.json").read_bytes() == before


def test_bad_data_writes_nothing(tmp_path):
    cfg = load_config(None, TINY + [f"data.source=csv:{tmp_path / 'missing.csv'}"])
    from kerastl.errors import DataError

    with pytest.raises(DataError, match="no such file"):
        train(cfg, output_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # 60 s; test_resume (slow) also pretrains, killed and resumed
def test_pretrain_stage_feeds_the_backbone(tmp_path):
    """Pretraining on digits 5 and 6 (5 epochs) gives features a head alone takes to 0.70 test accuracy on digits
    0-2 (chance 0.33; with 1 pretraining epoch, 0.33)."""
    cfg = load_config(None, TINY + [
        "model.weights=pretrain",
        "pretrain={source: 'builtin:digits', classes: [5, 6], epochs: 5, validation: 0.2}",
        "phases=[{name: head, epochs: 1}]", "deterministic=true",
    ])
    result = train(cfg, output_dir=tmp_path / "run", verbose=0)
    assert result.metrics["test_accuracy"] >= 0.5
    weights_file = tmp_path / "run" / "pretrained_backbone.weights.h5"
    assert weights_file.is_file()
    assert result.metrics["pretrain"]["classes"] == ["5", "6"] and "val_accuracy" in result.metrics["pretrain"]
    from kerastl.models.backbones import create_backbone
    from kerastl.models.backbones import get_backbone

    pretrained = create_backbone(get_backbone("mobilenet_v2"), str(weights_file), 32, {"alpha": 0.35})
    trained = result.model.get_layer("backbone")
    for a, b in zip(pretrained.weights, trained.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_balanced_class_weight_is_inverse_frequency():
    from kerastl.data.pipeline import Splits
    from kerastl.data.sources import from_arrays
    from kerastl.training.fitting import class_weight as _class_weight

    source = from_arrays(np.zeros((8, 4, 4), "uint8"), [0] * 6 + [1] * 2)
    weights = _class_weight(Splits(source, None, None))
    assert weights[1] == pytest.approx(3 * weights[0]) and weights[0] == pytest.approx(8 / (2 * 6))


def test_early_stopping_and_tensorboard_logs(tmp_path):
    # A learning rate this large diverges, so validation loss stops improving and training stops early.
    cfg = load_config(None, TINY + ["phases=[{name: head, epochs: 6, learning_rate: 50.0, early_stopping: 1}]",
                                    "tensorboard=true"])
    result = train(cfg, output_dir=tmp_path / "run", verbose=0)
    assert len(result.history) < 6
    assert result.metrics["phases"]["head"]["epochs"] == len(result.history)
    assert list((tmp_path / "run" / "tensorboard").rglob("events.out.tfevents.*"))


def test_training_curves_and_report(trained_run):
    from PIL import Image

    curves = trained_run.run_dir / "plots" / "curves.png"
    with Image.open(curves) as picture:
        assert picture.format == "PNG" and picture.width > 600 and picture.height > 250
    report = (trained_run.run_dir / "report.md").read_text()
    assert "![Training curves](plots/curves.png)" in report
    assert f"| test accuracy | {trained_run.metrics['test_accuracy']:.4f} |" in report
    for name in ("config.yaml", "history.csv", "metrics.json", "model.keras", "labels.txt"):
        assert f"[{name}]({name})" in report
