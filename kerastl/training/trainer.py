"""Run the configured phases and write the run directory.

Example:
    >>> result = train("configs/quickstart.yaml", overrides=["phases.0.epochs=1"])
    >>> result.metrics["test_accuracy"], result.run_dir
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from kerastl.config import Config, config_to_dict, dump_config, load_config, parse_unfreeze
from kerastl.data.pipeline import Splits, load_splits
from kerastl.data.samples import save_run_samples
from kerastl.errors import RunDirError
from kerastl.models.classifier import build_model, input_size
from kerastl.rundir import clear_run_files, prepare_run_dir, remove_partial_files, write_text
from kerastl.training.baselines import head_init, start_head
from kerastl.training.checkpoints import (
    CHECKPOINTS,
    Progress,
    backed_up_epochs,
    backup_dir,
    finished_epochs,
    load_phase_weights,
    save_phase_weights,
)
from kerastl.training.distillation import teacher_targets
from kerastl.training.distribute import Engine, check_resume_point, process_run_dir, start_engine
from kerastl.training.finishing import finish_run
from kerastl.training.fitting import CACHE, run_phase
from kerastl.training.phases import enable_lora
from kerastl.training.pretrain import PRETRAINED_FILE, model_weights, pretrain_backbone, pretraining_needed, read_pretrain_data
from kerastl.training.strategies import Plan, plan_phases
from kerastl.training.tracking import check_tracking, epoch_logger, start_tracking


@dataclass
class TrainResult:
    """What `train` produced: the trained model, its per-epoch history, the metrics and where they were written."""

    model: Any
    history: Any
    metrics: dict
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
        overrides: `key.sub=value` strings applied to a config read from a path.
        verbose: Keras `fit` verbosity (0 silences progress bars).
        resume: continue the interrupted run in `output_dir`.

    Returns:
        A `TrainResult` with `.model`, `.history` (pandas DataFrame), `.metrics` and `.run_dir`.

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
        run_dir = process_run_dir(Path(output_dir or ""))
        cfg = resumable_config(run_dir, config, overrides)
        remove_partial_files(run_dir)  # a kill mid-write leaves the temporary file of an atomic write
    else:
        cfg = config if isinstance(config, Config) else load_config(config, overrides)
        run_dir = prepare_run_dir(process_run_dir(Path(output_dir or cfg.output_dir or Path("runs") / cfg.name)), overwrite)
    check_tracking(cfg)
    splits = _load_splits(cfg, run_dir, progress=verbose != 0)
    if verbose != 0:
        for note in splits.conversions():
            print(f"Note: {note}", file=sys.stderr)
    if cfg.distill is not None:  # the soft targets, before anything is written
        splits = teacher_targets(cfg, splits, verbose)
    plan = plan_phases(cfg, splits.train.class_counts())
    _seed(cfg)
    progress = Progress.load(run_dir) if resume else Progress(run_dir / CHECKPOINTS / "progress.json")
    opened = _pretrain(cfg, run_dir, splits, progress, resume, verbose)
    engine = start_engine(cfg.compute.distribute, cfg.data.batch_size)
    if resume:  # every process of a multihost run must continue from the same epoch
        check_resume_point(engine, finished_epochs(run_dir, plan.phases, progress))
    with engine.scope():  # variables made here are mirrored on every replica; fit splits each batch among them
        model = build_model(
            cfg.model, len(splits.class_names), splits.train.image_shape, cfg.augment, cfg.seed,
            model_weights(cfg, run_dir), cfg.data.multi_label, cfg.compute.precision, splits.class_names,
        )
    if not opened:  # the weights fit: nothing was written before the input was known to be good
        _open_run(run_dir, cfg, splits, progress, resume)
    # What the frozen features are worth, and the head started from the probe (LP-FT). Several processes
    # each see a shard of every batch, and a multi-label head has no multinomial probe: neither applies.
    if _starts_fresh(run_dir, plan, progress) and engine.processes == 1 and not cfg.data.multi_label:
        with engine.scope():
            progress.baselines = start_head(model, cfg, splits, head_init(cfg) == "probe", verbose)
        progress.save()
    tracker = start_tracking(cfg, run_dir, progress)
    _train_phases(model, plan, cfg, splits, run_dir, progress, engine, verbose, [epoch_logger(tracker)] if tracker else [])
    metrics = finish_run(model, run_dir, cfg, splits, plan, progress, engine)
    if tracker is not None:
        tracker.finish(metrics, run_dir)
    return TrainResult(model, pd.DataFrame(progress.rows), metrics, run_dir)


def _seed(cfg: Config) -> None:
    """Seed Python, NumPy and the backend before the engine starts, so every process of a multihost run starts alike."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def _pretrain(cfg: Config, run_dir: Path, splits: Splits, progress: Progress, resume: bool, verbose) -> bool:
    """Pretrain the backbone when the config asks and it is not done yet; returns whether the run was opened.

    The pretraining data is checked first, then the run is written, so a run killed while it pretrains
    resumes there (the pretraining backs up every epoch).
    """
    if not pretraining_needed(cfg, run_dir, progress.pretrain):
        return False
    data = read_pretrain_data(cfg)
    _open_run(run_dir, cfg, splits, progress, resume)
    progress.pretrain = pretrain_backbone(cfg, run_dir / PRETRAINED_FILE, verbose, data, backup=run_dir / CHECKPOINTS / "pretrain")
    progress.save()
    return True


