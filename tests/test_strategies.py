"""Strategy presets, the `auto` rule of thumb, `kerastl advise`, and a run trained from a preset."""

import json

import numpy as np
import pytest

from kerastl.config import load_config
from kerastl.errors import ConfigError
from kerastl.training.strategies import PRESETS, SMALL_PER_CLASS, plan_phases
from tests.conftest import TINY
from tests.test_cli import run, sets

BASE = [o for o in TINY if not o.startswith("phases")]


def labels(per_class: int, classes: int = 3) -> np.ndarray:
    return np.full(classes, per_class)


@pytest.mark.parametrize(
    "per_class, similarity, weights, preset",
    [
        (50, None, "imagenet", "head"),
        (50, "high", "imagenet", "head"),
        (50, "low", "imagenet", "gradual"),
        (SMALL_PER_CLASS, "high", "imagenet", "top"),
        (SMALL_PER_CLASS, "low", "imagenet", "deep"),
        (50, "high", "none", "deep"),
    ],
)
def test_auto_follows_the_size_and_similarity_rule(per_class, similarity, weights, preset):
    overrides = ["strategy=auto", f"model.weights={weights}"] + ([f"strategy.similarity={similarity}"] if similarity else [])
    plan = plan_phases(load_config(None, overrides), labels(per_class))
    assert plan.preset == preset
    assert any(f"{per_class} in the smallest" in reason for reason in plan.reasons)


def test_gradual_unfreezes_one_more_block_per_phase_with_continuous_names():
    plan = plan_phases(load_config(None, ["strategy.preset=gradual", "strategy.blocks=3", "strategy.epochs=2"]), labels(9))
    assert [p.name for p in plan.phases] == ["head", "unfreeze_1", "unfreeze_2", "unfreeze_3"]
    assert [p.unfreeze for p in plan.phases] == [None, "blocks:1", "blocks:2", "blocks:3"]
    assert all(p.epochs == 2 for p in plan.phases)


@pytest.mark.parametrize("preset", PRESETS.names())
def test_every_preset_starts_with_a_head_phase(preset):
    plan = plan_phases(load_config(None, [f"strategy={preset}"]), labels(9))
    assert plan.phases[0].unfreeze is None and plan.phases[0].learning_rate == 1e-3


def test_strategy_and_phases_in_one_file_exclude_each_other(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("strategy: auto\nphases:\n  - {name: head}\n")
    with pytest.raises(ConfigError, match="'strategy' and 'phases' exclude each other"):
        load_config(path)
    assert load_config(path, ["strategy=head"]).strategy.preset == "head"  # a strategy from outside replaces the list


def test_advise_prints_the_plan_and_why(tmp_path):
    result = run("advise", "--config", "configs/quickstart.yaml", *sets(["strategy=auto", "strategy.similarity=low"]))
    assert result.exit_code == 0, result.output
    assert "Strategy: gradual" in result.output and "similarity: low (from the config)" in result.output
    assert "unfreeze_3" in result.output and "blocks:3" in result.output
    bad = run("advise", "--config", "configs/quickstart.yaml", "--set", "strategy=fastest")
    assert bad.exit_code == 2 and "Config key 'strategy.preset': Unknown strategy preset" in bad.output


@pytest.mark.slow  # 23 s; the plans themselves are checked by the tests above
def test_a_run_trains_the_planned_phases_with_every_policy(tmp_path):
    overrides = BASE + ["strategy.preset=gradual", "strategy.blocks=2", "strategy.epochs=1"]
    from kerastl.training.trainer import train

    result = train(load_config(None, overrides), output_dir=tmp_path / "run", verbose=0)
    assert list(result.history["phase"]) == ["head", "unfreeze_1", "unfreeze_2"]
    assert list(result.history["epoch"]) == [1, 2, 3]  # numbered continuously across phases
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["strategy"]["preset"] == "gradual"
    assert metrics["phases"]["unfreeze_2"]["unfreeze"] == "blocks:2"
    batchnorm = metrics["phases"]["unfreeze_2"]["batchnorm"]  # weights: none, so bn: auto trains BatchNorm
    assert batchnorm["policy"] == "train" and batchnorm["layers_changed"] == batchnorm["layers_in_scope"] > 0
    assert type(result.model.optimizer).__name__ == "LayerwiseAdam"


@pytest.mark.slow  # 20 s; bn: train and EMA are unit-tested in test_phases (this: the three together, through train)
def test_a_phase_with_bn_train_ema_and_label_smoothing_trains_end_to_end(tmp_path):
    from kerastl.training.trainer import train

    phases = "phases=[{name: head, epochs: 1}, {name: tune, epochs: 1, unfreeze: 'blocks:1', bn: train, ema: 0.9, label_smoothing: 0.1}]"
    result = train(load_config(None, BASE + [phases]), output_dir=tmp_path / "run", verbose=0)
    batchnorm = result.metrics["phases"]["tune"]["batchnorm"]
    assert batchnorm["policy"] == "train" and batchnorm["layers_changed"] == batchnorm["layers_in_scope"] > 0
