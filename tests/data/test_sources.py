from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kerastl.data.sources import from_arrays, from_dataframe, infer_image_shape, read_source
from kerastl.errors import ConfigError, DataError

RNG = np.random.default_rng(0)


def pixel_table(rows, pixels, first=0, label_values=(3, 1, 2), label_at=0):
    data = RNG.integers(0, 256, size=(rows, pixels))
    frame = pd.DataFrame(data, columns=[f"pixel{i + first}" for i in range(pixels)])
    frame.insert(label_at, "label", [label_values[i % len(label_values)] for i in range(rows)])
    return frame


@pytest.mark.parametrize("first", [0, 1], ids=["kaggle-pixel0", "fashion-pixel1"])
def test_mnist_style_csv(tmp_path, first):
    frame = pixel_table(7, 784, first=first)
    frame.to_csv(tmp_path / "train.csv", index=False)
    src = read_source(f"csv:{tmp_path / 'train.csv'}")
    assert src.images.shape == (7, 28, 28, 1) and src.images.dtype == np.uint8
    assert src.class_names == ("1", "2", "3")
    np.testing.assert_array_equal(src.images[0].ravel(), frame.iloc[0, 1:].to_numpy())
    assert src.class_names[src.labels[0]] == "3"


def test_chunked_reading_equals_whole_file(tmp_path):
    pixel_table(25, 64).to_csv(tmp_path / "t.csv", index=False)
    whole = read_source(str(tmp_path / "t.csv"), chunk_size=1000)
    chunked = read_source(str(tmp_path / "t.csv"), chunk_size=4)
    np.testing.assert_array_equal(whole.images, chunked.images)
    np.testing.assert_array_equal(whole.labels, chunked.labels)


def test_label_column_anywhere_with_custom_name_and_string_labels(tmp_path):
    frame = pixel_table(6, 64, label_values=("dog", "cat"), label_at=10).rename(columns={"label": "kind"})
    frame.to_csv(tmp_path / "t.csv", index=False)
    src = read_source(f"csv:{tmp_path / 't.csv'}", label_column="kind")
    assert src.image_shape == (8, 8, 1) and src.class_names == ("cat", "dog")
    np.testing.assert_array_equal(src.images[1].ravel(), frame.drop(columns="kind").iloc[1].to_numpy())


def test_parquet_matches_csv(tmp_path):
    frame = pixel_table(9, 3072)
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    from_csv = read_source(f"csv:{tmp_path / 't.csv'}")
    from_parquet = read_source(f"parquet:{tmp_path / 't.parquet'}", chunk_size=4)
    assert from_parquet.image_shape == (32, 32, 3)
    np.testing.assert_array_equal(from_csv.images, from_parquet.images)
    np.testing.assert_array_equal(from_csv.labels, from_parquet.labels)


def test_chw_layout_is_transposed_to_hwc(tmp_path):
    image = RNG.integers(0, 256, size=(4, 4, 3))
    frame = pd.DataFrame([[0, *image.transpose(2, 0, 1).ravel()], [1, *image.transpose(2, 0, 1).ravel()]])
    frame.columns = ["label"] + [f"p{i}" for i in range(48)]
    src = from_dataframe(frame, image_shape=(3, 4, 4), pixel_layout="chw")
    np.testing.assert_array_equal(src.images[0], image)


def test_table_without_labels_for_prediction(tmp_path):
    pixel_table(3, 64).drop(columns="label").to_csv(tmp_path / "t.csv", index=False)
    src = read_source(str(tmp_path / "t.csv"), require_labels=False)
    assert src.labels is None and len(src) == 3


@pytest.mark.parametrize(
    "count, shape", [(784, (28, 28, 1)), (1024, (32, 32, 1)), (3072, (32, 32, 3)), (64, (8, 8, 1))]
)
def test_image_shape_inferred_from_pixel_count(count, shape):
    assert infer_image_shape(count, None, "hwc", "t") == shape


