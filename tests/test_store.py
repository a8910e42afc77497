"""data.cache: disk: tables and folders are written to memory-mapped files under the run directory,
split without loading them, and stream into tf.data exactly as images held in memory do."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from kerastl.cli import cli
from kerastl.config import load_config
from kerastl.data.pipeline import EpochOrder, epoch_dataset, load_splits
from kerastl.errors import DataError
from tests.conftest import TINY


@pytest.fixture
def pixel_csv(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.integers(0, 256, (300, 64), dtype=np.uint8), columns=[f"p{i}" for i in range(64)])
    frame.insert(0, "label", np.arange(300) % 3)
    path = tmp_path / "pixels.csv"
    frame.to_csv(path, index=False)
    return path


def _splits(source, *extra, cache_dir=None):
    cfg = load_config(None, [f"data.source={source}", "data.chunk_size=64", *extra])
    return load_splits(cfg.data, seed=1, cache_dir=cache_dir)


def test_disk_cache_splits_match_memory_and_keep_one_file_per_split(pixel_csv, tmp_path):
    cache = tmp_path / "cache"
    on_disk = _splits(f"csv:{pixel_csv}", "data.cache=disk", cache_dir=cache)
    in_memory = _splits(f"csv:{pixel_csv}")
    for name in ("train", "validation", "test"):
        disk_part, memory_part = getattr(on_disk, name), getattr(in_memory, name)
        assert isinstance(disk_part.images, np.memmap) and disk_part.images.dtype == np.uint8
        np.testing.assert_array_equal(np.asarray(disk_part.images), memory_part.images)
        np.testing.assert_array_equal(disk_part.labels, memory_part.labels)
    assert len(list(cache.iterdir())) == 3  # the whole table's file is gone once split
    disk_batches = epoch_dataset(on_disk.train, 32, EpochOrder(0, 2, seed=3))
    memory_batches = epoch_dataset(in_memory.train, 32, EpochOrder(0, 2, seed=3))
    for (disk_images, disk_labels), (memory_images, memory_labels) in zip(disk_batches, memory_batches):
        assert disk_images.dtype == "uint8" and disk_images.shape[1:] == (8, 8, 1)
        np.testing.assert_array_equal(disk_images, memory_images)
        np.testing.assert_array_equal(disk_labels, memory_labels)


def test_disk_cache_reads_image_folders(tmp_path):
    for label in ("a", "b"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((10, 12, 3), 40 * i, np.uint8)).save(tmp_path / "photos" / label / f"{i}.png")
    cache = tmp_path / "cache"
    splits = _splits(f"folder:{tmp_path / 'photos'}", "data.cache=disk", "data.split={validation: 0.0, test: 0.0}",
                     cache_dir=cache)
    assert isinstance(splits.train.images, np.memmap) and splits.train.images.shape == (12, 224, 224, 3)
    assert len(list(cache.iterdir())) == 1


@pytest.fixture
def folder_with_a_bad_picture(tmp_path):
    """Two class folders of 40 distinct PNGs each, and one file in the first that is not a picture (sorted 10th)."""
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "photos" / label).mkdir(parents=True)
        for i in range(40):
            Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "photos" / label / f"{i:02d}.png")
    (tmp_path / "photos" / "a" / "09b.png").write_bytes(b"not a picture")
    return tmp_path / "photos"


@pytest.mark.parametrize("cache", ["memory", "disk"])
def test_a_folder_read_around_a_skipped_picture_keeps_each_picture_with_its_label(folder_with_a_bad_picture, tmp_path, cache):
    """Reading threads write each picture into its own row; the rows after a skipped file move up, in memory and in
    the disk cache's file (which ends after the last picture kept)."""
    from kerastl.data.sources import read_source

    cache_dir = tmp_path / "cache" if cache == "disk" else None
    source = read_source(f"folder:{folder_with_a_bad_picture}", image_size=(12, 16), bad_images="skip", cache_dir=cache_dir)
    assert source.images.shape == (80, 12, 16, 3) and source.skipped == (str(folder_with_a_bad_picture / "a" / "09b.png"),)
    for index in (0, 8, 9, 10, 39, 40, 79):  # around the skipped file and the class boundary
        path = source.ids[index]
        with Image.open(path) as picture:  # the reference reader: Pillow's bilinear resize, stretched to 16 x 12
            np.testing.assert_array_equal(source.images[index], np.asarray(picture.resize((16, 12), Image.Resampling.BILINEAR)))
        assert source.class_names[source.labels[index]] == Path(path).parent.name
    if cache == "disk":
        assert isinstance(source.images, np.memmap) and Path(source.images.filename).stat().st_size == source.images.nbytes


