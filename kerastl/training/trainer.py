"""The config route, a shell over the recipe: read the config, read the data, (pretrain,) build the
`ImageClassifier`, run the recipe (`kerastl.training.recipe.run_recipe`, as `fine_tune` does) into the run folder,
with the optional stages the config asks for (`kerastl.training.stages`).

Example:
    >>> cfg = load_config("configs/quickstart.yaml")
    >>> result = train(dataclasses.replace(cfg, phases=cfg.phases[:1]), output_dir="runs/try", overwrite=True)
    >>> result.metrics.test_accuracy, result.run_dir
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from kerastl.config import Config, config_to_dict, load_config, read_config, warn_overrides
from kerastl.data.pipeline import Splits, load_splits
from kerastl.errors import RunDirError
from kerastl.models.classifier import ClassifierSpec, input_size
from kerastl.rundir import CONFIG_FILE, MODEL_FILE, prepare_run_dir, remove_partial_files
from kerastl.run_metrics import RunMetrics
from kerastl.training.checkpoints import CHECKPOINTS, Progress, finished_epochs
from kerastl.training.distillation import student_config
from kerastl.training.distribute import check_resume_point, check_same_classes, data_shard, process_run_dir, start_engine
from kerastl.training.fitting import CACHE
from kerastl.training.pretrain import model_weights
from kerastl.training.recipe import note_conversions, open_run, run_recipe, seed_everything
from kerastl.training.runstate import RunState
from kerastl.training.strategies import plan_phases
from kerastl.training.stages import OpenRun, run_stages


@dataclass
class TrainResult:
    """What `train` produced: the trained model, its per-epoch history, the metrics and where they were written."""

    model: Any
    history: Any
    metrics: RunMetrics
    run_dir: Path


def train(
    config: Config | str | Path | None,
    output_dir: Optional[str | Path] = None,
    overwrite: bool = False,
    overrides: Sequence[str] = (),
    verbose: int | str = "auto",
    resume: bool = False,
) -> TrainResult:
    """Train a model as `config` says: optional pretraining, then each phase in turn, then test.

    Every finished epoch is checkpointed under `RUN_DIR/checkpoints/`, so a run killed at any moment
    continues with `resume=True` from its last finished epoch, in the right phase.

    Args:
        config: a `Config` or the path of a YAML config; with `resume`, None takes the run's own config.
        output_dir: the run directory; default `config.output_dir` or `runs/<name>`.
        overwrite: replace a run already in `output_dir`.
        overrides: deprecated: `key.sub=value` strings applied to a config read from a path (the command
            line's `--set`); pass a `Config` instead.
        verbose: Keras `fit` verbosity (0 silences progress bars).
        resume: continue the interrupted run in `output_dir`.

    Returns:
        A `TrainResult` with `.model`, `.history` (pandas DataFrame), `.metrics` (a `RunMetrics`: what metrics.json
        holds, by attribute) and `.run_dir`.

    Raises:
        KerastlError: bad config, data or weights, a run directory that would be overwritten, or
            a resume whose config differs from the run's. Nothing is written before the data and
            model are known to be good.

    Example:
        >>> result = train("configs/quickstart.yaml", output_dir="runs/try", overwrite=True)
        >>> result = train(None, output_dir="runs/try", resume=True)   # after a crash
    """
    import pandas as pd

    if resume:
        if overrides:
            warn_overrides("train")
        run_dir = process_run_dir(Path(output_dir or ""))
        cfg = resumable_config(run_dir, config, overrides)
        remove_partial_files(run_dir)  # a kill mid-write leaves the temporary file of an atomic write
    else:
        cfg = read_config(config, overrides, "train")
        run_dir = prepare_run_dir(process_run_dir(Path(output_dir or cfg.output_dir or Path("runs") / cfg.name)), overwrite)
    stages = run_stages(cfg, verbose)  # pretraining, distillation, tracking: as the config asks
    splits = _load_splits(cfg, run_dir, progress=verbose != 0)
    note_conversions(splits, verbose)
    for stage in stages:
        splits = stage.on_splits(splits)
    plan = plan_phases(cfg, splits.train.class_counts())
    seed_everything(cfg)
    progress = Progress.load(run_dir) if resume else Progress(run_dir / CHECKPOINTS / "progress.json")
    run = OpenRun(run_dir, progress, splits, resume)
    opened = any([stage.before_model(run) for stage in stages])  # a list: every stage acts
    engine = start_engine(cfg.compute.distribute, cfg.data.batch_size)
    check_same_classes(engine, splits.class_names)  # processes that read their own files must agree on the classes
    if resume:  # every process of a multihost run must continue from the same epoch
        check_resume_point(engine, finished_epochs(run_dir, plan.phases, progress))
    with engine.scope():  # variables made here are mirrored on every replica; fit splits each batch among them
        model = ClassifierSpec.from_config(cfg, splits.class_names, splits.train.image_shape, model_weights(cfg, run_dir)).build()
    if not opened:  # the weights fit: nothing was written before the input was known to be good
        open_run(run_dir, cfg, splits, progress, resume)
    callbacks = [callback for stage in stages for callback in stage.callbacks(run)]
    state = RunState(run_dir, progress, engine, verbose, callbacks, stages=stages)
    metrics = run_recipe(model, splits, cfg, state)
    for stage in stages:
        stage.on_end(metrics, run_dir)
    return TrainResult(model, pd.DataFrame(progress.rows), metrics, run_dir)


def _load_splits(cfg: Config, run_dir: Path, progress: bool) -> Splits:
    """The data splits; with `data.cache: disk` their images are files under RUN_DIR/cache, removed
    again (with a run directory made only for them) if the data turn out bad."""
    cache_dir = run_dir / CACHE
    existed = run_dir.exists()
    try:
        return load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model), progress=progress, cache_dir=cache_dir,
                           shard=data_shard(cfg.compute.distribute))
    except BaseException:
        if cfg.data.cache == "disk":
            shutil.rmtree(cache_dir, ignore_errors=True)
            if not existed:
                shutil.rmtree(run_dir, ignore_errors=True)
        raise


def resumable_config(run_dir: Path, config: Config | str | Path | None, overrides: Sequence[str]) -> Config:
    """The config of an interrupted run; a given config must equal it."""
    saved_file = run_dir / CONFIG_FILE
    if not saved_file.is_file():
        raise RunDirError(f"Cannot resume {str(run_dir)!r}: it holds no kerastl run (no config.yaml).")
    if (run_dir / MODEL_FILE).is_file() and not (run_dir / CHECKPOINTS).is_dir():
        raise RunDirError(f"Cannot resume {str(run_dir)!r}: the run is complete.")
    saved = load_config(saved_file)
    if config is None and not overrides:
        return saved
    given = config if isinstance(config, Config) else load_config(config if config is not None else saved_file, overrides)
    differences = _differences(config_to_dict(saved), config_to_dict(given))
    if differences:
        raise RunDirError(
            f"Cannot resume {str(run_dir)!r}: the config no longer matches the checkpoint at "
            + "; ".join(differences[:3]) + ". ",
            python="Resume with config=None, or start a new run.",
            cli="Resume without --config, or start a new run.",
        )
    return saved


def _differences(saved, given, where: str = "") -> list[str]:
    if isinstance(saved, dict) and isinstance(given, dict):
        return [d for key in saved for d in _differences(saved[key], given.get(key), f"{where}.{key}" if where else key)]
    if isinstance(saved, list) and isinstance(given, list) and len(saved) == len(given):
        return [d for i, (a, b) in enumerate(zip(saved, given)) for d in _differences(a, b, f"{where}.{i}")]
    return [] if saved == given else [f"{where} ({saved!r} in the run, {given!r} now)"]


def distill(
    teacher_run: str | Path,
    student: str,
    output_dir: Optional[str | Path] = None,
    overrides: Sequence[str] = (),
    overwrite: bool = False,
    verbose: int | str = "auto",
):
    """Train `student` (a backbone name) on the soft targets of the run in `teacher_run`.

    The student's config is the teacher's with `model.backbone: student`, no backbone options, name
    `<teacher name>-<student>` and a `distill` section (`kerastl.training.distillation.student_config`); to change
    it, `train(dataclasses.replace(student_config(teacher_run, student), ...))`. `overrides` (`key=value` strings,
    the command line's `--set`) are deprecated here.

    Returns:
        The student's `TrainResult`; its `metrics.distillation` compares teacher and student.

    Raises:
        RunDirError / ExportError: no complete run at `teacher_run`. KerastlError: as `train`.
    """
    if overrides:
        warn_overrides("distill")
    cfg = student_config(teacher_run, student, overrides)
    return train(cfg, output_dir=output_dir, overwrite=overwrite, verbose=verbose)