def test_builtin_digits_offline_are_scikit_learns_digits_scaled_to_0_255():
    """Read from the file scikit-learn ships, without its `load_digits` (whose import a run's process avoids)."""
    from sklearn.datasets import load_digits

    src, digits = read_source("builtin:digits"), load_digits()
    assert src.images.shape == (1797, 8, 8, 1) and src.images.dtype == np.uint8 and src.images.max() == 255
    np.testing.assert_array_equal(src.images[..., 0], np.round(digits.images * (255.0 / 16.0)).astype(np.uint8))
    np.testing.assert_array_equal(src.labels, digits.target)
    assert src.class_names == tuple(str(i) for i in range(10))


def write_folder(root, make_corrupt=False, extra_file=False):
    colors = {"cats": (200, 30, 30), "dogs": (30, 30, 200)}
    for name, color in colors.items():
        (root / name).mkdir(parents=True)
        Image.new("RGB", (40, 30), color).save(root / name / "a.jpg")
        Image.new("L", (20, 20), 128).save(root / name / "b.png")
        Image.new("RGBA", (16, 24), (*color, 255)).save(root / name / "c.bmp" if name == "cats" else root / name / "c.png")
        Image.new("P", (10, 10)).save(root / name / "d.gif")
    if make_corrupt:
        (root / "cats" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    if extra_file:
        (root / "dogs" / "notes.txt").write_text("hello")


def test_image_folder_mixed_modes_and_formats(tmp_path):
    write_folder(tmp_path)
    src = read_source(f"folder:{tmp_path}", image_size=24, channels=3)
    assert src.images.shape == (8, 24, 24, 3) and src.images.dtype == np.uint8
    assert src.class_names == ("cats", "dogs")
    red = src.images[src.labels == 0][0]
    assert red[..., 0].mean() > 150 and red[..., 2].mean() < 60
    gray = read_source(str(tmp_path), image_size=24, channels=1)
    assert gray.images.shape == (8, 24, 24, 1)


def test_folder_bad_files_error_or_skip(tmp_path):
    write_folder(tmp_path, make_corrupt=True, extra_file=True)
    with pytest.raises(DataError, match=r"notes\.txt: not an image file"):
        read_source(f"folder:{tmp_path}", image_size=16)
    skipped = read_source(f"folder:{tmp_path}", image_size=16, bad_images="skip")
    assert len(skipped) == 8
    assert sorted(Path(p).name for p in skipped.skipped) == ["broken.jpg", "notes.txt"]
    (tmp_path / "dogs" / "notes.txt").unlink()
    with pytest.raises(DataError, match=r"broken\.jpg: corrupt or unreadable image"):
        read_source(f"folder:{tmp_path}", image_size=16)


def test_from_arrays_and_dataframe():
    src = from_arrays(RNG.integers(0, 256, (5, 6, 6)), ["b", "a", "b", "a", "a"])
    assert src.images.dtype == np.uint8 and src.image_shape == (6, 6, 1) and src.class_names == ("a", "b")
    with pytest.raises(DataError, match="row 0, column 0: value 300 is outside 0..255"):
        from_arrays(np.full((2, 4, 4), 300.0), [0, 1])


def test_select_classes_and_cap(tmp_path):
    src = read_source("builtin:digits").select(["7", "3"], max_per_class=10, seed=0)
    assert src.class_names == ("7", "3") and np.bincount(src.labels).tolist() == [10, 10]


def write(tmp_path, text, name="t.csv"):
    path = tmp_path / name
    path.write_text(text)
    return f"csv:{path}"


def bad_cases(tmp_path):
    header = "label," + ",".join(f"p{i}" for i in range(4)) + "\n"
    return {
        "missing": (f"csv:{tmp_path / 'absent.csv'}", r"absent\.csv: no such file"),
        "empty": (write(tmp_path, "", "e.csv"), r"e\.csv: the file is empty"),
        "header only": (write(tmp_path, header, "h.csv"), r"h\.csv: no data rows \(header only\)"),
        "no label column": (write(tmp_path, "a,b,c,d\n1,2,3,4\n", "n.csv"), r"no label column 'label'; the columns are: a, b, c, d"),
        "non-numeric": (write(tmp_path, header + "1,2,x,4,5\n", "x.csv"), r"row 1, column 'p1': non-numeric value 'x'"),
        "empty cell": (write(tmp_path, header + "1,2,3,4,5\n1,2,,4,5\n", "c.csv"), r"row 2, column 'p1': empty cell"),
        "out of range": (write(tmp_path, header + "1,2,3,256,5\n", "r.csv"), r"row 1, column 'p2': value 256 is outside 0..255"),
        "odd pixel count": (write(tmp_path, "label,a,b,c,d,e\n1,2,3,4,5,6\n", "o.csv"), r"5 pixel values per row fit no square"),
        "ragged": (write(tmp_path, header + "1,2,3,4,5\n1,2,3,4,5,6,7\n", "g.csv"), r"g\.csv: ragged rows"),
        "folder missing": (f"folder:{tmp_path / 'nofolder'}", r"nofolder: no such folder"),
    }


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "header only", "no label column", "non-numeric", "empty cell", "out of range",
     "odd pixel count", "ragged", "folder missing"],
)
def test_bad_tables_give_one_clear_error(tmp_path, case):
    spec, message = bad_cases(tmp_path)[case]
    with pytest.raises(DataError, match=message) as info:
        read_source(spec)
    assert "\n" not in str(info.value)


