"""`kerastl tune`: search a config's recipe with KerasTuner, then train the chosen config and measure how much of
its lead is luck.

Each trial is the recipe (`run_recipe`, as `train` and `fine_tune` run it) on data read once, scored on the
validation split (or k folds of training + validation) and never on the test split. The search lives in
KerasTuner's project folder `OUTPUT/search`, so a killed search continues with `resume=True` without redoing
finished trials. Afterwards: `trials.csv` and `trials.png`, `best.yaml`, the chosen config trained as a
normal run in `OUTPUT/best` (its report says how it was chosen), the same config on other seeds
(`OUTPUT/seeds/`), and the config as given (`OUTPUT/default`) beside it.

Example:
    >>> result = tune("configs/quickstart.yaml", trials=8, time="20m")
    >>> result.trials.head(), result.best_config_file, result.summary["seeds"]["test_accuracy"]
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import time as clock
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from kerastl.config import Config, TuneConfig, config_to_dict, dump_config, load_config, read_config
from kerastl.data.images import ImageSource
from kerastl.data.pipeline import Splits, load_splits
from kerastl.errors import ConfigError, KerastlError, RunDirError
from kerastl.models.classifier import ClassifierSpec, input_size
from kerastl.rundir import CONFIG_FILE, PRETRAINED_FILE, SELECTION_FILE, prepare_run_dir, write_json, write_text
from kerastl.training.checkpoints import CHECKPOINTS, Progress
from kerastl.training.pretrain import pretrain_backbone, read_pretrain_data
from kerastl.training.recipe import note_conversions, run_recipe
from kerastl.training.runstate import RunState
from kerastl.tuning.leaderboard import (
    BEST_CONFIG_FILE,
    SUMMARY_FILE,
    TRIAL_FILE,
    TRIALS_FILE,
    TRIALS_PLOT,
    leaderboard,
    plot_trials,
    selection_summary,
    top_trials_text,
)
from kerastl.tuning.space import Dimension, config_value, read_space, trial_config, with_budget
from kerastl.weights import Weights

SEARCH_DIR = "search"  # KerasTuner's project folder inside the output folder
MAX_FAILURES = 3  # trials failing in a row before the search stops (KerasTuner's max_consecutive_failed_trials)


@dataclass
class TuneResult:
    """What `tune` produced: the chosen config (also in `best_config_file`), its run, the leaderboard and the summary."""

    best_config: Config
    best: Any  # the TrainResult of the chosen config (`OUTPUT/best`)
    trials: Any  # pandas DataFrame, as trials.csv
    summary: dict  # as tune.json
    output_dir: Path

    @property
    def best_config_file(self) -> Path:
        return self.output_dir / BEST_CONFIG_FILE


def tune(
    config: Config | str | Path | None,
    output_dir: Optional[str | Path] = None,
    trials: Optional[int] = None,
    time: Optional[int | str] = None,
    resume: bool = False,
    overwrite: bool = False,
    verbose: int | str = "auto",
) -> TuneResult:
    """Search the recipe of `config` over its `tune.space` with KerasTuner, then train and report the chosen config.

    Args:
        config: a `Config` or a YAML path; its `tune` section (default `TuneConfig()`) declares the search. With
            `resume`, None takes the search's own config.
        output_dir: where the search goes; default `runs/<name>-tune`.
        trials: the most trials (`tune.trials`); with `resume` it counts the trials already run.
        time: a time budget for this call (`tune.time`): seconds or "90s", "30m", "2h". A trial starts only while the
            time spent plus the mean trial so far fits; the first trial always runs.
        resume: continue the search in `output_dir` (finished trials are not run again).
        overwrite: replace a search already in `output_dir`.
        verbose: 0 silences KerasTuner's and Keras' progress.

    Returns:
        A `TuneResult`.

    Raises:
        ConfigError: a bad `tune` section or space (before anything is read or written). KerastlError: as `train`;
        no trial finished.
    """
    base = _tune_config(config, output_dir, resume, trials, time)
    space = read_space(base)
    folder = Path(output_dir or Path("runs") / f"{base.name}-tune")  # the config's output_dir is where a run goes
    _prepare(folder, base, resume, overwrite)
    if resume:
        base = _resumed(folder, base)
    started = clock.perf_counter()
    base = _pretrained_once(base, folder, verbose)
    search = Search(base, space, folder, verbose)
    search.run()
    facts = search.facts(clock.perf_counter() - started)
    board = leaderboard(search.records(), space, base.tune.objective)
    board.to_csv(folder / TRIALS_FILE, index=False)
    plot_trials(board, space, base.tune.objective, folder / TRIALS_PLOT)
    chosen = search.best()
    best_config = trial_config(base, chosen["values"], name=f"{base.name}-best")
    write_text(folder / BEST_CONFIG_FILE, dump_config(dataclasses.replace(best_config, output_dir=None)))
    best, seeds, default = _final_runs(best_config, base, folder, verbose)
    summary = selection_summary(base, {**facts, "best_trial": chosen}, best, seeds, default)
    write_json(folder / SUMMARY_FILE, summary)
    _tell_the_run(best.run_dir, summary)
    return TuneResult(best_config, best, board, summary, folder)


def _tune_config(config, output_dir, resume: bool, trials: Optional[int], time) -> Config:
    """The config to search: given, or the saved one on resume, with the budget `trials` and `time` applied."""
    if config is None and resume:
        saved = Path(output_dir or "") / CONFIG_FILE
        if not saved.is_file():
            raise RunDirError(f"Cannot resume {str(output_dir)!r}: it holds no kerastl search (no {CONFIG_FILE}).")
        config = saved
    return with_budget(read_config(config, (), "tune"), trials, time)


def _prepare(folder: Path, cfg: Config, resume: bool, overwrite: bool) -> None:
    """Check the output folder (a new search, an overwrite, or one to resume) and write its config."""
    if resume:
        if not (folder / SEARCH_DIR).is_dir():
            raise RunDirError(f"Cannot resume {str(folder)!r}: it holds no kerastl search (no {SEARCH_DIR}/ folder).")
        return
    prepare_run_dir(folder, overwrite)
    for part in (SEARCH_DIR, "best", "default", "seeds", TRIALS_FILE, BEST_CONFIG_FILE, SUMMARY_FILE, TRIALS_PLOT, PRETRAINED_FILE):
        path = folder / part
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / CONFIG_FILE, dump_config(cfg))


def _resumed(folder: Path, given: Config) -> Config:
    """The search's saved config; `given` may differ only in the budget (tune.trials, tune.time)."""
    saved = load_config(folder / CONFIG_FILE)
    budget = {"trials": given.tune.trials, "time": given.tune.time}
    if config_to_dict(dataclasses.replace(saved, tune=None)) != config_to_dict(dataclasses.replace(given, tune=None)) or (
        dataclasses.replace(saved.tune, **budget) != given.tune
    ):
        raise RunDirError(
            f"Cannot resume {str(folder)!r}: the config differs from the search's own ({folder / CONFIG_FILE}); only "
            "tune.trials and tune.time may change.",
            python="Resume with config=None, or start a new search.",
            cli="Resume without --config (--trials and --time may change), or start a new search.",
        )
    cfg = dataclasses.replace(saved, tune=given.tune)
    write_text(folder / CONFIG_FILE, dump_config(cfg))
    return cfg