def test_a_folder_read_holds_its_pictures_once(folder_with_a_bad_picture):
    """The decoded pictures go straight into the array returned: reading never holds a second copy of them (peak
    traced memory under 1.25x the images; chunks joined at the end took 2x)."""
    import tracemalloc

    from kerastl.data.sources import read_source

    tracemalloc.start()
    try:
        images = read_source(f"folder:{folder_with_a_bad_picture}", image_size=64, bad_images="skip").images
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert images.nbytes == 80 * 64 * 64 * 3 and peak < 1.25 * images.nbytes, (peak, images.nbytes)


def test_a_bad_table_leaves_no_cache_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("label,p0,p1,p2,p3\n0,1,2,3,4\n1,1,x,3,4\n")
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="row 2, column 'p1': non-numeric value 'x'"):
        _splits(f"csv:{bad}", "data.cache=disk", cache_dir=cache)
    assert list(cache.iterdir()) == []


@pytest.mark.slow  # 20 s, two runs; the disk splits and disk features are checked against memory above and below
def test_train_with_disk_cache_matches_memory_and_cleans_up(pixel_csv, tmp_path):
    from kerastl.training.trainer import train

    common = TINY + [f"data.source=csv:{pixel_csv}", "phases.1.epochs=0", "deterministic=true"]
    disk = train(load_config(None, common + ["data.cache=disk"]), output_dir=tmp_path / "disk", verbose=0)
    memory = train(load_config(None, common), output_dir=tmp_path / "memory", verbose=0)
    assert disk.metrics["test_accuracy"] == memory.metrics["test_accuracy"]
    np.testing.assert_allclose(disk.model.get_layer("logits").kernel.numpy(),
                               memory.model.get_layer("logits").kernel.numpy(), atol=1e-6)
    assert not (tmp_path / "disk" / "cache").exists()  # removed once the run is complete


def test_cached_features_on_disk_equal_those_in_memory(tmp_path):
    from kerastl.training.features import extract_features
    from kerastl.models.classifier import build_model

    cfg = load_config(None, TINY)
    model = build_model(cfg.model, 3, (8, 8, 1), cfg.augment, cfg.seed)
    images = np.random.default_rng(0).integers(0, 256, (37, 8, 8, 1), dtype=np.uint8)
    in_memory = extract_features(model, images, batch_size=16, verbose=0)
    on_disk = extract_features(model, images, batch_size=16, verbose=0, cache_dir=tmp_path / "cache")
    assert isinstance(on_disk, np.memmap) and on_disk.dtype == np.float32 and on_disk.shape == in_memory.shape
    np.testing.assert_allclose(on_disk, in_memory, rtol=1e-6)


def test_cli_bad_table_with_disk_cache_exits_2_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("label,p0,p1,p2,p3\n0,1,2,3,4\n1,1,2,3,999\n")
    config = tmp_path / "c.yaml"
    config.write_text(f"name: bad\ndata: {{source: 'csv:{bad}', cache: disk}}\n")
    result = CliRunner().invoke(cli, ["train", "--config", str(config), "--output-dir", str(tmp_path / "run")])
    assert result.exit_code == 2 and "row 2, column 'p3': value 999 is outside 0..255" in result.stderr
    assert not (tmp_path / "run").exists()


def test_the_batch_pipelines_leave_autograph_nothing_to_convert(pixel_csv, tmp_path, monkeypatch):
    """Their functions are plain TensorFlow ops: converting each again for every dataset cost 0.24 s of a 2-epoch run."""
    from tensorflow.python.autograph.impl import api  # where AutoGraph converts a function: recorded here

    from kerastl.data.pipeline import image_batches

    converted = []
    convert = api._convert_actual
    monkeypatch.setattr(api, "_convert_actual", lambda entity, context: converted.append(entity) or convert(entity, context))
    memory, disk = _splits(f"csv:{pixel_csv}"), _splits(f"csv:{pixel_csv}", "data.cache=disk", cache_dir=tmp_path / "cache")
    for source in (memory.train, disk.train):
        for order in (EpochOrder(0, 1, seed=3), EpochOrder(0, 1, seed=3, balanced=True)):
            next(iter(epoch_dataset(source, 32, order)))
        next(iter(image_batches(source.images, 32)))
    assert [getattr(entity, "__qualname__", entity) for entity in converted if "kerastl" in getattr(entity, "__module__", "")] == []