def test_unknown_source_scheme_lists_the_known_ones():
    with pytest.raises(ConfigError, match=r"Unknown data source 'hdf5'. Expected one of: csv, parquet, builtin, folder"):
        read_source("hdf5:x")


def test_out_of_range_clip_is_opt_in(tmp_path):
    spec = write(tmp_path, "label,a,b,c,d\n1,-3,2,300,4\n")
    assert read_source(spec, out_of_range="clip").images.ravel().tolist() == [0, 2, 255, 4]


def test_image_shape_that_contradicts_the_pixel_count(tmp_path):
    spec = write(tmp_path, "label,a,b,c,d\n1,1,2,3,4\n")
    with pytest.raises(DataError, match=r"rows have 4 pixel values but image_shape \[3, 3\] needs 9"):
        read_source(spec, image_shape=[3, 3])


def test_truncated_image_is_an_error(tmp_path):
    write_folder(tmp_path)
    whole = (tmp_path / "cats" / "a.jpg").read_bytes()
    (tmp_path / "cats" / "a.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"a\.jpg: corrupt or unreadable image"):
        read_source(f"folder:{tmp_path}", image_size=8)


def test_empty_class_folder(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "birds").mkdir()
    with pytest.raises(DataError, match=r"birds: class folder holds no images"):
        read_source(f"folder:{tmp_path}", image_size=8)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_progress_bar_only_when_asked(tmp_path, capsys, suffix):
    frame = pixel_table(30, 64)
    path = tmp_path / f"t.{suffix}"
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
    quiet = read_source(str(path), chunk_size=7)
    assert capsys.readouterr().err == ""
    loud = read_source(str(path), chunk_size=7, progress=True)
    assert f"reading t.{suffix}" in capsys.readouterr().err
    np.testing.assert_array_equal(quiet.images, loud.images)


@pytest.mark.parametrize("image_shape", [[32, 32, 3], [3, 32, 32]])
def test_image_shape_means_the_image_whatever_the_pixel_layout(tmp_path, image_shape):
    """A CIFAR-style 3072-column channel-first CSV: [32, 32, 3] (the image) and [3, 32, 32] (as stored) read alike."""
    planes = np.arange(2 * 3072).reshape(2, 3, 32, 32) % 256
    frame = pd.DataFrame(planes.reshape(2, -1), columns=[f"p{i}" for i in range(3072)])
    frame.insert(0, "label", [0, 1])
    frame.to_csv(tmp_path / "cifar.csv", index=False)
    src = read_source(f"csv:{tmp_path / 'cifar.csv'}", image_shape=image_shape, pixel_layout="chw")
    assert src.image_shape == (32, 32, 3)
    np.testing.assert_array_equal(src.images, planes.transpose(0, 2, 3, 1).astype(np.uint8))


def test_image_shape_that_reads_two_ways_names_both(tmp_path):
    spec = write(tmp_path, "label," + ",".join(f"p{i}" for i in range(24)) + "\n0," + ",".join(["1"] * 24) + "\n")
    with pytest.raises(DataError, match=r"reads two ways: 3×8 pixels with 1 channel\(s\) \[H, W, C\], or 8×1 with 3 \[C, H, W\]"):
        read_source(spec, image_shape=[3, 8, 1])


@pytest.mark.parametrize("variant", ["bom", "semicolon", "tab", "crlf", "blank-lines", "gzip"])
def test_csv_written_the_ways_people_write_it_reads_the_same_images(tmp_path, variant):
    import gzip

    frame = pixel_table(5, 16)
    plain = read_source(write(tmp_path, frame.to_csv(index=False), "plain.csv"))
    text = frame.to_csv(index=False, sep={"semicolon": ";", "tab": "\t"}.get(variant, ","))
    if variant == "crlf":
        text = text.replace("\n", "\r\n")
    if variant == "blank-lines":
        text = text.replace("\n", "\n\n", 2)
    data = ("\ufeff" + text if variant == "bom" else text).encode("utf-8")
    path = tmp_path / ("rows.csv.gz" if variant == "gzip" else "rows.csv")
    path.write_bytes(gzip.compress(data) if variant == "gzip" else data)
    source = read_source(str(path))  # a bare path: .csv.gz is a CSV too
    np.testing.assert_array_equal(source.images, plain.images)
    assert source.class_names == plain.class_names and source.labels.tolist() == plain.labels.tolist()


def test_a_truncated_gzip_csv_is_a_data_error(tmp_path):
    import gzip

    path = tmp_path / "rows.csv.gz"
    path.write_bytes(gzip.compress(pixel_table(50, 16).to_csv(index=False).encode())[:200])
    with pytest.raises(DataError, match=r"rows.csv.gz: not a readable CSV file"):
        read_source(str(path))


@pytest.mark.parametrize(
    "late_cell, expected",
    [
        (None, None),  # plain integers: the pyarrow route, block after block
        ("0.5", None),  # a float in a late block: read again by pandas, rounded like any float cell
        ("300", r"row 190, column 'pixel5': value 300 is outside 0\.\.255"),
        ("", r"row 190, column 'pixel5': empty cell"),
    ],
    ids=["plain", "float", "out-of-range", "empty"],
)
def test_csv_read_in_many_blocks_equals_pandas_or_names_the_late_bad_cell(tmp_path, monkeypatch, late_cell, expected):
    monkeypatch.setattr("kerastl.data.sources.ARROW_BLOCK_BYTES", 2048)  # many blocks from a small file
    frame = pixel_table(200, 16, label_values=("cat", "dog", "emu")).astype(object)
    if late_cell is not None:
        frame.loc[189, "pixel5"] = late_cell
    frame.to_csv(tmp_path / "t.csv", index=False)
    if expected:
        with pytest.raises(DataError, match=expected):
            read_source(f"csv:{tmp_path / 't.csv'}")
        return
    src = read_source(f"csv:{tmp_path / 't.csv'}")
    reference = pd.read_csv(tmp_path / "t.csv")
    np.testing.assert_array_equal(src.images.reshape(200, 16), reference.iloc[:, 1:].to_numpy().round().astype(np.uint8))
    assert [src.class_names[i] for i in src.labels] == list(reference["label"])
