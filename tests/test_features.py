"""Cached backbone features for frozen phases, XLA and mixed precision options."""

from dataclasses import replace

import keras
import numpy as np
import pytest

from kerastl.config import load_config
from kerastl.training.distribute import ONE_DEVICE
from kerastl.training.features import can_cache
from kerastl.models.classifier import ClassifierSpec, build_model
from tests.conftest import TINY
from tests.test_model import TINY_MODEL

HEAD_ONLY = [o for o in TINY if not o.startswith("phases")] + [
    "phases=[{name: head, epochs: 3, learning_rate: 0.01}]",
    "model.head.dropout=0.0",
]


def test_cached_head_phase_matches_the_uncached_one(tmp_path):
    from kerastl.training.trainer import train

    cached = train(load_config(None, HEAD_ONLY), output_dir=tmp_path / "cached", verbose=0)
    plain = train(load_config(None, HEAD_ONLY + ["compute.cache_features=false"]), output_dir=tmp_path / "plain", verbose=0)
    assert cached.metrics["phases"]["head"]["cached_features"] is True
    assert plain.metrics["phases"]["head"]["cached_features"] is False
    for split in ("val_accuracy", "test_accuracy"):
        assert abs(cached.metrics[split] - plain.metrics[split]) <= 0.01
    np.testing.assert_allclose(
        cached.model.get_layer("logits").kernel.numpy(), plain.model.get_layer("logits").kernel.numpy(), atol=1e-3
    )
    assert (tmp_path / "cached" / "model.keras").is_file()  # the full model, head inside


@pytest.mark.slow  # 16 s
def test_augmented_copies_are_random_views_that_epochs_cycle_through(tmp_path):
    from kerastl.training.distribute import ONE_DEVICE
    from kerastl.training.features import can_cache, extract_features, training_features
    from kerastl.training.trainer import train

    overrides = ["augment.preset=light", "compute.augmented_copies=2"]
    cfg = load_config(None, HEAD_ONLY + overrides)
    model = build_model(cfg.model, 3, (8, 8, 1), cfg.augment, cfg.seed)
    images = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 1), dtype=np.uint8)
    plain = extract_features(model, images, batch_size=16, verbose=0)
    copies = training_features(model, cfg, images, verbose=0)
    assert copies.shape == (80, plain.shape[1])  # two copies, one after the other
    first, second = copies[:40], copies[40:]
    # untrained weights give tiny features: compare relative to their size
    assert not np.allclose(first, plain, rtol=1e-2, atol=0) and not np.allclose(first, second, rtol=1e-2, atol=0)
    np.testing.assert_allclose(training_features(model, cfg, images, verbose=0), copies, rtol=1e-4)  # seeded

    result = train(cfg, output_dir=tmp_path / "run", verbose=0)
    head = result.metrics["phases"]["head"]
    assert head["cached_features"] is True and head["augmented_copies"] == 2
    assert (tmp_path / "run" / "model.keras").is_file()
    without = load_config(None, HEAD_ONLY + ["augment.preset=light"])
    assert not can_cache(without, without.phases[0], ONE_DEVICE)  # augmentation, no copies: uncached


def test_each_epoch_draws_every_image_once_from_its_own_copy():
    from kerastl.data.pipeline import EpochOrder, epoch_dataset
    from kerastl.data.sources import from_arrays

    count = 10
    versions = np.repeat(np.arange(3 * count, dtype=np.uint8), 4).reshape(3 * count, 2, 2, 1)  # row r holds r
    source = from_arrays(versions[:count], np.arange(count) % 2)
    source = type(source)(versions, source.labels, source.class_names, source.origin)
    batches = epoch_dataset(source, 4, EpochOrder(0, 4, copies=3))
    rows = np.concatenate([images[:, 0, 0, 0] for images, _ in batches])
    per_epoch = rows.reshape(4, count)
    for epoch, drawn in enumerate(per_epoch):
        assert sorted(drawn) == list(range((epoch % 3) * count, (epoch % 3 + 1) * count))
    labels = np.concatenate([labels.numpy().argmax(1) for _, labels in batches])
    np.testing.assert_array_equal(labels, rows % count % 2)  # each version keeps its image's label


