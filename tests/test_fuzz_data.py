"""Property-based fuzzing of the readers: pixel tables and image folders written the ways people (and
broken disks) write them are read, or refused with one DataError naming the file; never another exception."""

import gzip
import io
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from kerastl.data.sources import read_source
from kerastl.errors import ConfigError, DataError

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

cells = st.one_of(
    st.integers(0, 255), st.integers(-300, 600), st.floats(0, 1), st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["", " ", "x", "1e3", "12", "NaN", "∞", "'7'"]),
)


@st.composite
def tables(draw):
    rows = draw(st.integers(0, 5))
    pixels = draw(st.sampled_from([1, 3, 4, 15, 16, 17, 48, 64, 3072]))
    names = [f"pixel{i}" for i in range(pixels)]
    if draw(st.booleans()):
        names[draw(st.integers(0, pixels - 1))] = names[0]  # a duplicate header name
    columns = ["label", *names] if draw(st.booleans()) else names
    corrupt = draw(st.booleans())
    data = [[draw(st.sampled_from(["a", "b", 3, ""]))] + [
        draw(cells) if corrupt else draw(st.integers(0, 255)) for _ in range(pixels)
    ] for _ in range(rows)]
    data = [row[-len(columns):] for row in data]
    separator = draw(st.sampled_from([",", ";", "\t"]))
    text = pd.DataFrame(data, columns=columns).to_csv(index=False, sep=separator) if rows else separator.join(columns) + "\n"
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    if draw(st.booleans()):
        text = "\ufeff" + text
    extra = draw(st.sampled_from([None, "one-more", "one-less", "blank"]))
    if extra == "one-more" and rows:
        text = text.rstrip() + separator + "9\n"
    if extra == "one-less" and rows:
        text = text.rstrip().rsplit(separator, 1)[0] + "\n"
    if extra == "blank":
        text = text.replace("\n", "\n\n", 1)
    data_bytes = text.encode("utf-8")
    compressed = draw(st.booleans())
    if compressed:
        data_bytes = gzip.compress(data_bytes)
    if draw(st.integers(0, 9)) == 0:
        data_bytes = data_bytes[: draw(st.integers(0, len(data_bytes)))]  # truncated
    shape = draw(st.sampled_from([None, None, [4, 4], [4, 4, 1], [32, 32, 3], [3, 32, 32], [3, 8, 1], [2, 2]]))
    layout = draw(st.sampled_from(["hwc", "chw"]))
    return data_bytes, compressed, shape, layout


@settings(max_examples=250, **SETTINGS)
@given(table=tables())
def test_any_pixel_table_is_read_or_refused_with_one_data_error(tmp_path, table):
    data_bytes, compressed, shape, layout = table
    path = tmp_path / ("t.csv.gz" if compressed else "t.csv")
    path.write_bytes(data_bytes)
    try:
        source = read_source(f"csv:{path}", image_shape=shape, pixel_layout=layout)
    except (DataError, ConfigError) as exc:
        assert str(path) in str(exc) or "image_shape" in str(exc), exc
        return
    assert source.images.dtype == np.uint8 and source.images.ndim == 4 and len(source.images) == len(source.labels) > 0


@st.composite
def folders(draw):
    kinds = draw(st.lists(st.sampled_from(["png", "jpg", "gray", "rgba", "empty", "truncated", "text-as-png", "notes.txt",
                                           "hidden", "loop"]), min_size=1, max_size=6))
    return kinds, draw(st.sampled_from(["error", "skip"]))


def _write_file(folder, index, kind):
    picture = io.BytesIO()
    Image.new("RGB", (12, 9), (index * 40 % 256, 90, 30)).save(picture, format="PNG")
    if kind == "png":
        (folder / f"{index}.png").write_bytes(picture.getvalue())
    elif kind == "jpg":
        Image.new("RGB", (7, 11), (10, 200, 30)).save(folder / f"{index}.jpg")
    elif kind == "gray":
        Image.new("L", (5, 5), 99).save(folder / f"{index}.png")
    elif kind == "rgba":
        Image.new("RGBA", (6, 6), (1, 2, 3, 4)).save(folder / f"{index}.png")
    elif kind == "empty":
        (folder / f"{index}.png").write_bytes(b"")
    elif kind == "truncated":
        (folder / f"{index}.png").write_bytes(picture.getvalue()[:40])
    elif kind == "text-as-png":
        (folder / f"{index}.png").write_text("not a picture")
    elif kind == "notes.txt":
        (folder / f"{index}.txt").write_text("notes")
    elif kind == "hidden":
        (folder / f".{index}.png").write_text("a hidden file is not data")
    elif kind == "loop":
        os.symlink(folder, folder / f"loop{index}")


@settings(max_examples=60, **SETTINGS)
@given(cats=folders(), dogs=folders())
def test_any_image_folder_is_read_or_refused_with_one_data_error(tmp_path_factory, cats, dogs):
    root = tmp_path_factory.mktemp("photos")
    for name, (kinds, _) in (("cats", cats), ("dogs", dogs)):
        (root / name).mkdir()
        for index, kind in enumerate(kinds):
            _write_file(root / name, index, kind)
    try:
        source = read_source(f"folder:{root}", image_size=16, bad_images=cats[1])
    except DataError as exc:
        assert str(root) in str(exc), exc
        return
    assert source.images.shape[1:] == (16, 16, 3) and source.images.dtype == np.uint8
    assert len(source.images) == len(source.labels) > 0 and source.class_names == ("cats", "dogs")


@pytest.mark.slow
@settings(max_examples=1500, **SETTINGS)
@given(table=tables())
def test_many_more_pixel_tables(tmp_path, table):
    test_any_pixel_table_is_read_or_refused_with_one_data_error.hypothesis.inner_test(tmp_path, table)
