"""Sources in many files and in remote storage: a glob of table shards read as one source, each process of a
multi-host run reading only its share of the files, and URIs read through pyarrow's file systems (tested on the
local file system through the same interface: file://)."""

from pathlib import Path

import numpy as np
import pytest

from kerastl.data.sources import ReadOptions, read_source
from kerastl.errors import DataError
from tests.data.test_sources import pixel_table, write_folder


@pytest.fixture
def shards(tmp_path):
    """Four Parquet and CSV shards of 6 rows each; shard 3 holds only labels 1 and 2 (class names are their union)."""
    frames = [pixel_table(6, 64, label_values=(1, 2) if k == 3 else (3, 1, 2)) for k in range(4)]
    for k, frame in enumerate(frames):
        frame.to_parquet(tmp_path / f"train-{k}.parquet")
        frame.to_csv(tmp_path / f"train-{k}.csv", index=False)
    (tmp_path / "other.parquet").write_bytes(b"not matched by the pattern")
    return tmp_path, frames


@pytest.mark.parametrize("kind", ["parquet", "csv"])
def test_a_glob_of_shards_reads_as_one_source_in_file_order(shards, kind):
    folder, frames = shards
    source = read_source(f"{kind}:{folder}/train-*.{kind}")
    whole = np.concatenate([frame.drop(columns="label").to_numpy() for frame in frames])
    np.testing.assert_array_equal(source.images.reshape(len(source), -1), whole)
    assert source.class_names == ("1", "2", "3")
    labels = np.concatenate([frame["label"].to_numpy() for frame in frames])
    assert [source.class_names[k] for k in source.labels] == [str(v) for v in labels]
    assert source.image_ids()[6] == f"{folder}/train-1.{kind}: row 1"
    on_disk = read_source(f"{kind}:{folder}/train-*.{kind}", cache_dir=folder / "cache")
    np.testing.assert_array_equal(on_disk.images, source.images)
    assert [path.name for path in (folder / "cache").iterdir()] == [Path(on_disk.images.filename).name]


def test_each_process_reads_only_its_share_of_the_files(shards):
    folder, frames = shards
    parts = [read_source(f"parquet:{folder}/train-*.parquet", ReadOptions(shard=(k, 2))) for k in (0, 1)]
    assert [len(part) for part in parts] == [12, 12]
    np.testing.assert_array_equal(parts[1].images.reshape(12, -1)[:6], frames[1].drop(columns="label").to_numpy())
    assert {str(path).rsplit("/", 1)[-1].split(":")[0] for path in parts[1].image_ids()} == {"train-1.parquet", "train-3.parquet"}
    assert parts[0].class_names == parts[1].class_names == ("1", "2", "3")  # classes of every file, not only its own
    with pytest.raises(DataError, match=r"4 files for 5 processes"):
        read_source(f"parquet:{folder}/train-*.parquet", ReadOptions(shard=(4, 5)))


def test_a_folder_is_shared_out_by_file_within_each_class(tmp_path):
    write_folder(tmp_path)  # 4 pictures per class
    parts = [read_source(f"folder:{tmp_path}", ReadOptions(image_size=16, shard=(k, 2))) for k in (0, 1)]
    ids = [set(part.image_ids()) for part in parts]
    assert not ids[0] & ids[1] and len(ids[0] | ids[1]) == 8
    assert [part.class_counts().tolist() for part in parts] == [[2, 2], [2, 2]]


def test_uris_read_as_local_paths_do(shards, tmp_path):
    folder, _ = shards
    for spec in (f"parquet:{folder}/train-0.parquet", f"csv:{folder}/train-0.csv", f"{folder}/train-*.parquet"):
        local, remote = read_source(spec), read_source(spec.replace(str(folder), f"file://{folder}"))
        np.testing.assert_array_equal(local.images, remote.images)
        assert local.class_names == remote.class_names and remote.origin.startswith("file://")
    pictures = tmp_path / "pictures"
    write_folder(pictures)
    local, remote = read_source(f"folder:{pictures}", image_size=16), read_source(f"folder:file://{pictures}", image_size=16)
    np.testing.assert_array_equal(local.images, remote.images)
    with pytest.raises(DataError, match="no such file"):
        read_source(f"file://{folder}/missing.parquet")
    with pytest.raises(DataError, match="no file matches"):
        read_source(f"parquet:file://{folder}/nothing-*.parquet")
