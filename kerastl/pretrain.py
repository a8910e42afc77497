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
from pathlib import Path

from kerastl.backbones import create_backbone
from kerastl.config import Config
from kerastl.data.pipeline import read_data_source, make_dataset, stratified_split
from kerastl.errors import ConfigError
from kerastl.model import input_size
from kerastl.registry import get_backbone
from kerastl.rundir import atomic_path


def pretrain_backbone(cfg: Config, output: str | Path, verbose: int | str = "auto") -> dict:
    """Train `cfg.model.backbone` from scratch on `cfg.pretrain.source` and save its weights to `output`.

    Args:
        cfg: a config with a `pretrain` section (its data options are used to read the source).
        output: the weights file to write (`.weights.h5`), usable as `model.weights: PATH`.

    Returns:
        A dict with the source, classes, epochs, seconds and validation accuracy of the pretraining.

    Raises:
        ConfigError: the config has no `pretrain` section. DataError: the source cannot be read.
    """
    import keras

    from kerastl.layers import Normalize, Preprocess

    if cfg.pretrain is None:
        raise ConfigError("The config has no 'pretrain' section to pretrain from.")
    settings = cfg.pretrain
    output = Path(output)
    if not output.name.endswith(".weights.h5"):
        raise ConfigError(f"Pretrained weights file {str(output)!r} must end with .weights.h5.")
    spec, size = get_backbone(cfg.model.backbone), input_size(cfg.model)
    source = read_data_source(settings.source, cfg.data, size).select(settings.classes, None, cfg.seed)
    fractions = {"validation": settings.validation} if settings.validation > 0 else {}
    train_part, held_out = stratified_split(source, fractions, cfg.seed)

    keras.utils.set_random_seed(cfg.seed)
    backbone = create_backbone(spec, "none", size, cfg.model.backbone_options)
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = settings.bn_momentum
    inputs = keras.Input(shape=train_part.image_shape, dtype="uint8")
    x = Preprocess(size, channels=3, crop=cfg.model.center_crop)(inputs)
    x = Normalize(spec.preprocess)(x)
    x = keras.layers.GlobalAveragePooling2D()(backbone(x))
    outputs = keras.layers.Dense(len(source.class_names), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.Adam(settings.learning_rate),
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )
    validation = held_out.get("validation")
    started = time.perf_counter()
    model.fit(
        make_dataset(train_part, settings.batch_size, shuffle=True, seed=cfg.seed),
        validation_data=make_dataset(validation, settings.batch_size) if validation is not None else None,
        epochs=settings.epochs,
        shuffle=False,  # the dataset shuffles itself, seeded
        verbose=verbose,
    )
    seconds = time.perf_counter() - started
    with atomic_path(output) as temp:
        backbone.save_weights(temp)
    result = {
        "source": settings.source,
        "classes": list(source.class_names),
        "epochs": settings.epochs,
        "seconds": round(seconds, 2),
        "weights_file": str(output),
    }
    if validation is not None:
        _, accuracy = model.evaluate(make_dataset(validation, settings.batch_size), verbose=0)
        result["val_accuracy"] = round(float(accuracy), 6)
    return result
