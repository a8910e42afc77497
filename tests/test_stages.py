"""The optional stages of a config run: which a config asks for, and the order the trainer calls them in."""

from kerastl.config import load_config
from kerastl.training.stages import Distillation, Pretraining, RunStage, Tracking, run_stages
from tests.conftest import TINY


def test_a_config_asks_for_the_stages_it_configures(tmp_path):
    assert run_stages(load_config(None, TINY)) == []
    pretrain = ["model.weights=pretrain", "pretrain={source: 'builtin:digits'}"]
    asked = run_stages(load_config(None, [*TINY, *pretrain, f"distill={{teacher: '{tmp_path}'}}", "tracking.kind=mlflow"]))
    assert [type(stage) for stage in asked] == [Pretraining, Distillation, Tracking]


def test_train_calls_each_hook_of_a_stage_once_in_run_order(tmp_path, monkeypatch):
    import kerastl.training.trainer as trainer

    calls = []

    class Recorder(RunStage):
        def on_splits(self, splits):
            calls.append("on_splits")
            return splits

        def before_model(self, run):
            calls.append(("before_model", run.run_dir.exists()))  # nothing written yet
            return False

        def callbacks(self, run):
            calls.append("callbacks")
            return []

        def on_metrics(self, metrics, model, splits, run_dir):
            calls.append(("on_metrics", (run_dir / "metrics.json").exists()))  # measured, not yet written
            metrics.warnings.append("from the stage")

        def on_end(self, metrics, run_dir):
            calls.append(("on_end", (run_dir / "metrics.json").exists()))

    monkeypatch.setattr(trainer, "run_stages", lambda cfg, verbose: [Recorder(cfg, verbose)])
    result = trainer.train(load_config(None, [*TINY, "phases.1.epochs=0", "results.evaluation=false"]), tmp_path / "run", verbose=0)
    assert calls == ["on_splits", ("before_model", False), "callbacks", ("on_metrics", False), ("on_end", True)]
    assert "from the stage" in result.metrics.warnings