def _pretrained_once(cfg: Config, folder: Path, verbose) -> Config:
    """With `model.weights: pretrain`, pretrain the backbone once for every trial and run (into the output folder)
    and return the config that loads that file."""
    if Weights.parse(cfg.model.weights).kind != "pretrain":
        return cfg
    file = (folder / PRETRAINED_FILE).resolve()
    if not file.is_file():
        pretrain_backbone(cfg, file, verbose, read_pretrain_data(cfg), backup=folder / CHECKPOINTS / "pretrain")
        shutil.rmtree(folder / CHECKPOINTS, ignore_errors=True)
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, weights=str(file)), pretrain=None)


class Search:
    """The KerasTuner search of one config: the oracle, the tuner whose trials run the recipe, the data read once."""

    def __init__(self, base: Config, space: tuple[Dimension, ...], folder: Path, verbose):
        self.base, self.space, self.folder, self.verbose = base, space, folder, verbose
        self.settings: TuneConfig = base.tune
        self.budget = self.settings.seconds
        self.started = clock.perf_counter()
        self.trial_seconds: list[float] = []  # trials run by this call, for the time budget
        self.stopped_by = "trials"
        self.max_epochs = sum(phase.epochs for phase in base.phases)
        self._splits: dict = {}
        self.tuner = self._tuner()

    def run(self) -> None:
        """Run trials until `tune.trials` have run, the time budget ends, or the space is exhausted."""
        self.folds(self.base)  # the data read and checked (a validation split to score on) before any trial
        try:
            self.tuner.search(verbose=0 if self.verbose == 0 else 1)
        except RuntimeError as exc:
            if "consecutive failures" not in str(exc):
                raise
            failed = [r for r in self.records() if r["status"] == "failed"]
            message = failed[-1]["message"] if failed else str(exc)
            raise KerastlError(f"kerastl tune stopped: {MAX_FAILURES} trials in a row failed; the last with: {message}") from None
        oracle = self.tuner.oracle
        if self.stopped_by != "time" and len(oracle.trials) < oracle.max_trials:
            self.stopped_by = "space"  # the oracle ran out of new values (or Hyperband finished its brackets)

    def _tuner(self):
        import keras_tuner as kt

        hp = kt.HyperParameters()
        for dimension in self.space:
            dimension.declare(hp, config_value(self.base, dimension.key))
        objective = kt.Objective(self.settings.objective, "max" if self.settings.objective == "val_accuracy" else "min")
        common = dict(objective=objective, hyperparameters=hp, seed=self.base.seed, max_consecutive_failed_trials=MAX_FAILURES)
        if self.settings.algorithm == "hyperband":
            if self.max_epochs < 2:
                raise ConfigError("Config key 'tune.algorithm' is hyperband, which needs phases of 2 or more epochs in all to halve.")
            oracle = kt.oracles.HyperbandOracle(max_epochs=self.max_epochs, factor=3, **common)
            oracle.max_trials = self.settings.trials
        elif self.settings.algorithm == "bayesian":
            oracle = _from_config(kt.oracles.BayesianOptimizationOracle)(
                max_trials=self.settings.trials, num_initial_points=max(2, self.settings.trials // 3), **common)
        else:
            oracle = _from_config(kt.oracles.RandomSearchOracle)(max_trials=self.settings.trials, **common)
        search = self

        class RecipeTuner(kt.Tuner):
            """A KerasTuner tuner whose trial is a kerastl recipe run, within the search's time budget."""

            def pre_create_trial(self):
                search.check_time(self.oracle)

            def run_trial(self, trial, *args, **kwargs):
                return search.run_trial(trial, self.get_trial_dir(trial.trial_id))

        return RecipeTuner(oracle=oracle, directory=str(self.folder), project_name=SEARCH_DIR, overwrite=False)

    def check_time(self, oracle) -> None:
        """Stop starting trials once the time spent plus the mean trial of this call would pass the budget."""
        if self.budget is None or not oracle.trials:
            return
        spent = clock.perf_counter() - self.started
        expected = float(np.mean(self.trial_seconds)) if self.trial_seconds else 0.0
        if spent >= self.budget or spent + expected > self.budget:
            oracle.max_trials = len(oracle.trials)  # the oracle answers STOPPED to the next request
            self.stopped_by = "time"

    def run_trial(self, trial, trial_dir: str) -> dict:
        """One trial: the config its values make, trained by the recipe on each fold; its record is written
        beside KerasTuner's files. A value combination that makes an invalid config fails the trial, not the search."""
        import keras_tuner as kt

        sampled = trial.hyperparameters.values
        values = {d.key: d.value_of(sampled[d.key]) for d in self.space if d.key in sampled}
        record: dict[str, Any] = {"trial": trial.trial_id, "values": values}
        started = clock.perf_counter()
        try:
            cfg = trial_config(self.base, values, name=f"trial-{trial.trial_id}")
            if "tuner/epochs" in sampled:
                cfg = _scaled_epochs(cfg, sampled["tuner/epochs"] / self.max_epochs)
                record["epoch_budget"] = sampled["tuner/epochs"]
            scores = [self._score(cfg, splits, Path(trial_dir) / f"fold_{fold}") for fold, splits in enumerate(self.folds(cfg))]
        except KerastlError as exc:
            self._failed(record, started, str(exc), trial_dir)
            raise kt.errors.FailedTrialError(str(exc)) from None
        except Exception as exc:  # a bug: KerasTuner would count it as an invalid trial and go on
            self._failed(record, started, f"{type(exc).__name__}: {exc}", trial_dir)
            raise kt.errors.FatalError(record["message"]) from exc
        record["seconds"] = round(clock.perf_counter() - started, 2)
        self.trial_seconds.append(record["seconds"])
        result = {key: float(np.mean([s[key] for s in scores])) for key in ("val_accuracy", "val_loss")}
        record.update(status="completed", folds=scores, **result)
        write_json(Path(trial_dir) / TRIAL_FILE, record)
        return result

    def _score(self, cfg: Config, splits: Splits, run_dir: Path) -> dict:
        """Train a fresh model of `cfg` on `splits` with the recipe (nothing written but checkpoints, removed at
        the end) and return its validation accuracy and loss, the probe's validation accuracy and the epochs."""
        import keras

        keras.backend.clear_session()
        model = ClassifierSpec.from_config(cfg, splits.class_names, splits.train.image_shape).build()
        state = RunState(run_dir, Progress(run_dir / CHECKPOINTS / "progress.json"), verbose=self.verbose, write_files=False)
        metrics = run_recipe(model, splits, cfg, state)
        return {"val_accuracy": metrics.val_accuracy, "val_loss": metrics.val_loss,
                "probe_val_accuracy": metrics.linear_probe.get("val_accuracy"),
                "epochs": sum(phase["epochs"] for phase in metrics.phases.values())}

    def _failed(self, record: dict, started: float, message: str, trial_dir: str) -> None:
        record.update(status="failed", message=message, seconds=round(clock.perf_counter() - started, 2))
        write_json(Path(trial_dir) / TRIAL_FILE, record)

    def folds(self, cfg: Config) -> list[Splits]:
        """The splits a trial trains and is scored on, without the test split: the validation split, or the
        `tune.folds` folds of training + validation (stratified, seeded)."""
        key = (cfg.data, input_size(cfg.model))
        if key not in self._splits:
            splits = load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model), progress=self.verbose != 0)
            note_conversions(splits, self.verbose)
            if self.settings.folds >= 2:
                self._splits[key] = k_folds(splits, self.settings.folds, cfg.seed)
            elif splits.validation is None:
                raise ConfigError("kerastl tune scores trials on the validation split, and the config has none: set "
                                  "data.split.validation (e.g. 0.2), data.validation, or tune.folds (e.g. 5).")
            else:
                self._splits[key] = [Splits(splits.train, splits.validation, None)]
        return self._splits[key]

    def records(self) -> list[dict]:
        """Every trial's record, in trial order (an interrupted trial has status `interrupted`)."""
        import json

        rows = []
        for trial_id, trial in sorted(self.tuner.oracle.trials.items()):
            file = Path(self.tuner.get_trial_dir(trial_id)) / TRIAL_FILE
            if file.is_file():
                rows.append(json.loads(file.read_text()))
            else:
                values = {d.key: d.value_of(trial.hyperparameters.values[d.key]) for d in self.space
                          if d.key in trial.hyperparameters.values}
                rows.append({"trial": trial_id, "values": values, "status": "interrupted"})
        return rows

    def best(self) -> dict:
        """The best completed trial by the objective (KerasTuner's choice): its id, values and score."""
        best = self.tuner.oracle.get_best_trials(1)
        if not best or best[0].score is None:
            raise KerastlError(f"kerastl tune: no trial finished in {self.folder}; give it more time (--time) or look at "
                               f"{self.folder / SEARCH_DIR} for the trials' errors.")
        sampled = best[0].hyperparameters.values
        values = {d.key: d.value_of(sampled[d.key]) for d in self.space if d.key in sampled}
        return {"trial": best[0].trial_id, "values": values, self.settings.objective: float(best[0].score)}

    def facts(self, seconds: float) -> dict:
        """How the search went: algorithm, objective, trials by status, why it stopped, its seconds."""
        records = self.records()
        return {
            "algorithm": self.settings.algorithm, "objective": self.settings.objective,
            "selected_on": f"{self.settings.folds}-fold cross-validation of training + validation images"
            if self.settings.folds >= 2 else "the validation split",
            "trials": {status: sum(r["status"] == status for r in records) for status in ("completed", "failed", "interrupted")},
            "stopped_by": self.stopped_by, "budget_seconds": self.budget, "seconds": round(seconds, 1),
            "space": {d.key: list(d.choices) if d.choices else {"min": d.low, "max": d.high, "log": d.log} for d in self.space},
        }


