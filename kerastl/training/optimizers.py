"""Keras optimizers with per-variable learning-rate multipliers (discriminative, layer-wise rates).

Each `Layerwise<Name>` is the Keras optimizer `<Name>` whose `update_step` multiplies the learning
rate by the multiplier of the variable it updates (1.0 for variables not listed), so schedules,
EMA, clipping and saving all stay Keras' own. They are registered under the `kerastl` package so a
compiled `model.keras` reloads.

The optimizers a phase can name (`phases[].optimizer`) are the entries of `OPTIMIZERS`; the layer-wise
classes live in `kerastl.training.layerwise` (this module does not import Keras, so a config is checked
without it).

Example:
    >>> OPTIMIZERS.get("adamw").defaults
    {'weight_decay': 0.0001}
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kerastl.registry import Registry


@dataclass(frozen=True)
class OptimizerSpec:
    """A Keras optimizer a phase can choose: its class name in `keras.optimizers` and kerastl's defaults."""

    name: str
    keras_class: str
    defaults: dict = field(default_factory=dict)


OPTIMIZERS: Registry[OptimizerSpec] = Registry("optimizer")
for _spec in (
    OptimizerSpec("adam", "Adam"),
    OptimizerSpec("adamw", "AdamW", {"weight_decay": 1e-4}),
    OptimizerSpec("sgd", "SGD", {"momentum": 0.9}),
    OptimizerSpec("rmsprop", "RMSprop"),
):
    OPTIMIZERS.register(_spec.name, _spec)