def test_every_pipeline_a_run_feeds_a_model_runs_without_the_autotuning_model():
    """Deleting an iterator waits for tf.data's autotuning thread to wake (seconds after a long fit here):
    training, validation, prediction and augmented pipelines all leave it off, and still deliver their batches."""
    from kerastl.config import AugmentConfig
    from kerastl.data.pipeline import EpochOrder, epoch_dataset, image_batches, make_dataset
    from kerastl.data.sources import from_arrays

    source = from_arrays(np.arange(40, dtype=np.uint8).reshape(10, 2, 2, 1), np.arange(10) % 2)
    unlabelled = type(source)(source.images, None, source.class_names, source.origin)
    pipelines = {  # name: (dataset, images it yields)
        "training": (epoch_dataset(source, 4, EpochOrder(0, 2, seed=1)), 20),
        "augmented training": (epoch_dataset(source, 4, EpochOrder(0, 2, seed=1), AugmentConfig(mixup=0.2)), 20),
        "validation": (make_dataset(source, 4), 10),
        "unlabelled": (make_dataset(unlabelled, 4), 10),
        "prediction": (image_batches(source.images, 4), 12),  # the last batch filled up
    }
    for name, (dataset, count) in pipelines.items():
        assert dataset.options().autotune.enabled is False, name
        assert sum(len(batch[0] if isinstance(batch, tuple) else batch) for batch in dataset) == count, name


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ([], True),
        (["augment.preset=light"], False),
        (["augment.preset=light", "compute.augmented_copies=3"], True),
        (["augment.mixup=0.2", "compute.augmented_copies=3"], False),
        (["augment.mixup=0.2"], False),
        (["compute.cache_features=false"], False),
    ],
)
def test_features_are_cached_only_when_nothing_random_sits_before_a_frozen_backbone(overrides, expected):
    cfg = load_config(None, TINY + overrides)
    assert can_cache(cfg, cfg.phases[0], ONE_DEVICE) is expected
    assert can_cache(cfg, cfg.phases[1], ONE_DEVICE) is False  # unfrozen backbone
    assert can_cache(cfg, cfg.phases[0], replace(ONE_DEVICE, processes=2)) is False  # each process sees a shard


def test_mixed_precision_keeps_the_output_in_float32():
    model = ClassifierSpec(TINY_MODEL, ("a", "b", "c"), (8, 8, 1), precision="mixed_bfloat16").build()
    assert model.get_layer("backbone").layers[2].compute_dtype == "bfloat16"
    assert model.get_layer("probabilities").compute_dtype == "float32" and model.output.dtype == "float32"
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    loss, accuracy = model.train_on_batch(np.zeros((4, 8, 8, 1), "uint8"), np.eye(3)[[0, 1, 2, 0]])  # compile's metrics="auto"
    assert np.isfinite(loss) and 0 <= accuracy <= 1


@pytest.mark.slow  # 12 s: a whole run to read one compile flag
def test_jit_compile_option_reaches_keras(tmp_path):
    from kerastl.training.trainer import train

    result = train(load_config(None, TINY + ["compute.jit_compile=false", "phases.1.epochs=0"]), output_dir=tmp_path / "r", verbose=0)
    assert result.model.jit_compile is False


MIRRORED = """
import json, sys
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from kerastl.config import load_config
from kerastl.training.trainer import train
result = train(load_config(None, json.loads(sys.argv[2])), output_dir=sys.argv[1], verbose=0)
copies = [[np.array(v) for v in variable.value.values] for variable in result.model.trainable_variables]
print(json.dumps({"replicas": result.metrics["replicas"], "copies": len(copies[0]), "test_accuracy": result.metrics["test_accuracy"],
                  "in_sync": all(np.array_equal(c[0], other) for c in copies for other in c[1:])}))
"""


@pytest.mark.slow  # 45 s: a second process with two logical devices; distribute.py is also checked by test_distribute (slow)
def test_mirrored_strategy_trains_on_two_devices_with_weights_in_sync(tmp_path):
    import json
    import subprocess
    import sys

    overrides = TINY + ["compute.distribute=mirrored", "data.batch_size=16"]
    done = subprocess.run([sys.executable, "-c", MIRRORED, str(tmp_path / "run"), json.dumps(overrides)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["copies"] == 2 and result["in_sync"] is True
    assert 0 <= result["test_accuracy"] <= 1 and (tmp_path / "run" / "model.keras").is_file()