def _from_config(oracle_class):
    """`oracle_class` whose first trial is the config as given (every dimension at the config's value, where
    the space holds it), so the search is measured against the untuned recipe and can only improve on it."""

    class StartsFromConfig(oracle_class):
        def populate_space(self, trial_id):
            if not self.trials:
                from keras_tuner.src.engine.trial import TrialStatus

                return {"status": TrialStatus.RUNNING, "values": {hp.name: hp.default for hp in self.hyperparameters.space}}
            return super().populate_space(trial_id)

    return StartsFromConfig


def _scaled_epochs(cfg: Config, fraction: float) -> Config:
    """`cfg` with each phase's epochs scaled by `fraction` (at least 1 where there were any): Hyperband's budget."""
    phases = tuple(dataclasses.replace(p, epochs=max(1, math.ceil(p.epochs * fraction)) if p.epochs else 0) for p in cfg.phases)
    return dataclasses.replace(cfg, phases=phases)


def k_folds(splits: Splits, folds: int, seed: int) -> list[Splits]:
    """`folds` splits of the training + validation images, each fold validated once (stratified for single-label
    data, seeded); the test split stays out of every fold."""
    from sklearn.model_selection import KFold, StratifiedKFold

    pool = concatenate(splits.train, splits.validation) if splits.validation is not None else splits.train
    counts = pool.class_counts()
    stratified = pool.label_kind.stratifies
    if stratified and counts.min() < folds:
        raise ConfigError(f"Config key 'tune.folds' is {folds}, but class {pool.class_names[int(counts.argmin())]!r} has only "
                          f"{int(counts.min())} training + validation images; use fewer folds.")
    splitter = (StratifiedKFold if stratified else KFold)(folds, shuffle=True, random_state=seed)
    labels = pool.labels if stratified else np.zeros(len(pool))
    return [Splits(pool.take(train), pool.take(held), None) for train, held in splitter.split(np.zeros(len(pool)), labels)]


