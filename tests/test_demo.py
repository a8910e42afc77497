"""The offline transfer demo: builtin:photos, VGG16 weights converted from HED, `kerastl probe`, and
(slow) the default recipe on them against the probe and training from scratch."""

import numpy as np
import pytest

from kerastl.models.backbones import create_backbone
from kerastl.data.sources import read_source
from kerastl.models.hed import hed_vgg16_kernels, hed_weights_file
from kerastl.models.backbones import get_backbone
from tests.test_cli import run, sets
from tests.conftest import TINY


@pytest.fixture(scope="module")
def hed_vgg16(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "vgg16_hed.weights.h5"
    result = run("weights", "hed-vgg16", "--output", path)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(path)
    return path


def test_builtin_photos_are_twelve_photographs_cut_into_patches():
    photos = read_source("builtin:photos")
    assert photos.images.shape == (576, 64, 64, 3) and photos.images.dtype == np.uint8
    assert photos.class_names[:3] == ("astronaut", "brick", "cat") and len(photos.class_names) == 12
    assert photos.class_counts().tolist() == [48] * 12
    flat = photos.images.reshape(len(photos.images), -1)
    assert len(np.unique(flat, axis=0)) == len(flat)  # no patch twice: the grid does not overlap


def test_hed_weights_convert_into_a_vgg16_that_loads_at_any_size(hed_vgg16):
    kernels = hed_vgg16_kernels(hed_weights_file())
    backbone = create_backbone(get_backbone("vgg16"), str(hed_vgg16), 48)
    convolutions = [layer for layer in backbone.layers if layer.weights]
    assert len(convolutions) == len(kernels) == 13
    for layer, (kernel, bias) in zip(convolutions, kernels):
        np.testing.assert_array_equal(layer.kernel.numpy(), kernel)
        np.testing.assert_array_equal(layer.bias.numpy(), bias)
    assert convolutions[-1].name == "block5_conv3"


def test_weights_command_refuses_a_wrong_file_name(tmp_path):
    result = run("weights", "hed-vgg16", "--output", tmp_path / "vgg.h5")
    assert result.exit_code == 2
    assert "must end with .weights.h5" in result.output and not (tmp_path / "vgg.h5").exists()


def test_probe_command_prints_both_baselines_for_both_splits():
    result = run("probe", *sets(TINY), "--quiet")
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.strip().splitlines()[1:]}
    assert set(rows) == {"linear_probe", "knn"}
    assert all(0 <= float(value) <= 1 for values in rows.values() for value in values) and len(rows["knn"]) == 2


def test_probe_refuses_pretrain_weights():
    result = run("probe", *sets(TINY), "--set", "model.weights=pretrain", "--set", "pretrain={}")
    assert result.exit_code == 2 and "kerastl pretrain" in result.output


@pytest.mark.slow
def test_default_recipe_reaches_the_probe_and_beats_training_from_scratch(hed_vgg16, tmp_path):
    """The README's claim on the demo task: with real pretrained features the default recipe (head from
    the probe, then fine-tune) is within 2 points of the linear probe and far above the same network
    trained from random weights."""
    from kerastl.config import load_config
    from kerastl.training.trainer import train

    task = ["data.source=builtin:photos", "data.split.validation=0.25", "data.split.test=0.25", "model.backbone=vgg16",
            "model.input_size=64", "seed=1"]
    pretrained = train(load_config(None, [*task, f"model.weights={hed_vgg16}"]), tmp_path / "pretrained", verbose=0).metrics
    scratch = train(load_config(None, [*task, "model.weights=none", "model.head.init=random"]), tmp_path / "scratch", verbose=0).metrics
    probe = pretrained["baselines"]["linear_probe"]["test_accuracy"]
    assert pretrained["test_accuracy"] >= probe - 0.02
    assert pretrained["test_accuracy"] >= scratch["test_accuracy"] + 0.15
    assert not pretrained["health"]["collapsed"] and pretrained["warnings"] == []
