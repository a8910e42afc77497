"""kerastl tune: a KerasTuner search over config keys, its leaderboard, best.yaml, resume, time budget, and errors."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from kerastl.cli import cli
from kerastl.config import ConfigError, config_from_dict, load_config
from kerastl.tuning.leaderboard import leaderboard
from kerastl.tuning.space import Dimension, read_space, trial_config

QUICKSTART = Path(__file__).parents[1] / "configs" / "quickstart.yaml"
# Three digits through the small CNN of conftest (learns from scratch in seconds): a head epoch, then two of the
# whole network. The space holds the config's own values, so trial 0 is the config as given.
SEARCH = {
    "name": "search",
    "seed": 3,
    "data": {"source": "builtin:digits", "classes": [0, 1, 2], "max_per_class": 40, "split": {"validation": 0.3, "test": 0.2}},
    "model": {"backbone": "small_cnn", "weights": "none", "input_size": 32},
    "augment": {"preset": "none", "flip": False},
    "compute": {"jit_compile": False},
    "results": {"evaluation": False},
    "phases": [{"name": "head", "epochs": 1, "learning_rate": 0.01},
               {"name": "finetune", "epochs": 2, "learning_rate": 0.003, "unfreeze": "all"}],
    "tune": {"trials": 3, "seeds": 1, "space": {"phases.1.learning_rate": {"min": 1.0e-4, "max": 0.01, "log": True},
                                                 "model.head.dropout": [0.2, 0.0]}},
}


def search_config(**tune):
    return config_from_dict({**SEARCH, "tune": {**SEARCH["tune"], **tune}})


@pytest.fixture(scope="module")
def searched(small_cnn_backbone, tmp_path_factory):
    """One tiny random search (3 trials), its chosen config trained, on one more seed, and the config as given."""
    from kerastl.tuning.search import tune

    return tune(search_config(), output_dir=tmp_path_factory.mktemp("tune") / "search", verbose=0)


def test_a_search_leaves_its_leaderboard_picture_and_best_yaml(searched):
    board = pd.read_csv(searched.output_dir / "trials.csv")
    assert list(board["trial"]) == [0, 1, 2] and set(board["status"]) == {"completed"}
    assert {"phases.1.learning_rate", "model.head.dropout", "val_accuracy", "val_loss", "seconds", "rank"} <= set(board)
    assert board["val_accuracy"].between(0, 1).all() and (board["seconds"] > 0).all()
    assert (searched.output_dir / "trials.png").read_bytes()[:4] == b"\x89PNG"
    # trial 0 is the config as given: every searched key at the config's value
    assert board.loc[0, "phases.1.learning_rate"] == pytest.approx(0.003) and board.loc[0, "model.head.dropout"] == 0.2
    best = board[board["trial"] == int(searched.summary["best_trial"]["trial"])].iloc[0]  # KerasTuner's choice among ties
    assert best["rank"] == 1
    chosen = load_config(searched.best_config_file)
    assert chosen.phases[1].learning_rate == pytest.approx(best["phases.1.learning_rate"])
    assert chosen.model.head.dropout == best["model.head.dropout"] and chosen.tune is None
    assert best["val_accuracy"] == board["val_accuracy"].max()


def test_the_chosen_run_reports_how_it_was_chosen(searched):
    summary = json.loads((searched.output_dir / "tune.json").read_text())
    assert summary["trials"] == {"completed": 3, "failed": 0, "interrupted": 0} and summary["stopped_by"] == "trials"
    assert summary["selected_on"] == "the validation split"
    assert summary["seeds"]["seeds"] == [3, 4] and len(summary["seeds"]["test_accuracy"]["values"]) == 2
    assert summary["default"]["test_accuracy"] is not None and "val_accuracy" in summary["linear_probe"]
    assert summary["chosen"]["test_accuracy"] == searched.best.metrics["test_accuracy"]
    report = (searched.output_dir / "best" / "report.md").read_text()
    assert "## How this config was chosen" in report and "the test split was not used" in report
    assert "config as given (untuned)" in report and "linear probe on the frozen features" in report
    assert (searched.output_dir / "seeds" / "seed_4" / "model.keras").is_file()
    assert (searched.output_dir / "default" / "model.keras").is_file()


def test_best_yaml_trains(searched, tmp_path):
    from kerastl.training.trainer import train

    result = train(load_config(searched.best_config_file), output_dir=tmp_path / "again", verbose=0)
    assert result.metrics["val_accuracy"] is not None
    ran = load_config(searched.output_dir / "best" / "config.yaml")
    assert dataclasses.replace(load_config(tmp_path / "again" / "config.yaml"), output_dir=None) == dataclasses.replace(ran, output_dir=None)


def test_a_killed_search_resumes_without_redoing_finished_trials(small_cnn_backbone, tmp_path, monkeypatch):
    from kerastl.tuning import search as search_module

    calls = []
    real = search_module.run_recipe

    def recipe(model, splits, cfg, state):
        assert splits.test is None  # the search never sees the test split
        calls.append(cfg.name)
        if len(calls) == 2 and kill:
            raise KeyboardInterrupt  # killed in the middle of the second trial
        return real(model, splits, cfg, state)

    monkeypatch.setattr(search_module, "run_recipe", recipe)
    cfg = search_config(algorithm="bayesian", seeds=0, compare_default=False)
    kill = True
    with pytest.raises(KeyboardInterrupt):
        search_module.tune(cfg, output_dir=tmp_path / "search", verbose=0)
    first = tmp_path / "search" / "search" / "trial_0" / "kerastl_trial.json"
    finished = first.read_text()
    kill, calls[:] = False, []
    result = search_module.tune(None, output_dir=tmp_path / "search", resume=True, verbose=0)
    assert calls == ["trial-1", "trial-2"]  # trial 0 not run again; the interrupted trial 1 runs from its start
    assert first.read_text() == finished
    assert list(result.trials["status"]) == ["completed"] * 3
    assert not (tmp_path / "search" / "default").exists() and not (tmp_path / "search" / "seeds").exists()


def test_resume_refuses_another_config_but_takes_a_new_budget(small_cnn_backbone, tmp_path):
    from kerastl.errors import RunDirError
    from kerastl.tuning.search import tune

    (tmp_path / "search" / "search").mkdir(parents=True)
    (tmp_path / "search" / "config.yaml").write_text(json.dumps({**SEARCH}))
    with pytest.raises(RunDirError, match="only tune.trials and tune.time may change"):
        tune(search_config(seeds=5), output_dir=tmp_path / "search", resume=True, verbose=0)


def test_a_time_budget_ends_the_search_with_what_finished(small_cnn_backbone, tmp_path):
    from kerastl.tuning.search import tune

    cfg = search_config(seeds=0, compare_default=False, folds=2)
    result = tune(cfg, output_dir=tmp_path / "search", trials=20, time="1s", verbose=0)
    assert result.summary["stopped_by"] == "time" and result.summary["budget_seconds"] == 1
    assert list(result.trials["status"]) == ["completed"]  # the first trial always runs; no second one starts
    assert result.summary["selected_on"] == "2-fold cross-validation of training + validation images"
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "search" / "search").glob("trial_*/kerastl_trial.json")]
    assert len(record["folds"]) == 2 and result.trials.loc[0, "val_accuracy_std"] >= 0


def test_hyperband_trials_train_their_epoch_budget(small_cnn_backbone, tmp_path):
    from kerastl.tuning.search import tune

    cfg = search_config(algorithm="hyperband", trials=2, seeds=0, compare_default=False)
    result = tune(cfg, output_dir=tmp_path / "search", verbose=0)
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "search" / "search").glob("trial_*/kerastl_trial.json"))]
    assert len(records) == 2 and all("epoch_budget" in r for r in records)
    for record in records:  # the phases' 1 + 2 epochs scaled by budget / 3, at least 1 each
        fraction = record["epoch_budget"] / 3
        assert record["folds"][0]["epochs"] == max(1, int(np.ceil(fraction))) + max(1, int(np.ceil(2 * fraction)))
    assert result.summary["algorithm"] == "hyperband"


def test_k_folds_cover_training_and_validation_once_and_leave_out_the_test_split():
    from kerastl.data.images import ImageSource
    from kerastl.data.pipeline import Splits
    from kerastl.tuning.search import k_folds

    def source(n, offset, name):
        labels = np.arange(n) % 3
        return ImageSource(np.full((n, 2, 2, 1), 0, np.uint8), labels, ("a", "b", "c"), name, ids=np.array([f"{name}{i + offset}" for i in range(n)]))

    folds = k_folds(Splits(source(12, 0, "t"), source(6, 0, "v"), source(6, 0, "x")), 3, seed=0)
    held = np.concatenate([fold.validation.image_ids() for fold in folds])
    assert sorted(held) == sorted([f"t{i}" for i in range(12)] + [f"v{i}" for i in range(6)])
    assert all(fold.test is None and np.bincount(fold.validation.labels).tolist() == [2, 2, 2] for fold in folds)
    with pytest.raises(ConfigError, match="tune.folds"):
        k_folds(Splits(source(6, 0, "t"), None, None), 3, seed=0)


def test_a_space_sets_every_phase_and_keeps_mixed_choices(tiny_config):
    cfg = trial_config(tiny_config, {"phases.*.label_smoothing": 0.1, "phases.1.unfreeze": 30})
    assert [p.label_smoothing for p in cfg.phases] == [0.1, 0.1] and cfg.phases[1].unfreeze == 30
    dimension = Dimension("phases.1.unfreeze", choices=("head", 30, "blocks:1", None))
    import keras_tuner as kt

    hp = kt.HyperParameters()
    dimension.declare(hp, 30)
    assert hp.values["phases.1.unfreeze"] == "30"  # one type per KerasTuner choice: the value's YAML text
    assert [dimension.value_of(dimension_label) for dimension_label in ("head", "30", "blocks:1", "null")] == ["head", 30, "blocks:1", None]


def test_the_default_space_searches_the_configs_own_phases(tiny_config):
    keys = {d.key: d for d in read_space(tiny_config)}
    assert keys["phases.0.learning_rate"].low == pytest.approx(tiny_config.phases[0].learning_rate / 10)
    assert keys["phases.1.unfreeze"].choices[0] == 20 and "head" in keys["phases.1.unfreeze"].choices
    assert {"model.head.dropout", "augment.preset", "phases.*.label_smoothing", "phases.*.optimizer"} <= set(keys)


def test_the_objective_decides_the_ranking():
    records = [{"trial": str(i), "status": "completed", "values": {}, "val_accuracy": a, "val_loss": loss, "seconds": 1,
                "folds": [{"val_accuracy": a, "epochs": 1}]} for i, (a, loss) in enumerate(((0.9, 0.5), (0.8, 0.2)))]
    records.append({"trial": "2", "status": "failed", "values": {}, "message": "bad"})
    assert leaderboard(records, (), "val_accuracy")["rank"].tolist()[:2] == [1, 2]
    assert leaderboard(records, (), "val_loss")["rank"].tolist()[:2] == [2, 1]
    assert np.isnan(leaderboard(records, (), "val_loss")["rank"].iloc[2])


@pytest.mark.parametrize("setting, message", [
    ("tune.space={model.head.dropot: [0.1]}", "Unknown config key 'model.head.dropot'. Did you mean 'dropout'?"),
    ("tune.space={seed: [1, 2]}", "'tune.space.seed': 'seed' is fixed during a search"),
    ("tune.space={phases.0.learning_rate: {min: 0.1, max: 0.01}}", "min must be below max"),
    ("tune.space={model.head.dropout: [0.1, 1.5]}", "'tune.space.model.head.dropout': the value 1.5 makes the config invalid"),
    ("tune.space={model.head.dropout: 0.1}", "must be a list of choices or a range"),
    ("tune.algorithm=grid", "'tune.algorithm' must be one of 'random', 'bayesian', 'hyperband'"),
    ("tune.time=soon", "'tune.time' must be a positive duration like 600, 90s, 30m or 2h"),
    ("tune.folds=1", "'tune.folds' must be 0"),
])
def test_a_bad_tune_section_is_one_config_error(tmp_path, setting, message):
    output = tmp_path / "search"
    result = CliRunner().invoke(cli, ["tune", "--config", str(QUICKSTART), "--set", setting, "--output", str(output)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]
    assert not output.exists()


def test_the_budget_options_are_checked_like_the_config(tmp_path):
    result = CliRunner().invoke(cli, ["tune", "--config", str(QUICKSTART), "--trials", "0", "--output", str(tmp_path / "s")])
    assert result.exit_code == 2 and "'tune.trials' must be in [1, 100000], got 0" in result.output
    with pytest.raises(ConfigError, match="must be none for kerastl tune"):
        from kerastl.tuning.space import with_budget

        with_budget(config_from_dict({"compute": {"distribute": "mirrored"}}))


def test_without_keras_tuner_the_error_names_the_extra(monkeypatch):
    import importlib.util

    from kerastl.tuning.space import with_budget

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "keras_tuner" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'kerastl\[tune\]'"):
        with_budget(config_from_dict({}))
