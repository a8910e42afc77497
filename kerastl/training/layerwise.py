"""Keras optimizers with per-variable learning-rate multipliers (discriminative, layer-wise rates).

Each `Layerwise<Name>` is the Keras optimizer `<Name>` whose `update_step` multiplies the learning
rate by the multiplier of the variable it updates (1.0 for variables not listed), so schedules,
EMA, clipping and saving all stay Keras' own. They are registered under the `kerastl` package so a
compiled `model.keras` reloads.

Example:
    >>> optimizer = build_optimizer(OPTIMIZERS.get("adamw"), 1e-3, lr_multipliers={"block_16_project/kernel": 0.7})
"""

from __future__ import annotations

from typing import Optional

import keras

from kerastl.training.optimizers import OPTIMIZERS, OptimizerSpec


def _make_layerwise(base: type) -> type:
    class Layerwise(base):
        def __init__(self, *args, lr_multipliers: dict | None = None, **kwargs):
            super().__init__(*args, **kwargs)
            self.lr_multipliers = dict(lr_multipliers or {})
            self._multiplier_by_index: list[float] = []

        def build(self, variables):
            super().build(variables)
            self._multiplier_by_index = [float(self.lr_multipliers.get(v.path, 1.0)) for v in variables]

        def update_step(self, gradient, variable, learning_rate):
            multiplier = self._multiplier_by_index[self._get_variable_index(variable)]
            return super().update_step(gradient, variable, learning_rate * multiplier if multiplier != 1.0 else learning_rate)

        def get_config(self):
            return {**super().get_config(), "lr_multipliers": self.lr_multipliers}

    Layerwise.__name__ = Layerwise.__qualname__ = f"Layerwise{base.__name__}"
    Layerwise.__doc__ = f"`keras.optimizers.{base.__name__}` with per-variable learning-rate multipliers (by variable path)."
    return keras.saving.register_keras_serializable(package="kerastl")(Layerwise)


_LAYERWISE = {spec.keras_class: _make_layerwise(getattr(keras.optimizers, spec.keras_class)) for spec in OPTIMIZERS.values()}


def layerwise(keras_class: str) -> type:
    """The layer-wise variant of the Keras optimizer class `keras_class` (e.g. "Adam")."""
    return _LAYERWISE[keras_class]


def build_optimizer(spec: OptimizerSpec, learning_rate, lr_multipliers: Optional[dict] = None, ema: Optional[float] = None):
    """The optimizer `spec` names at `learning_rate` (a float or a schedule), with kerastl's defaults, weight EMA
    at `ema`, and layer-wise with `lr_multipliers`."""
    arguments = dict(spec.defaults)
    if ema is not None:
        arguments.update(use_ema=True, ema_momentum=ema)
    if lr_multipliers:
        return layerwise(spec.keras_class)(learning_rate=learning_rate, lr_multipliers=lr_multipliers, **arguments)
    return getattr(keras.optimizers, spec.keras_class)(learning_rate=learning_rate, **arguments)
