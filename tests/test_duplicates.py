"""Duplicates and leakage: planted copies are found (exact, re-saved JPEG, mirrored), distinct pictures are not,
every run reports held-out images that duplicate training images, and `kerastl data duplicates` writes its files."""

import dataclasses
import io

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from kerastl.analysis.duplicates import by_chance, duplicate_pairs, held_out_leakage, leakage_warning
from kerastl.cli import cli
from kerastl.data.builtin import read_builtin
from kerastl.data.images import ImageSource
from tests.conftest import write_pixel_csv

KINDS = ("exact", "jpeg60", "flip")


def resaved(image, quality=60):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))


@pytest.fixture(scope="module")
def planted():
    """400 photos patches as training images; held out: 20 exact copies, 20 JPEG re-saves at quality 60 and 20
    mirrored copies of training images, and 60 other patches of the same photographs."""
    photos = read_builtin("photos")
    order = np.random.default_rng(0).permutation(len(photos))
    train, others = photos.take(np.sort(order[:400])), photos.take(np.sort(order[400:460]))
    copies = [image.copy() for image in train.images[0:20]] + [resaved(image) for image in train.images[20:40]] + [
        image[:, ::-1].copy() for image in train.images[40:60]]
    held = ImageSource(np.concatenate([np.stack(copies), others.images]), np.concatenate([train.labels[:60], others.labels]),
                       photos.class_names, "held out")
    return train, held


def test_planted_duplicates_are_found_and_distinct_pictures_are_not(planted):
    train, held = planted
    pairs = duplicate_pairs({"train": train, "test": held}, flips_match=True)
    across = pairs[(pairs["split_a"] == "train") & (pairs["split_b"] == "test")]
    found = set(zip(across["index_a"], across["index_b"]))
    assert found == {(i, i) for i in range(60)}  # recall 1 and precision 1 across the splits
    assert (across.set_index("index_b").loc[range(20), "kind"] == "exact").all()
    assert (across.set_index("index_b").loc[range(20, 60), "kind"] == "near").all()
    assert pairs.attrs["threshold"] >= 0.9


def test_a_mirrored_copy_is_a_duplicate_only_where_flips_are_the_same_picture(planted):
    train, held = planted
    pairs = duplicate_pairs({"train": train, "test": held}, flips_match=False)
    across = pairs[(pairs["split_a"] == "train") & (pairs["split_b"] == "test")]
    assert set(across["index_b"]) == set(range(40))


def test_held_out_leakage_counts_and_names_the_rows(planted):
    train, held = planted
    report = held_out_leakage({"train": train, "test": held}, flips_match=True)
    assert report["test"]["exact"] == 20 and report["test"]["near"] == 60
    assert report["test"]["duplicate_rows"] == list(range(60))
    report["test"]["accuracy_without_duplicates"] = 0.5
    assert "60 of 120 test images duplicate a training image (20 exactly) (accuracy on the other 60: 0.5000)" in leakage_warning(report)
    clean = {"threshold": 0.95, "test": {"images": 270, "exact": 0, "near": by_chance(270)}}
    assert leakage_warning(clean) is None  # as many near pairs as chance gives: no warning


def test_every_run_reports_held_out_images_that_duplicate_training_images(small_cnn_backbone):
    import kerastl
    from kerastl.config import PhaseConfig

    digits = read_builtin("digits").select(["0", "1", "2"], None, 0)
    train, test = digits.take(np.arange(0, 300)), digits.take(np.arange(300, 400))
    test_images = np.concatenate([train.images[10:20], test.images])  # ten training images planted in the test split
    test_labels = np.concatenate([train.labels[10:20], test.labels])
    model = kerastl.ImageClassifier.from_preset("small_cnn", num_classes=3, weights=None, image_shape=(8, 8, 1), input_size=32,
                                                augment="none", class_names=("0", "1", "2"))
    history = kerastl.fine_tune(model, train.images[10:], train.labels[10:], validation_data=(test.images, test.labels),
                                test_data=(test_images, test_labels), recipe=kerastl.Recipe(phases=(PhaseConfig("head", epochs=1),)),
                                verbose=0)
    leakage = history.metrics["leakage"]
    assert leakage["test"]["exact"] == 10 and leakage["validation"]["exact"] == 0
    assert 0 <= leakage["test"]["accuracy_without_duplicates"] <= 1
    assert any("10 exactly" in warning for warning in history.metrics["warnings"])


