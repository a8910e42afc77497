"""Per-phase policies: which backbone layers train, and the optimizer with its learning-rate schedule.

Example:
    >>> set_trainable(model, PhaseConfig(name="finetune", unfreeze=30))   # top 30 layers, BatchNorm stays frozen
    >>> optimizer = make_optimizer(PhaseConfig(name="head", schedule="cosine", warmup_epochs=1), steps_per_epoch=50)
"""

from __future__ import annotations

import difflib

from kerastl.backbones import BACKBONE_LAYER_NAME
from kerastl.config import PhaseConfig
from kerastl.errors import ConfigError
from kerastl.registry import Registry

# name -> (keras.optimizers class, its arguments besides the learning rate)
OPTIMIZERS: Registry[tuple[str, dict]] = Registry("optimizer")
OPTIMIZERS.register("adam", ("Adam", {}))
OPTIMIZERS.register("adamw", ("AdamW", {"weight_decay": 1e-4}))
OPTIMIZERS.register("sgd", ("SGD", {"momentum": 0.9}))
OPTIMIZERS.register("rmsprop", ("RMSprop", {}))


def set_trainable(model, phase: PhaseConfig) -> list[str]:
    """Freeze the backbone, then unfreeze what `phase` asks for; BatchNorm layers always stay frozen.

    Returns:
        Names of the backbone layers that train in this phase.

    Raises:
        ConfigError: `unfreeze_from` names no layer of the backbone.
    """
    import keras

    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    layers = backbone.layers
    start = _first_unfrozen(layers, phase)
    backbone.trainable = start < len(layers)
    for index, layer in enumerate(layers):
        layer.trainable = index >= start and not isinstance(layer, keras.layers.BatchNormalization)
    return [layer.name for layer in layers if layer.trainable and layer.weights]


def _first_unfrozen(layers: list, phase: PhaseConfig) -> int:
    if phase.unfreeze_from is not None:
        names = [layer.name for layer in layers]
        if phase.unfreeze_from not in names:
            close = difflib.get_close_matches(phase.unfreeze_from, names, n=3)
            hint = f" Close names: {', '.join(close)}." if close else ""
            raise ConfigError(f"Phase {phase.name!r}: unfreeze_from {phase.unfreeze_from!r} is no layer of the backbone.{hint}")
        return names.index(phase.unfreeze_from)
    if phase.unfreeze == "all":
        return 0
    if phase.unfreeze is None:
        return len(layers)
    return max(0, len(layers) - phase.unfreeze)


def compile_classifier(model, optimizer) -> None:
    """Compile for one-hot labels: categorical cross-entropy loss and an "accuracy" metric."""
    import keras

    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def make_optimizer(phase: PhaseConfig, steps_per_epoch: int):
    """The phase's Keras optimizer; warmup and cosine decay come from `keras.optimizers.schedules.CosineDecay`."""
    import keras

    learning_rate = phase.learning_rate
    warmup_steps = phase.warmup_epochs * steps_per_epoch
    if phase.schedule == "cosine" or warmup_steps:
        total = max(1, phase.epochs * steps_per_epoch - warmup_steps)
        learning_rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0 if warmup_steps else phase.learning_rate,
            decay_steps=total,
            alpha=0.0 if phase.schedule == "cosine" else 1.0,
            warmup_target=phase.learning_rate if warmup_steps else None,
            warmup_steps=warmup_steps,
        )
    class_name, arguments = OPTIMIZERS.get(phase.optimizer)
    return getattr(keras.optimizers, class_name)(learning_rate=learning_rate, **arguments)
