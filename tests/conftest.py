"""Shared fixtures: tiny offline configs and one small trained run reused by several tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

from kerastl.config import load_config  # noqa: E402

# Small enough for a 2-core CPU: 8x8 digits resized to 32 px, MobileNetV2 at width 0.35.
TINY = [
    "data.source=builtin:digits",
    "data.classes=[0, 1, 2]",
    "data.batch_size=32",
    "model.backbone=mobilenet_v2",
    "model.weights=none",
    "model.input_size=32",
    "model.backbone_options={alpha: 0.35}",
    "augment.preset=none",
    "phases.0.epochs=1",
    "phases.1.epochs=1",
    "phases.1.learning_rate=0.01",
    "phases.1.unfreeze=20",
]


@pytest.fixture
def tiny_config():
    return load_config(None, TINY)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A run directory trained once through the Python API (head + finetune, 1 epoch each)."""
    from kerastl.training.trainer import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return train(load_config(None, TINY), output_dir=run_dir, verbose=0)