def concatenate(first: ImageSource, second: ImageSource) -> ImageSource:
    """One source of the images of two with the same classes (ids kept, pixel notes merged)."""
    return ImageSource(
        np.concatenate([first.images, second.images]), np.concatenate([first.labels, second.labels]), first.class_names,
        f"{first.origin} + {second.origin}", first.skipped + second.skipped,
        np.concatenate([first.image_ids(), second.image_ids()]), tuple(dict.fromkeys(first.conversions + second.conversions)),
    )


def _final_runs(best_config: Config, base: Config, folder: Path, verbose):
    """Train the chosen config (`best/`), it again on `tune.seeds` other seeds (`seeds/seed_N/`, without the
    evaluation folder) and the config as given (`default/`, with `compare_default`)."""
    from kerastl.training.trainer import train

    settings = base.tune
    if verbose != 0:
        print(f"Training the chosen config in {folder / 'best'}", file=sys.stderr)
    best = train(best_config, output_dir=folder / "best", overwrite=True, verbose=verbose)
    seeds = [best]
    for offset in range(1, settings.seeds + 1):
        seed = (base.seed + offset) % 2**32
        cfg = dataclasses.replace(best_config, seed=seed, name=f"{best_config.name}-seed{seed}",
                                  results=dataclasses.replace(best_config.results, evaluation=False))
        seeds.append(train(cfg, output_dir=folder / "seeds" / f"seed_{seed}", overwrite=True, verbose=verbose))
    default = None
    if settings.compare_default:
        untuned = dataclasses.replace(base, tune=None, name=f"{base.name}-default")
        default = train(untuned, output_dir=folder / "default", overwrite=True, verbose=verbose)
    return best, seeds, default


def _tell_the_run(run_dir: Path, summary: dict) -> None:
    """Record in the chosen config's run how it was chosen (`selection.json`) and rewrite its report with it."""
    from kerastl.analysis.report import write_report

    write_json(run_dir / SELECTION_FILE, summary)
    write_report(run_dir)


def print_top(result: TuneResult, count: int = 5) -> str:
    """The top trials and where the best config is (what `kerastl tune` prints)."""
    return top_trials_text(result.trials, result.summary, count) + f"\nBest config: {result.best_config_file}"
