"""The recipe on any data a Keras user holds: `fine_tune(model, x, y, validation_data=...)`, and `run_recipe`,
the one training path under both `fine_tune` and `kerastl.train` (baselines and probe start, the phases,
best weights, calibration, the run folder).

Example:
    >>> model = kerastl.ImageClassifier.from_preset("mobilenet_v2", num_classes=10, image_shape=(8, 8, 1))
    >>> history = kerastl.fine_tune(model, images, labels, validation_data=(val_images, val_labels))
    >>> history.history["val_accuracy"][-1], history.metrics.calibration["temperature"]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from kerastl.config import (
    AugmentConfig,
    ComputeConfig,
    Config,
    DataConfig,
    HeadConfig,
    LossConfig,
    ModelConfig,
    PhaseConfig,
    ResultsConfig,
    SplitConfig,
    config_from_parts,
    default_phases,
    dump_config,
    section_from_dict,
)
from kerastl.analysis.drawing import picture_process
from kerastl.analysis.duplicates import held_out_leakage
from kerastl.data.pipeline import Splits
from kerastl.data.samples import save_run_samples
from kerastl.errors import ConfigError
from kerastl.models.classifier import feature_extractor, model_facts
from kerastl.rundir import CONFIG_FILE, LABELS_FILE, clear_run_files, prepare_run_dir, write_text
from kerastl.run_metrics import RunMetrics
from kerastl.training.baselines import head_init, split_features, start_head
from kerastl.training.checkpoints import CHECKPOINTS, Progress, backed_up_epochs, backup_dir, load_phase_weights, save_phase_weights
from kerastl.training.distribute import ONE_DEVICE
from kerastl.training.finishing import finish_run
from kerastl.training.fitting import run_phase
from kerastl.training.phases import enable_lora
from kerastl.training.runstate import FrozenHeldOut, RunState
from kerastl.training.strategies import Plan, plan_phases


@dataclass(frozen=True)
class Recipe:
    """How `fine_tune` trains: the phases in order, and the options every phase shares.

    `Recipe.default()` is the recipe a config without `phases` runs (a head phase, then the top 30 layers at
    1e-5, BatchNorm frozen for pretrained weights); `Recipe.from_config(cfg)` is any config's.

    Example:
        >>> recipe = Recipe(phases=(PhaseConfig("head", epochs=3), PhaseConfig("finetune", epochs=2, unfreeze="blocks:2",
        ...                                                        learning_rate=1e-4)), batch_size=64)
    """

    phases: tuple[PhaseConfig, ...] = field(default_factory=default_phases)
    batch_size: int = 32
    seed: int = 42
    loss: LossConfig = field(default_factory=LossConfig)
    results: ResultsConfig = field(default_factory=ResultsConfig)
    class_weight: Optional[str] = None  # "balanced": inverse class frequency (data.class_weight)
    sampling: Optional[str] = None  # "balanced": class-uniform draws (data.sampling)
    cache_features: bool = True
    augmented_copies: int = 0
    jit_compile: Any = "auto"
    deterministic: bool = False
    tensorboard: bool = False

    @classmethod
    def default(cls) -> "Recipe":
        return cls()

    @classmethod
    def from_config(cls, cfg: Config) -> "Recipe":
        """The recipe a config describes (its `phases`; a `strategy` preset is planned from the data by `run_recipe`)."""
        return cls(
            phases=tuple(cfg.phases), batch_size=cfg.data.batch_size, seed=cfg.seed, loss=cfg.loss, results=cfg.results,
            class_weight=cfg.data.class_weight, sampling=cfg.data.sampling, cache_features=cfg.compute.cache_features,
            augmented_copies=cfg.compute.augmented_copies, jit_compile=cfg.compute.jit_compile,
            deterministic=cfg.deterministic, tensorboard=cfg.tensorboard,
        )

    def run_config(self, model, splits: Splits, name: str = "fine_tune") -> Config:
        """The `Config` of a run of this recipe on `model` and `splits`: what `config.yaml` of the run folder holds.

        Raises:
            ConfigError: a value out of its range, as `load_config` reports it (the key named as in a config).
        """
        facts = model_facts(model)
        model_cfg = ModelConfig(
            backbone=facts["backbone"], weights=facts.get("weights") or "imagenet", input_size=_input_size(facts.get("input_size")),
            center_crop=facts.get("center_crop"), backbone_options=dict(facts.get("backbone_options") or {}),
            head=section_from_dict(HeadConfig, facts.get("head") or {}, "model.head"),
        )
        augment = facts.get("augment")
        data = DataConfig(
            source=splits.train.origin,
            validation=None if splits.validation is None else splits.validation.origin,
            test=None if splits.test is None else splits.test.origin,
            split=SplitConfig(0.0, 0.0), batch_size=self.batch_size, class_weight=self.class_weight, sampling=self.sampling,
            multi_label=bool(facts["multi_label"]), resize=facts.get("resize", "squash"),
        )
        return config_from_parts(
            name=name, seed=self.seed, data=data, model=model_cfg,
            augment=section_from_dict(AugmentConfig, augment, "augment") if augment else AugmentConfig(preset="none"),
            phases=tuple(self.phases),
            compute=ComputeConfig(
                cache_features=self.cache_features, augmented_copies=self.augmented_copies, jit_compile=self.jit_compile,
                precision=_precision(model),
            ),
            loss=self.loss, results=self.results, tensorboard=self.tensorboard, deterministic=self.deterministic,
        )


def fine_tune(
    model,
    x,
    y=None,
    validation_data=None,
    recipe: Optional[Recipe] = None,
    callbacks: Sequence = (),
    run_dir: Optional[str | Path] = None,
    test_data=None,
    overwrite: bool = False,
    verbose: int | str = "auto",
    **read_options,
):
    """Train `model` (an `ImageClassifier`) with the recipe, in place, as `model.fit` would: the probe start,
    each phase with its BatchNorm policy and cached frozen features, the best epoch kept, calibration.

    Args:
        model: a `kerastl.ImageClassifier` (`ImageClassifier.from_preset`, `build_model` or a loaded run's model).
        x: the training images, as any of: a uint8 (or 0..1 / 0..255 number) array [N, H, W(, C)] with labels `y`; a
            pandas DataFrame (a `label` column and one column per pixel, or a `path` column of image files); an
            `ImageSource`; a `tf.data.Dataset` or `keras.utils.PyDataset` of (images, labels) (batched or not).
            Labels are class indices, class names, or one-hot rows (0/1 rows of every class for a multi-label model).
        y: the labels of array images `x`.
        validation_data: the same kinds as `x`, or an `(images, labels)` tuple: for best-epoch keeping, early
            stopping, calibration. None: the last weights are kept and not calibrated.
        recipe: a `Recipe`; None is `Recipe.default()`.
        callbacks: Keras callbacks added to every phase's `fit` (in a cached head phase `fit` trains the head on
            pooled features, so a callback's `self.model` is that head).
        run_dir: None writes nothing (checkpoints live in a temporary folder); a folder gets the run folder
            `kerastl train` writes (config.yaml, history.csv, metrics.json, model.keras, report, plots, model card).
        test_data: held-out data to measure at the end (same kinds as `validation_data`), into `history.metrics`.
        overwrite: replace a run already in `run_dir`.
        verbose: Keras `fit` verbosity (0 silences progress and notes).
        **read_options: how tables and arrays are read: `label_column` ("label"), `pixel_scale` ("auto", 255, 1),
            `image_shape`, `pixel_layout` (as the `data` keys of a config).

    Returns:
        A `keras.callbacks.History`: `.history` maps each metric (and `phase`) to one value per epoch across
        phases, `.epoch` numbers the epochs, `.metrics` holds the run's final `RunMetrics` (validation and test loss
        and accuracy, baselines, calibration, what was kept), `.run_dir` the run folder or None.

    Raises:
        KerastlError: data that do not fit the model (shape, classes), or a recipe value out of range.

    Example:
        >>> model = ImageClassifier.from_preset("mobilenet_v2", num_classes=10, image_shape=(8, 8, 1), input_size=32)
        >>> history = fine_tune(model, images, labels, validation_data=(val_images, val_labels),
        ...                     recipe=Recipe(phases=(PhaseConfig("head", epochs=3),)))
        >>> model.predict(test_images).argmax(axis=1)
    """
    import keras

    from kerastl.data.python_data import python_splits

    splits = python_splits(model, x, y, validation_data, test_data, read_options)
    cfg = (recipe or Recipe.default()).run_config(model, splits)
    if run_dir is None:
        folder, write_files = Path(tempfile.mkdtemp(prefix="kerastl-fine-tune-")), False
    else:
        folder, write_files = prepare_run_dir(Path(run_dir), overwrite), True
    try:
        progress = Progress(folder / CHECKPOINTS / "progress.json")
        if write_files:
            open_run(folder, cfg, splits, progress)
        state = RunState(folder, progress, ONE_DEVICE, verbose, tuple(callbacks), write_files)
        note_conversions(splits, verbose)
        metrics = run_recipe(model, splits, cfg, state)
    finally:
        if not write_files:
            shutil.rmtree(folder, ignore_errors=True)
    history = keras.callbacks.History()
    history.set_model(model)
    keys = list(dict.fromkeys(key for row in progress.rows for key in row if key != "epoch"))
    history.history = {key: [row.get(key) for row in progress.rows] for key in keys}
    history.epoch = [row["epoch"] - 1 for row in progress.rows]
    history.metrics, history.run_dir = metrics, (folder if write_files else None)
    return history


def run_recipe(model, splits: Splits, cfg: Config, state: RunState) -> RunMetrics:
    """Train `model` on `splits` as `cfg` says, from wherever `state.progress` stands, and finish the run:
    baselines and the probe start (fresh runs on one process, single-label), each phase not done yet, then
    the kept weights, calibration and the metrics (and the run folder's files with `state.write_files`)."""
    # The child process that draws the run's pictures starts now: its imports are done long before its pictures come.
    with picture_process(state.run_dir / CHECKPOINTS / "pictures") if state.write_files else nullcontext() as draw:
        return _run_recipe(model, splits, cfg, state, draw)


def _run_recipe(model, splits: Splits, cfg: Config, state: RunState, draw) -> RunMetrics:
    plan = plan_phases(cfg, splits.train.class_counts())
    seed_everything(cfg)
    progress, engine = state.progress, state.engine
    if progress.leakage is None:  # held-out images that duplicate training images, checked once per run
        progress.leakage = held_out_leakage({"train": splits.train, "validation": splits.validation, "test": splits.test},
                                            flips_match=cfg.augment.flip)
    frozen = None  # the frozen backbone's features of every split, computed once for the baselines and the first phases
    if _starts_fresh(state.run_dir, plan, progress) and engine.processes == 1 and not cfg.data.multi_label:
        with engine.scope():
            extractor = feature_extractor(model)
            frozen = split_features(model, splits, cfg.data.batch_size, state.verbose, extractor)
            progress.baselines = start_head(model, cfg, splits, head_init(cfg) == "probe", state.verbose, frozen)
        progress.save()
        state.extractor = extractor
        state.frozen_held_out = FrozenHeldOut({name: frozen[name] for name in ("validation", "test") if name in frozen})
    _train_phases(model, plan, cfg, splits, state, frozen if cfg.data.cache == "memory" else None)
    return finish_run(model, cfg, splits, plan, state, draw)


def seed_everything(cfg: Config) -> None:
    """Seed Python, NumPy and the backend (and make TensorFlow's ops deterministic with `deterministic: true`)."""
    import keras

    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def note_conversions(splits: Splits, verbose) -> None:
    """Print what reading did to the pixels (`Note: ...` on stderr), unless `verbose` is 0."""
    if verbose != 0:
        for note in splits.conversions():
            print(f"Note: {note}", file=sys.stderr)


def open_run(run_dir: Path, cfg: Config, splits: Splits, progress: Progress, resume: bool = False) -> None:
    """Write what makes `run_dir` a resumable run: config.yaml, labels.txt, the held-out samples and the progress file."""
    if not resume:
        run_dir.mkdir(parents=True, exist_ok=True)
        clear_run_files(run_dir)
        write_text(run_dir / CONFIG_FILE, dump_config(cfg))
        write_text(run_dir / LABELS_FILE, "\n".join(splits.class_names) + "\n")
        split, held_out = splits.held_out()
        save_run_samples(run_dir, held_out, split, splits.train, cfg.seed)
    progress.save()


def _train_phases(model, plan: Plan, cfg: Config, splits: Splits, state: RunState, frozen: Optional[dict] = None) -> None:
    """Each phase not completed yet, in turn, from the weights the last completed one ended with; `frozen`
    (features of the backbone as it was before any phase) serve the cached phases until a phase trains the backbone."""
    progress, run_dir = state.progress, state.run_dir
    if progress.completed:
        lora = [p.scope for p in plan.phases if p.name in progress.completed]
        ranks = [rank for kind, rank in lora if kind == "lora"]
        if ranks:  # the saved weights include LoRA adapters: the model needs them before loading
            enable_lora(model.get_layer("backbone"), ranks[0])
        load_phase_weights(model, run_dir, progress.completed[-1])
    for phase in plan.phases:
        if phase.name in progress.completed:
            continue
        started = time.perf_counter()
        with state.engine.scope():
            rows, details = run_phase(model, phase, cfg, splits, state, frozen)
        trains_backbone = phase.scope[0] != "head"
        if trains_backbone:
            frozen = None  # the backbone has trained: its features are no longer these
        if state.frozen_held_out is not None and progress.rows:
            state.frozen_held_out.after_phase(trains_backbone, progress.rows[-1]["epoch"])
        progress.phases[phase.name] = {
            "epochs": len(rows), "seconds": round(time.perf_counter() - started, 2), "unfreeze": phase.unfreeze or "head",
            **details,
        }
        save_phase_weights(model, run_dir, phase.name)
        progress.completed.append(phase.name)
        progress.save()


def _starts_fresh(run_dir: Path, plan: Plan, progress: Progress) -> bool:
    """Whether no epoch has been trained yet (a new run, or one killed before its first epoch's backup)."""
    return not progress.completed and backed_up_epochs(backup_dir(run_dir, plan.phases[0].name)) is None


def _precision(model) -> str:
    """The dtype policy the model was built with (`compute.precision`)."""
    policy = getattr(model.get_layer("backbone").dtype_policy, "name", "float32")
    if policy not in ("float32", "mixed_float16", "mixed_bfloat16"):
        raise ConfigError(f"The model's dtype policy {policy!r} is none of float32, mixed_float16, mixed_bfloat16.")
    return policy


def _input_size(fact):
    """`model.input_size` from a model's `input_size` fact: one side, or [height, width] saved as a list."""
    return tuple(fact) if isinstance(fact, list) else fact