def _train_phases(
    model, plan: Plan, cfg: Config, splits: Splits, run_dir: Path, progress: Progress, engine: Engine, verbose, callbacks: list
):
    """Each phase not completed yet, in turn, from the weights the last completed one ended with; `callbacks`
    are added to every phase's."""
    if progress.completed:
        ranks = [parse_unfreeze(p.unfreeze)[1] for p in plan.phases if p.name in progress.completed and parse_unfreeze(p.unfreeze)[0] == "lora"]
        if ranks:  # the saved weights include LoRA adapters: the model needs them before loading
            enable_lora(model.get_layer("backbone"), ranks[0])
        load_phase_weights(model, run_dir, progress.completed[-1])
    for phase in plan.phases:
        if phase.name in progress.completed:
            continue
        started = time.perf_counter()
        with engine.scope():
            rows, details = run_phase(model, phase, cfg, splits, run_dir, progress, engine, verbose=verbose, callbacks=callbacks)
        progress.phases[phase.name] = {
            "epochs": len(rows), "seconds": round(time.perf_counter() - started, 2), "unfreeze": phase.unfreeze or "head",
            **details,
        }
        save_phase_weights(model, run_dir, phase.name)
        progress.completed.append(phase.name)
        progress.save()


def _open_run(run_dir: Path, cfg: Config, splits: Splits, progress: Progress, resume: bool) -> None:
    """Write what makes `run_dir` a resumable run: config.yaml, labels.txt and the progress file."""
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        clear_run_files(run_dir)
        write_text(run_dir / "config.yaml", dump_config(cfg))
        write_text(run_dir / "labels.txt", "\n".join(splits.class_names) + "\n")
        split, held_out = splits.held_out()
        save_run_samples(run_dir, held_out, split, splits.train, cfg.seed)
    progress.save()


def _starts_fresh(run_dir: Path, plan, progress: Progress) -> bool:
    """Whether no epoch has been trained yet (a new run, or one killed before its first epoch's backup)."""
    return not progress.completed and backed_up_epochs(backup_dir(run_dir, plan.phases[0].name)) is None


def _load_splits(cfg: Config, run_dir: Path, progress: bool) -> Splits:
    """The data splits; with `data.cache: disk` their images are files under RUN_DIR/cache, removed
    again (with a run directory made only for them) if the data turn out bad."""
    cache_dir = run_dir / CACHE
    existed = run_dir.exists()
    try:
        return load_splits(cfg.data, cfg.seed, image_size=input_size(cfg.model), progress=progress, cache_dir=cache_dir)
    except BaseException:
        if cfg.data.cache == "disk":
            shutil.rmtree(cache_dir, ignore_errors=True)
            if not existed:
                shutil.rmtree(run_dir, ignore_errors=True)
        raise


def resumable_config(run_dir: Path, config: Config | str | Path | None, overrides: Sequence[str]) -> Config:
    """The config of an interrupted run; a given config must equal it."""
    saved_file = run_dir / "config.yaml"
    if not saved_file.is_file():
        raise RunDirError(f"Cannot resume {str(run_dir)!r}: it holds no kerastl run (no config.yaml).")
    if (run_dir / "model.keras").is_file() and not (run_dir / CHECKPOINTS).is_dir():
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
