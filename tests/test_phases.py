"""Fine-tuning policies: backbone blocks, layer-wise learning rates, BatchNorm policy, EMA, label smoothing."""

import keras
import numpy as np
import pytest

from kerastl.models.backbones import create_backbone
from kerastl.config import PhaseConfig
from kerastl.errors import KerastlError
from kerastl.models.classifier import build_model
from kerastl.training.phases import (
    backbone_blocks,
    batchnorm_statistics,
    check_batchnorm_policy,
    compile_classifier,
    lr_multipliers,
    make_optimizer,
    set_trainable,
)
from kerastl.models.backbones import backbone_names, get_backbone
from tests.test_model import TINY_MODEL, digits, fit_one_epoch  # noqa: F401  (digits is a fixture)

TOP_BLOCKS = {
    "mobilenet_v2": ("expanded_conv", "block_16"),
    "mobilenet_v3_small": ("expanded_conv", "expanded_conv_10"),
    "efficientnet_b0": ("block1", "block7"),
    "efficientnet_v2_b0": ("block1", "block6"),
    "resnet50": ("conv1", "conv5"),
    "densenet121": ("conv1", "conv5"),
    "vgg16": ("block1", "block5"),
    "xception": ("block1", "block14"),
    "convnext_tiny": ("stage_0", "stage_3"),
    "alexnet": ("conv1", "conv5"),
}


@pytest.mark.parametrize("name", sorted(TOP_BLOCKS))
def test_every_backbone_has_its_own_blocks_in_order(name):
    spec = get_backbone(name)
    backbone = create_backbone(spec, "none", max(32, spec.min_size))
    blocks = backbone_blocks(backbone.layers, spec)
    assert (blocks[0].name, blocks[-1].name) == TOP_BLOCKS[name]
    assert len({b.name for b in blocks}) == len(blocks) >= 4
    assert [b.start for b in blocks] == sorted(b.start for b in blocks)


def test_every_registered_backbone_has_a_top_block_listed():
    families = {name.rsplit("_b", 1)[0] if "efficientnet" in name else name for name in backbone_names()}
    covered = {name.rsplit("_b", 1)[0] if "efficientnet" in name else name for name in TOP_BLOCKS}
    assert families - covered <= {"mobilenet_v3_large", "resnet50_v2"}  # same block patterns as their siblings


def test_layerwise_decay_moves_the_deeper_block_less_in_one_step_with_equal_gradients():
    model = build_model(TINY_MODEL, 3, (8, 8, 1))
    phase = PhaseConfig(name="finetune", learning_rate=0.01, unfreeze="blocks:2", lr_decay=0.5)
    set_trainable(model, phase)
    backbone = model.get_layer("backbone")
    top, deeper = backbone.get_layer("block_16_project").kernel, backbone.get_layer("block_15_project").kernel
    head = model.get_layer("logits").kernel
    before = {v.path: v.numpy().copy() for v in (top, deeper, head)}
    optimizer = make_optimizer(phase, steps_per_epoch=1, multipliers=lr_multipliers(model, phase.lr_decay))
    variables = model.trainable_variables
    optimizer.apply([keras.ops.ones_like(v) for v in variables], variables)
    step = {v.path: float(np.abs(v.numpy() - before[v.path]).mean()) for v in (top, deeper, head)}
    assert step[top.path] == pytest.approx(0.01, rel=1e-3)  # Adam's first step is lr * sign(gradient)
    assert step[deeper.path] == pytest.approx(0.005, rel=1e-3)
    assert step[head.path] == pytest.approx(0.01, rel=1e-3)


def test_layerwise_optimizer_survives_save_and_load(tmp_path, digits):  # noqa: F811
    model = build_model(TINY_MODEL, 3, digits.image_shape)
    phase = PhaseConfig(name="finetune", unfreeze="blocks:1", lr_decay=0.7)
    set_trainable(model, phase)
    compile_classifier(model, make_optimizer(phase, 4, lr_multipliers(model, 0.7)))
    model.fit(digits.images[:8], keras.utils.to_categorical(digits.labels[:8], 3), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    from kerastl.models.classifier import load_model

    reloaded = load_model(tmp_path / "m.keras")
    assert type(reloaded.optimizer).__name__ == "LayerwiseAdam"
    assert reloaded.optimizer.lr_multipliers == model.optimizer.lr_multipliers


@pytest.mark.parametrize("policy", ["frozen", "train"])
def test_batchnorm_policy_holds_and_is_checked(digits, policy):  # noqa: F811
    model = build_model(TINY_MODEL, 3, digits.image_shape)
    phase = PhaseConfig(name="finetune", learning_rate=0.01, unfreeze="blocks:2", bn=policy)
    trained = set_trainable(model, phase)
    before = batchnorm_statistics(model)
    fit_one_epoch(model, digits, phase)
    after = batchnorm_statistics(model)
    summary = check_batchnorm_policy(phase, before, after, trained)
    in_scope = [name for name in before if name in trained]
    moved = [name for name in before if not np.array_equal(before[name][0], after[name][0])]
    if policy == "frozen":
        assert not in_scope and not moved and summary["layers_changed"] == 0
        with pytest.raises(KerastlError, match="bn: frozen but BatchNorm statistics changed"):
            check_batchnorm_policy(phase, before, {k: [m + 1, v] for k, (m, v) in after.items()}, trained)
    else:
        assert in_scope and set(moved) == set(in_scope) and summary["layers_changed"] == len(in_scope)
        with pytest.raises(KerastlError, match="bn: train but no BatchNorm statistics changed"):
            check_batchnorm_policy(phase, before, before, trained)


def test_ema_keeps_the_weights_near_their_moving_average(digits):  # noqa: F811
    def head_step(ema):
        keras.utils.set_random_seed(0)
        model = build_model(TINY_MODEL, 3, digits.image_shape)
        start = model.get_layer("logits").kernel.numpy().copy()
        fit_one_epoch(model, digits, PhaseConfig(name="head", learning_rate=0.05, ema=ema))
        return float(np.abs(model.get_layer("logits").kernel.numpy() - start).mean())

    plain, averaged = head_step(None), head_step(0.99)
    assert 0 < averaged < plain / 2  # the weights end at the average, which lags the raw weights


def test_label_smoothing_reaches_the_loss(digits):  # noqa: F811
    model = build_model(TINY_MODEL, 3, digits.image_shape)
    labels = keras.utils.to_categorical(digits.labels[:16], 3)
    probabilities = model.predict(digits.images[:16], verbose=0)
    smoothed = labels * 0.7 + 0.1  # label_smoothing 0.3 over 3 classes
    expected = float(np.mean(-(smoothed * np.log(probabilities)).sum(axis=1)))
    compile_classifier(model, "adam", label_smoothing=0.3)
    loss = model.evaluate(digits.images[:16], labels, verbose=0)[0]
    assert loss == pytest.approx(expected, rel=1e-4)
