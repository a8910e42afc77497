"""Per-phase policies: which backbone layers train, BatchNorm's mode, and the optimizer with its
learning-rate schedule, layer-wise rates and weight EMA.

Example:
    >>> set_trainable(model, PhaseConfig(name="finetune", unfreeze="blocks:2"))   # BatchNorm stays frozen
    >>> optimizer = make_optimizer(PhaseConfig(name="head", schedule="cosine", warmup_epochs=1), steps_per_epoch=50)
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np

from kerastl.config import LossConfig, PhaseConfig
from kerastl.errors import ConfigError, KerastlError
from kerastl.models.backbone_layers import backbone_units
from kerastl.models.backbones import BACKBONE_LAYER_NAME, BackboneSpec, get_backbone


@dataclass(frozen=True)
class Block:
    """One of the backbone's own blocks (stages): its name and the index of its first layer."""

    name: str
    start: int


def backbone_spec(model) -> BackboneSpec:
    """The registered spec of a kerastl model's backbone (from the facts the model carries)."""
    from kerastl.models.classifier import model_facts

    return get_backbone(model_facts(model)["backbone"])


def backbone_blocks(layers: list, spec: BackboneSpec) -> list[Block]:
    """The blocks of `layers` in order, found with `spec.blocks`; layers after a block's last match stay in it.

    Example:
        >>> [b.name for b in backbone_blocks(model.get_layer("backbone").layers, get_backbone("vgg16"))]
        ['block1', 'block2', 'block3', 'block4', 'block5']
    """
    blocks: list[Block] = []
    for index, layer in enumerate(layers):
        match = re.search(spec.blocks, layer.name)
        if match and (not blocks or blocks[-1].name != match.group(1)):
            blocks.append(Block(match.group(1), index))
    return blocks


