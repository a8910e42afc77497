"""Imbalanced data: class-balanced sampling and focal loss (besides `class_weight: balanced`)."""

import json

import keras
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits

from kerastl.config import LossConfig, load_config
from kerastl.data.pipeline import EpochOrder, epoch_dataset
from kerastl.data.sources import from_arrays
from kerastl.training.phases import compile_classifier
from tests.conftest import small_cnn_overrides
from tests.test_model import TINY_MODEL


def test_balanced_sampling_draws_every_class_equally_and_the_same_each_time():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    source = from_arrays(np.arange(100, dtype=np.uint8).reshape(100, 1, 1, 1), labels, class_names=["a", "b", "c"])

    def drawn(seed):
        batches = epoch_dataset(source, 50, EpochOrder(0, 30, seed, balanced=True))
        return np.concatenate([images.numpy().ravel() for images, _ in batches])

    first = drawn(seed=1)
    assert len(first) == 30 * 100
    shares = np.bincount(labels[first], minlength=3) / len(first)
    np.testing.assert_allclose(shares, 1 / 3, atol=0.03)
    np.testing.assert_array_equal(first, drawn(seed=1))  # seeded: a resumed run draws the same images
    assert not np.array_equal(first, drawn(seed=2))


def test_focal_loss_is_what_the_model_compiles_with():
    from kerastl.models.classifier import build_model

    model = build_model(TINY_MODEL, 3, (8, 8, 1))
    compile_classifier(model, keras.optimizers.Adam(), loss_cfg=LossConfig(kind="focal", focal_gamma=3.0))
    assert isinstance(model.loss, keras.losses.CategoricalFocalCrossentropy) and model.loss.gamma == 3.0
    compile_classifier(model, keras.optimizers.Adam())
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)


def write_rare_digit_data(folder) -> None:
    """`train.csv`: digits 0 and 1 with 140 images each, digit 2 with 8; `test.csv`: 35 of each (also used by
    scripts/imbalance.py)."""
    digits = load_digits()
    images, labels = (digits.images * 255 / 16).astype(np.uint8), digits.target
    rng = np.random.default_rng(0)
    rows = {"train": [], "test": []}
    for digit, count in ((0, 140), (1, 140), (2, 8)):
        members = rng.permutation(np.flatnonzero(labels == digit))
        rows["train"] += list(members[:count])
        rows["test"] += list(members[140:175])
    for name, picked in rows.items():
        frame = pd.DataFrame(images[picked].reshape(len(picked), -1))
        frame.insert(0, "label", labels[picked])
        frame.to_csv(folder / f"{name}.csv", index=False)


def rare_digit_overrides(folder, *extra: str) -> list[str]:
    """The small CNN on `write_rare_digit_data`'s files, from scratch: 1 head epoch, 6 of the whole network."""
    return small_cnn_overrides(
        f"csv:{folder / 'train.csv'}", f"data.test=csv:{folder / 'test.csv'}", "data.split.validation=0.2",
        "phases.1.epochs=6", "results.keep=last", "results.evaluation=true", *extra,
    )


def test_balanced_sampling_raises_the_recall_of_a_rare_class(tmp_path, small_cnn_backbone):
    write_rare_digit_data(tmp_path)
    overrides = rare_digit_overrides(tmp_path, "seed=0")
    from kerastl.training.trainer import train

    recall = {}
    for name, extra in (("plain", []), ("balanced", ["data.sampling=balanced"])):
        run = train(load_config(None, overrides + extra), output_dir=tmp_path / name, verbose=0)
        recall[name] = json.loads((run.run_dir / "evaluation" / "metrics.json").read_text())["per_class"]["2"]["recall"]
    print(f"recall of the rare class: {recall}")
    assert recall["balanced"] >= recall["plain"] + 0.2


def test_sampling_and_class_weight_are_single_label_options():
    from kerastl.errors import ConfigError

    with pytest.raises(ConfigError, match="'data.sampling' works for single-label data only"):
        load_config(None, ["data.multi_label=true", "data.sampling=balanced"])
