import numpy as np
import pytest

from kerastl.config import AugmentConfig, load_config
from kerastl.data.pipeline import EpochOrder, epoch_dataset, load_splits, make_dataset
from kerastl.data.splitting import stratified_split
from kerastl.data.sources import from_arrays, read_source
from kerastl.errors import DataError


def test_split_is_stratified_seeded_and_disjoint():
    cfg = load_config(None, ["data.split.validation=0.2", "data.split.test=0.1"])
    first, again = load_splits(cfg.data, seed=1), load_splits(cfg.data, seed=1)
    other = load_splits(cfg.data, seed=2)
    np.testing.assert_array_equal(first.test.images, again.test.images)
    assert not np.array_equal(first.test.images, other.test.images)
    total = len(first.train) + len(first.validation) + len(first.test)
    assert total == 1797 and abs(len(first.validation) - 0.2 * total) <= 10
    full = np.bincount(read_source("builtin:digits").labels) / 1797
    val = np.bincount(first.validation.labels) / len(first.validation)
    assert np.abs(full - val).max() < 0.02


def test_the_stratified_split_is_scikit_learns_train_test_split_one_fraction_after_the_other():
    """The split runs through `kerastl.offload` (in a command's child process), and stays the one runs had."""
    from sklearn.model_selection import train_test_split

    source = read_source("builtin:digits")
    train, parts = stratified_split(source, {"validation": 0.2, "test": 0.1}, seed=7)
    remaining, validation = train_test_split(np.arange(1797), test_size=0.2, random_state=7, stratify=source.labels)
    remaining, test = train_test_split(remaining, test_size=0.1 / 0.8, random_state=7, stratify=source.labels[remaining])
    for part, indices in ((train, remaining), (parts["validation"], validation), (parts["test"], test)):
        np.testing.assert_array_equal(part.images, source.images[np.sort(indices)])
        np.testing.assert_array_equal(part.labels, source.labels[np.sort(indices)])


def test_separate_split_files_share_the_training_classes(tmp_path):
    import pandas as pd

    def table(labels):
        frame = pd.DataFrame(np.zeros((len(labels), 16), "uint8"), columns=[f"p{i}" for i in range(16)])
        frame.insert(0, "label", labels)
        return frame

    table(["b", "a", "c"] * 4).to_csv(tmp_path / "train.csv", index=False)
    table(["c", "c"]).to_csv(tmp_path / "val.csv", index=False)
    table(["z"]).to_csv(tmp_path / "test.csv", index=False)
    cfg = load_config(None, [f"data.source=csv:{tmp_path / 'train.csv'}", f"data.validation=csv:{tmp_path / 'val.csv'}",
                             "data.split.test=0"])
    splits = load_splits(cfg.data, seed=0)
    assert len(splits.train) == 12 and splits.test is None
    assert splits.validation.labels.tolist() == [2, 2] and splits.class_names == ("a", "b", "c")
    bad = load_config(None, [f"data.source=csv:{tmp_path / 'train.csv'}", f"data.test=csv:{tmp_path / 'test.csv'}"])
    with pytest.raises(DataError, match=r"test\.csv: label\(s\) 'z' are not classes of the model; expected one of: a, b, c"):
        load_splits(bad.data, seed=0)


def test_single_class_and_too_small_classes_are_errors():
    one = load_config(None, ["data.classes=[3]"])
    with pytest.raises(DataError, match="needs at least 2 classes"):
        load_splits(one.data, seed=0)
    tiny = from_arrays(np.zeros((5, 4, 4), "uint8"), [0, 0, 0, 1, 1])
    with pytest.raises(DataError, match=r"class '1' has 2 image\(s\), too few .* it needs at least 3"):
        stratified_split(tiny, {"validation": 0.2, "test": 0.2}, seed=0)


def test_batches_stay_uint8_at_native_size_with_one_hot_labels():
    src = read_source("builtin:digits")
    images, labels = next(iter(make_dataset(src, batch_size=16, shuffle=True, seed=0)))
    assert images.dtype.name == "uint8" and tuple(images.shape) == (16, 8, 8, 1)
    assert tuple(labels.shape) == (16, 10) and np.allclose(labels.numpy().sum(axis=1), 1)
    epoch = np.concatenate([x.numpy() for x, _ in make_dataset(src, batch_size=500, shuffle=True, seed=0)])
    assert len(epoch) == 1797 and sorted(map(bytes, epoch)) == sorted(map(bytes, src.images))


def test_unlabelled_source_gives_image_batches():
    src = from_arrays(np.zeros((3, 4, 4), "uint8"))
    assert tuple(next(iter(make_dataset(src, batch_size=2))).shape) == (2, 4, 4, 1)


@pytest.mark.parametrize("mix", [{"mixup": 0.4}, {"cutmix": 1.0}])
def test_mixup_and_cutmix_keep_uint8_images_and_mix_labels(mix):
    src = read_source("builtin:digits")
    ds = make_dataset(src, batch_size=64, shuffle=True, seed=0, augment=AugmentConfig(**mix))
    images, labels = next(iter(ds))
    assert images.dtype.name == "uint8"
    labels = labels.numpy()
    assert np.allclose(labels.sum(axis=1), 1, atol=1e-5) and (labels.max(axis=1) < 0.999).any()


def test_epoch_order_depends_only_on_seed_and_epoch_number():
    src = read_source("builtin:digits")

    def batches(start, stop):
        ds = epoch_dataset(src, 500, EpochOrder(start, stop, seed=7))
        return [labels.numpy().argmax(1).tolist() for _, labels in ds]

    from_zero, from_two = batches(0, 4), batches(2, 4)
    per_epoch = 4  # ceil(1797 / 500)
    assert len(from_zero) == 4 * per_epoch and from_zero[2 * per_epoch:] == from_two
    assert from_zero[:per_epoch] != from_zero[per_epoch: 2 * per_epoch]
    images = np.concatenate([x.numpy() for x, _ in epoch_dataset(src, 500, EpochOrder(3, 4, seed=7))])
    assert sorted(map(bytes, images)) == sorted(map(bytes, src.images))
