"""Pretrain a backbone from scratch on a source task, for machines that cannot fetch ImageNet weights.

The whole network trains with BatchNorm in training mode and a lower BatchNorm momentum
(`pretrain.bn_momentum`, default 0.9): with Keras' default 0.99/0.999 the moving statistics stay
near their initial values for the few hundred steps a small dataset gives, and the model then
scores at chance in inference mode.

Example:
    >>> metrics = pretrain_backbone(load_config("configs/quickstart.yaml"), "backbone.weights.h5")
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from kerastl.config import Config, HeadConfig
from kerastl.data.pipeline import make_dataset, read_data_source
from kerastl.data.splitting import stratified_split
from kerastl.data.sources import ImageSource
from kerastl.weights import Weights
from kerastl.errors import ConfigError
from kerastl.models.backbones import BACKBONE_LAYER_NAME
from kerastl.models.classifier import ClassifierSpec, input_size, set_batchnorm_momentum
from kerastl.rundir import PRETRAINED_FILE, atomic_path
from kerastl.training.checkpoints import epoch_backup, repair_backup
from kerastl.training.phases import compile_classifier




def pretraining_needed(cfg: Config, folder: Path, done: Optional[dict]) -> bool:
    """Whether `cfg` pretrains its backbone and `folder` holds no finished pretraining (`done`: its metrics)."""
    return Weights.parse(cfg.model.weights).kind == "pretrain" and (done is None or not (Path(folder) / PRETRAINED_FILE).is_file())


def model_weights(cfg: Config, folder: Path) -> str:
    """What `cfg`'s model is built with: `model.weights`, or the pretrained file in `folder` for "pretrain"."""
    return str(Path(folder) / PRETRAINED_FILE) if Weights.parse(cfg.model.weights).kind == "pretrain" else cfg.model.weights


@dataclass(frozen=True)
class PretrainData:
    """The pretraining source, read and checked: its classes and its train / validation parts."""

    classes: tuple[str, ...]
    train: ImageSource
    validation: Optional[ImageSource]


def read_pretrain_data(cfg: Config) -> PretrainData:
    """Read and split `cfg.pretrain.source`.

    Raises:
        ConfigError: the config has no `pretrain` section. DataError: the source cannot be read.
    """
    if cfg.pretrain is None:
        raise ConfigError("The config has no 'pretrain' section to pretrain from.")
    settings = cfg.pretrain
    source = read_data_source(settings.source, cfg.data, input_size(cfg.model)).select(settings.classes, None, cfg.seed)
    fractions = {"validation": settings.validation} if settings.validation > 0 else {}
    train_part, held_out = stratified_split(source, fractions, cfg.seed)
    return PretrainData(source.class_names, train_part, held_out.get("validation"))


def pretrain_backbone(
    cfg: Config, output: str | Path, verbose: int | str = "auto", data: Optional[PretrainData] = None,
    backup: Optional[Path] = None,
) -> dict:
    """Train `cfg.model.backbone` from scratch on `cfg.pretrain.source` and save its weights to `output`.

    Args:
        cfg: a config with a `pretrain` section (its data options are used to read the source).
        output: the weights file to write (`.weights.h5`), usable as `model.weights: PATH`.
        verbose: Keras `fit` verbosity.
        data: the source already read by `read_pretrain_data`; None reads it.
        backup: a folder for Keras `BackupAndRestore`, so a killed pretraining continues from its
            last finished epoch; None trains without one.

    Returns:
        A dict with the source, classes, epochs, seconds and validation accuracy of the pretraining.

    Raises:
        ConfigError: the config has no `pretrain` section. DataError: the source cannot be read.
    """
    output = Path(output)
    if not output.name.endswith(".weights.h5"):
        raise ConfigError(f"Pretrained weights file {str(output)!r} must end with .weights.h5.")
    data = data or read_pretrain_data(cfg)
    started = time.perf_counter()
    model = fit_from_scratch(cfg, data.train, data.validation, verbose=verbose, backup=backup)
    seconds = time.perf_counter() - started
    with atomic_path(output) as temp:
        model.get_layer(BACKBONE_LAYER_NAME).save_weights(temp)
    result = {
        "source": cfg.pretrain.source,
        "classes": list(data.classes),
        "epochs": cfg.pretrain.epochs,
        "seconds": round(seconds, 2),
        "weights_file": str(output),
    }
    if data.validation is not None:
        _, accuracy = model.evaluate(make_dataset(data.validation, cfg.pretrain.batch_size), verbose=0)
        result["val_accuracy"] = round(float(accuracy), 6)
    return result


def fit_from_scratch(
    cfg: Config, train: ImageSource, validation: Optional[ImageSource], verbose: int | str = "auto",
    backup: Optional[Path] = None,
):
    """A classifier on `cfg.model.backbone` with random weights, trained whole as `cfg.pretrain` says.

    The model `ClassifierSpec.build` assembles (preprocessing, backbone, pooling, a plain softmax layer), except that
    the backbone trains whole and its BatchNorm layers train too (training mode, momentum
    `cfg.pretrain.bn_momentum`). With `backup`, every epoch is backed up there (Keras
    `BackupAndRestore`, the last epoch excepted: see `epoch_backup`) and a rerun continues from the last one. Returns the compiled, trained
    model; its backbone is layer "backbone".
    """
    import keras

    settings = cfg.pretrain
    keras.utils.set_random_seed(cfg.seed)
    plain_head = HeadConfig(pooling="avg", norm="none", dropout=0.0)
    spec = ClassifierSpec(replace(cfg.model, weights="none", head=plain_head), train.class_names, train.image_shape,
                          resize=cfg.data.resize, seed=cfg.seed)
    model = spec.build(backbone_training=None)
    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    backbone.trainable = True
    set_batchnorm_momentum(backbone, settings.bn_momentum)
    compile_classifier(model, keras.optimizers.Adam(settings.learning_rate))
    model.fit(
        make_dataset(train, settings.batch_size, shuffle=True, seed=cfg.seed),
        validation_data=make_dataset(validation, settings.batch_size) if validation is not None else None,
        epochs=settings.epochs,
        shuffle=False,  # the dataset shuffles itself, seeded
        verbose=verbose,
        callbacks=_backup_callbacks(backup),
    )
    return model


def _backup_callbacks(backup: Optional[Path]) -> list:
    if backup is None:
        return []
    repair_backup(backup)
    return [epoch_backup(backup)]
