"""Experiment tracking: a run logs its config, epochs, final metrics and files to a real MLflow store."""

import sys

import pytest

from kerastl.config import load_config
from kerastl.errors import ConfigError
from tests.conftest import TINY


def test_a_run_is_logged_to_a_local_mlflow_store(tmp_path):
    from mlflow.tracking import MlflowClient

    from kerastl.training.trainer import train

    result = train(load_config(None, [*TINY, "tracking.kind=mlflow", "name=tracked", "phases.0.epochs=2", "phases.1.epochs=0"]), output_dir=tmp_path / "runs" / "tracked", verbose=0)
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("kerastl")
    [run] = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "tracked" and run.info.status == "FINISHED"
    assert run.data.params["data.source"] == "builtin:digits" and run.data.params["phases.1.unfreeze"] == "20"
    assert run.data.params["model.backbone_options.alpha"] == "0.35"
    val_loss = client.get_metric_history(run.info.run_id, "val_loss")
    assert [m.step for m in val_loss] == [1, 2]
    assert [m.value for m in val_loss] == pytest.approx(list(result.history["val_loss"]))
    assert run.data.metrics["final_test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    assert run.data.metrics["final_calibration_temperature"] == pytest.approx(result.metrics["calibration"]["temperature"])
    logged = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert {"model.keras", "metrics.json", "report.md", "MODEL_CARD.md", "history.csv", "config.yaml", "plots"} <= logged
    assert "heldout.npz" not in logged and (tmp_path / "runs" / "mlartifacts").is_dir()


def test_mlflow_missing_is_one_config_error_before_anything_is_written(tmp_path, monkeypatch):
    from kerastl.training.trainer import train

    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(ConfigError, match=r"tracking.kind' is mlflow, but MLflow is not installed: pip install 'kerastl\[tracking\]'"):
        train(load_config(None, [*TINY, "tracking.kind=mlflow"]), output_dir=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()