def test_kerastl_data_duplicates_writes_the_pairs_and_their_picture(tmp_path):
    digits = read_builtin("digits")
    write_pixel_csv(tmp_path / "test.csv", digits.images[:10], digits.labels[:10])
    config = tmp_path / "config.yaml"
    config.write_text(f"data: {{source: 'builtin:digits', test: '{tmp_path / 'test.csv'}', image_shape: [8, 8],"
                      " split: {validation: 0.2, test: 0.0}}\nmodel: {weights: none}\naugment: {flip: false}\n")
    result = CliRunner().invoke(cli, ["data", "duplicates", "--config", str(config), "--output", str(tmp_path / "dups"), "--quiet"])
    assert result.exit_code == 0, result.output
    pairs = pd.read_csv(tmp_path / "dups" / "duplicates.csv")
    exact = pairs[(pairs["kind"] == "exact") & (pairs["split_b"] == "test")]
    assert sorted(exact["index_b"]) == list(range(10))  # every copied row, found in train or validation
    assert (tmp_path / "dups" / "duplicates.png").read_bytes()[:4] == b"\x89PNG"
    assert "pair(s) across splits" in result.output and "train x test" in result.output


def test_deduplicate_exact_keeps_one_of_each_group_before_splitting(tmp_path):
    from kerastl.config import DataConfig, SplitConfig
    from kerastl.data.pipeline import load_splits

    digits = read_builtin("digits")
    rows = np.concatenate([np.arange(60), np.arange(10), np.arange(5)])  # rows 0-9 twice more, 0-4 three times more
    write_pixel_csv(tmp_path / "digits.csv", digits.images[rows], digits.labels[rows])
    data = DataConfig(source=str(tmp_path / "digits.csv"), image_shape=(8, 8), split=SplitConfig(0.2, 0.2))
    kept = load_splits(dataclasses.replace(data, deduplicate="exact"), seed=0)
    parts = [kept.train, kept.validation, kept.test]
    assert sum(len(part) for part in parts) == 60
    assert len(np.unique(np.concatenate([part.images for part in parts]).reshape(60, -1), axis=0)) == 60
    assert any("data.deduplicate: exact removed 15 of 75 images" in note for note in kept.conversions())
    assert sum(len(part) for part in load_splits(data, seed=0).__dict__.values() if part is not None and hasattr(part, "images")) == 75


def test_deduplicate_near_removes_planted_copies_and_few_distinct_pictures(planted, tmp_path):
    """400 photos patches plus 20 exact copies, 20 JPEG re-saves at quality 60 and 20 with grey-level noise of their
    first 60 (as 60 of 460 rows: far more copies than the nearest-neighbour rule of the leakage check tolerates)."""
    from kerastl.config import DataConfig, SplitConfig
    from kerastl.data.pipeline import load_splits

    train, _ = planted
    noise = np.random.default_rng(1).integers(-6, 7, train.images[40:60].shape)
    copies = [image.copy() for image in train.images[0:20]] + [resaved(image) for image in train.images[20:40]] + [
        np.clip(image.astype(int) + shift, 0, 255).astype(np.uint8) for image, shift in zip(train.images[40:60], noise)]
    images = np.concatenate([train.images, np.stack(copies)])
    table = pd.DataFrame(images.reshape(len(images), -1), columns=[f"pixel{i}" for i in range(64 * 64 * 3)])
    table.insert(0, "label", np.concatenate([train.labels, train.labels[:60]]))
    table.to_parquet(tmp_path / "planted.parquet")
    data = DataConfig(source=str(tmp_path / "planted.parquet"), image_shape=(64, 64, 3), split=SplitConfig(0.2, 0.2),
                      deduplicate="near")
    kept = load_splits(data, seed=0)
    ids = np.concatenate([part.image_ids() for part in (kept.train, kept.validation, kept.test)])
    rows = {int(name.removeprefix("row ")) - 1 for name in ids}
    assert not rows & set(range(400, 460))  # every planted copy removed (recall 1), its original kept
    assert set(range(60)) <= rows
    assert 400 - len(rows & set(range(400))) <= 8  # distinct patches removed as near copies of others: at most 2%
    assert any("data.deduplicate: near removed" in note and "of 460 images" in note for note in kept.conversions())


@pytest.mark.parametrize("rank", [1, 2])
@pytest.mark.parametrize("exclude_self", [False, True])
def test_nearest_finds_the_rank_th_most_similar_row_by_brute_force(rank, exclude_self, monkeypatch):
    """The nearest (an argmax) and second-nearest (a partial sort) similarities and rows, in chunks, against a full
    sort of every similarity; rows split over two chunks."""
    from kerastl.data import similarity

    rng = np.random.default_rng(3)
    reference = rng.normal(size=(300, 16)).astype(np.float32)
    queries = reference if exclude_self else rng.normal(size=(250, 16)).astype(np.float32)
    expected = queries @ reference.T
    if exclude_self:
        np.fill_diagonal(expected, -1.0)
    rows = np.argsort(-expected, axis=1, kind="stable")[:, rank - 1]
    monkeypatch.setattr(similarity, "CHUNK", 128)
    best, where = similarity.nearest(queries, reference, exclude_self=exclude_self, rank=rank)
    np.testing.assert_array_equal(where, rows)
    np.testing.assert_allclose(best, expected[np.arange(len(queries)), rows], rtol=1e-6)