def set_trainable(model, phase: PhaseConfig) -> list[str]:
    """Freeze the backbone, then unfreeze the scope `phase.unfreeze` names; BatchNorm layers in the
    scope train only with `bn: train` (otherwise they stay in inference mode, statistics unchanged).

    Returns:
        Names of the backbone layers with weights that train in this phase.

    Raises:
        ConfigError: `from:LAYER` names no layer, or `blocks:K` asks for more blocks than the backbone has.
    """
    import keras

    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    kind, rank = phase.scope
    if kind == "lora":
        enable_lora(backbone, rank, phase.name)
        return [layer.name for layer in backbone._flatten_layers(include_self=False) if getattr(layer, "lora_enabled", False)]
    layers = backbone_units(backbone)  # a keras-hub transformer encoder: its transformer layers
    start = first_unfrozen(layers, backbone_spec(model), phase)
    backbone.trainable = start < len(layers)  # Keras sets every sublayer; then each unit on its own
    for index, layer in enumerate(layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = index >= start and (not is_bn or phase.bn == "train")
    return [layer.name for layer in layers if layer.trainable and layer.weights]


def enable_lora(backbone, rank: int, phase_name: str = "lora") -> None:
    """`unfreeze: lora:R`: keras-hub's `enable_lora(rank=R)` (low-rank adapters on the attention's query and
    value projections; every other backbone weight frozen). Keras saves the adapters merged into the
    kernels, so `model.keras` and every export hold the merged weights.

    Raises:
        ConfigError: the backbone is not a keras-hub transformer, or LoRA is on at another rank.
    """
    if not hasattr(backbone, "enable_lora"):
        raise ConfigError(f"Phase {phase_name!r}: unfreeze 'lora:{rank}' needs a keras-hub backbone (model.backbone: hub:...).")
    current = getattr(backbone, "_lora_rank", None)
    if current is None:
        backbone.enable_lora(rank)
        if not getattr(backbone, "_lora_enabled_layers", None):
            raise ConfigError(f"Phase {phase_name!r}: unfreeze 'lora:{rank}': backbone has no attention layers to adapt.")
    elif current != rank:
        raise ConfigError(f"Phase {phase_name!r}: unfreeze 'lora:{rank}', but LoRA is already on at rank {current}.")
    backbone.trainable = True  # then only the adapters (and the biases of their layers) train
    adapted = [layer for layer in backbone._flatten_layers(include_self=False) if getattr(layer, "lora_enabled", False)]
    for layer in backbone._flatten_layers(include_self=False):
        layer.trainable = layer in adapted
    for layer in adapted:
        layer._kernel.trainable = False


def restart_lora(backbone, seed: int) -> None:
    """After weights were loaded into a LoRA model, Keras has merged the adapters into the kernels and set
    both adapter matrices to zero, where no gradient reaches them: draw A again (B stays zero, so the
    model computes the same) and training continues with a fresh adapter on the merged weights."""
    import keras

    for layer in backbone._flatten_layers(include_self=False):
        if getattr(layer, "lora_enabled", False) and not keras.ops.any(layer.lora_kernel_a.value != 0):
            layer.lora_kernel_a.assign(keras.initializers.HeUniform(seed=seed)(layer.lora_kernel_a.shape))


def first_unfrozen(layers: list, spec: BackboneSpec, phase: PhaseConfig) -> int:
    """Index of the first backbone layer `phase` trains (len(layers) for a head-only phase)."""
    kind, argument = phase.scope
    if kind == "head":
        return len(layers)
    if kind == "all":
        return 0
    if kind == "top":
        return max(0, len(layers) - argument)
    if kind == "blocks":
        blocks = backbone_blocks(layers, spec)
        if argument > len(blocks):
            raise ConfigError(
                f"Phase {phase.name!r}: unfreeze 'blocks:{argument}' but backbone {spec.name!r} has {len(blocks)} blocks "
                f"({', '.join(b.name for b in blocks)})."
            )
        return blocks[-argument].start if argument else len(layers)
    names = [layer.name for layer in layers]
    if argument not in names:
        close = difflib.get_close_matches(argument, names, n=3)
        hint = f" Close names: {', '.join(close)}." if close else ""
        raise ConfigError(f"Phase {phase.name!r}: unfreeze 'from:{argument}' names no layer of the backbone.{hint}")
    return names.index(argument)


def lr_multipliers(model, decay: float) -> dict[str, float]:
    """Learning-rate multiplier per trainable backbone variable path: 1 in the top block, times
    `decay` for each block deeper (layers before the first block count one block deeper still; in a
    transformer, each transformer layer is a block and the embeddings are below the first)."""
    layers = backbone_units(model.get_layer(BACKBONE_LAYER_NAME))
    blocks = backbone_blocks(layers, backbone_spec(model))
    starts = [block.start for block in blocks]
    multipliers = {}
    for index, layer in enumerate(layers):
        depth = len(starts) - int(np.searchsorted(starts, index, side="right"))  # 0 = top block
        for variable in layer.trainable_weights:
            multipliers[variable.path] = decay**depth
    return multipliers


def compile_classifier(
    model, optimizer, label_smoothing: float = 0.0, jit_compile="auto", loss_cfg: Optional[LossConfig] = None
) -> None:
    """Compile for one-hot labels: categorical cross-entropy (optionally smoothed; focal with
    `loss_cfg.kind: focal`) and an "accuracy" metric.

    A multi-label (sigmoid) head gets binary (focal) cross-entropy and binary accuracy per label at 0.5.
    """
    from kerastl.models.classifier import label_kind

    kind = label_kind(model)
    loss_cfg = loss_cfg or LossConfig()
    loss = kind.loss(loss_cfg.kind, loss_cfg.focal_gamma, label_smoothing)
    model.compile(optimizer=optimizer, loss=loss, metrics=[kind.accuracy(one_hot=True)], jit_compile=jit_compile)


def make_optimizer(phase: PhaseConfig, steps_per_epoch: int, multipliers: dict[str, float] | None = None):
    """The phase's Keras optimizer: warmup and cosine decay from `keras.optimizers.schedules.CosineDecay`,
    weight EMA from the optimizer's own `use_ema`, layer-wise rates from `multipliers` (variable path -> factor).
    """
    import keras

    from kerastl.training.layerwise import build_optimizer
    from kerastl.training.optimizers import OPTIMIZERS

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
    return build_optimizer(OPTIMIZERS.get(phase.optimizer), learning_rate, multipliers, phase.ema)


def batchnorm_statistics(model) -> dict[str, list]:
    """Moving mean and variance of every BatchNormalization layer in the backbone, as NumPy arrays."""
    import keras

    backbone = model.get_layer(BACKBONE_LAYER_NAME)
    return {
        layer.name: [np.array(layer.moving_mean), np.array(layer.moving_variance)]
        for layer in backbone.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }


def check_batchnorm_policy(phase: PhaseConfig, before: dict[str, list], after: dict[str, list], trained: list[str]) -> dict:
    """Verify after fit that BatchNorm did what `phase.bn` says; returns a summary for metrics.json.

    Raises:
        KerastlError: statistics moved under `bn: frozen`, or none moved under `bn: train` though
            BatchNorm layers were in the trainable scope.
    """
    changed = [name for name in before if any(not np.array_equal(b, a) for b, a in zip(before[name], after[name]))]
    in_scope = [name for name in before if name in trained]
    if phase.bn == "frozen" and changed:
        raise KerastlError(f"Phase {phase.name!r} has bn: frozen but BatchNorm statistics changed in {changed[:3]}.")
    if phase.bn == "train" and in_scope and not changed:
        raise KerastlError(f"Phase {phase.name!r} has bn: train but no BatchNorm statistics changed ({len(in_scope)} layers in scope).")
    return {"policy": phase.bn, "layers_in_scope": len(in_scope), "layers_changed": len(changed)}
