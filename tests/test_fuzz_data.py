"""Property-based fuzzing of the readers: pixel tables and image folders written the ways people (and
broken disks) write them are read exactly as a straightforward reference reader reads them (pandas and
NumPy for tables, Pillow for pictures: equal pixels, labels, row counts and skipped files), or refused
with one DataError naming the file. At least a third of the generated inputs are valid, so the
comparison is exercised, not only the refusals."""

import collections
import gzip
import io
import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from kerastl.data.sources import read_source
from kerastl.errors import ConfigError, DataError

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

bad_cells = st.sampled_from(["", " ", "x", "NaN", "∞", "'7'", "inf", -3, 300, 1e9])
SHAPES = {1: [1, 1, 1], 4: [2, 2], 16: [4, 4, 1], 48: [4, 4, 3], 64: [8, 8], 3072: [32, 32, 3]}


@st.composite
def tables(draw):
    """(file bytes, gzip?, image_shape, pixel_layout, the table as written, or how it was broken on purpose)."""
    rows = draw(st.integers(1, 5))
    pixels = draw(st.sampled_from([1, 3, 4, 15, 16, 48, 64, 3072]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["uint8", "unit floats", "fractions", "binary"]))
    values = {
        "uint8": lambda: rng.integers(0, 256, (rows, pixels)),
        "unit floats": lambda: rng.random((rows, pixels)),
        "fractions": lambda: rng.uniform(0, 255, (rows, pixels)).round(2),
        "binary": lambda: rng.integers(0, 2, (rows, pixels)),
    }[kind]()
    frame = pd.DataFrame(values, columns=[f"pixel{i}" for i in range(pixels)])
    if draw(st.integers(0, 5)) < 5:
        frame.insert(draw(st.integers(0, pixels)), "label", [draw(st.sampled_from(["a", "b", 3, 10])) for _ in range(rows)])
    broken = draw(st.sampled_from([None] * 10 + ["cell", "empty label", "ragged", "truncated", "shape"]))
    if broken == "cell":
        frame = frame.astype(object)
        frame.iat[draw(st.integers(0, rows - 1)), frame.columns.get_loc("pixel0")] = draw(bad_cells)
    if broken == "empty label" and "label" in frame:
        frame["label"] = frame["label"].astype(object)
        frame.loc[draw(st.integers(0, rows - 1)), "label"] = ""
    separator = draw(st.sampled_from([",", ";", "\t"]))
    text = frame.to_csv(index=False, sep=separator)
    if broken == "ragged":
        text = text.rstrip() + separator + "9\n"
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    if draw(st.booleans()):
        text = "\ufeff" + text
    if draw(st.booleans()):
        text = text.replace("\n", "\n\n", 1)  # a blank line after the header
    data = text.encode("utf-8")
    compressed = draw(st.booleans())
    data = gzip.compress(data) if compressed else data
    if broken == "truncated":
        data = data[: draw(st.integers(0, len(data) - 1))]
    shape = SHAPES.get(pixels) if draw(st.booleans()) else None
    if broken == "shape":
        shape = [3, 8, 1]
    layout = draw(st.sampled_from(["hwc", "chw"]))
    return data, compressed, shape, layout, (broken if broken or "label" not in frame else frame)


def reference_table(frame: pd.DataFrame, shape, layout):
    """(uint8 images, label texts) as the README's pixel rules describe, from the frame as written."""
    values = frame.drop(columns="label").to_numpy(dtype=np.float64)
    if values.min() >= 0 and values.max() <= 1 and (values != np.round(values)).any():
        values = values * 255
    pixels = np.round(values).astype(np.uint8)
    count = pixels.shape[1]
    h, w, c = (shape if len(shape) == 3 else [*shape, 1]) if shape else next(
        (s, s, ch) for ch in (1, 3) for s in [int(round((count / ch) ** 0.5))] if s * s * ch == count)
    images = pixels.reshape(-1, c, h, w).transpose(0, 2, 3, 1) if layout == "chw" else pixels.reshape(-1, h, w, c)
    return images, [str(v) for v in frame["label"]]


def check_table(tmp_path, table) -> str:
    data, compressed, shape, layout, written = table
    path = tmp_path / ("t.csv.gz" if compressed else "t.csv")
    path.write_bytes(data)
    try:
        source = read_source(f"csv:{path}", image_shape=shape, pixel_layout=layout)
    except (DataError, ConfigError) as exc:
        assert str(path) in str(exc) or "image_shape" in str(exc), exc
        fits = isinstance(written, pd.DataFrame) and written.shape[1] - 1 != 15  # 15 values make no square image
        assert not fits, f"a valid table was refused: {exc}"
        return "refused"
    if isinstance(written, str) and written == "truncated":  # a cut can fall where the rest still parses ("12" -> "1"): either outcome is fine
        return "truncated"
    assert isinstance(written, pd.DataFrame), f"a table broken on purpose ({written}) was read"
    images, labels = reference_table(written, shape, layout)
    assert source.images.dtype == np.uint8 and np.array_equal(source.images, images)
    assert len(source) == len(written) and [source.class_names[k] for k in source.labels] == labels
    return "read"


def assert_mostly_valid(check, inputs, examples: int) -> None:
    """Run `check(input) -> outcome` on `examples` seeded inputs; at least a third must have been read."""
    outcomes = collections.Counter()

    @settings(max_examples=examples, derandomize=True, **SETTINGS)
    @given(drawn=inputs)
    def run(drawn):
        outcomes[check(drawn)] += 1

    run()
    assert outcomes["read"] >= sum(outcomes.values()) / 3, outcomes


def test_pixel_tables_are_read_as_the_reference_reads_them_or_refused(tmp_path_factory):
    assert_mostly_valid(lambda table: check_table(tmp_path_factory.mktemp("table"), table), tables(), 120)


GOOD_KINDS = ["png", "jpg", "gray", "rgba", "palette", "16-bit", "rotated"]
BAD_KINDS = ["empty", "truncated", "text-as-png", "notes.txt"]


@st.composite
def folders(draw):
    kinds = st.sampled_from(GOOD_KINDS * 3 + BAD_KINDS + ["hidden", "loop"])
    return [draw(st.lists(kinds, min_size=1, max_size=4)) for _ in range(2)], draw(st.sampled_from(["error", "skip"]))


def _write_file(folder, index, kind, rng):
    picture = io.BytesIO()
    colours = rng.integers(0, 256, (9, 12, 3)).astype(np.uint8)
    Image.fromarray(colours).save(picture, format="PNG")
    path = folder / f"{index}.png"
    if kind == "png":
        path.write_bytes(picture.getvalue())
    elif kind == "jpg":
        Image.fromarray(colours).save(folder / f"{index}.jpg")
    elif kind == "gray":
        Image.fromarray(colours[..., 0]).save(path)
    elif kind == "rgba":
        Image.fromarray(np.concatenate([colours, colours[..., :1]], -1), "RGBA").save(path)
    elif kind == "palette":
        Image.fromarray(colours).quantize(5).save(path)
    elif kind == "16-bit":
        Image.fromarray(rng.integers(0, 65536, (7, 5)).astype(np.uint16)).save(path)
    elif kind == "rotated":
        exif = Image.Exif()
        exif[0x0112] = int(rng.choice([3, 6, 8]))
        Image.fromarray(colours).save(folder / f"{index}.jpg", exif=exif.tobytes())
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(picture.getvalue()[:40])
    elif kind == "text-as-png":
        path.write_text("not a picture")
    elif kind == "notes.txt":
        (folder / f"{index}.txt").write_text("notes")
    elif kind == "hidden":
        (folder / f".{index}.png").write_text("a hidden file is not data")
    elif kind == "loop":
        os.symlink(folder, folder / f"loop{index}")


def reference_picture(path, size):
    """The README's rules, written plainly with Pillow: upright, 16-bit to its high byte, RGB, bilinear resize."""
    with Image.open(path) as picture:
        picture = ImageOps.exif_transpose(picture)
        if picture.mode == "I;16":
            picture = Image.fromarray((np.asarray(picture) >> 8).astype(np.uint8))
        return np.asarray(picture.convert("RGBA").convert("RGB").resize((size, size), Image.Resampling.BILINEAR))


def check_folder(root, classes, bad_images) -> str:
    files, expected_skipped = {}, []
    for name, kinds in zip(("cats", "dogs"), classes):
        (root / name).mkdir()
        rng = np.random.default_rng(len(kinds))
        for index, kind in enumerate(kinds):
            _write_file(root / name, index, kind, rng)
        listed = sorted(p for p in (root / name).iterdir() if p.is_file() and not p.name.startswith("."))
        files[name] = [p for p in listed if p.suffix != ".txt"]
        expected_skipped += [str(p) for p in listed if p.suffix == ".txt"]
    readable = {}
    for name, paths in files.items():
        for path in paths:
            try:
                readable[path] = reference_picture(path, 16)
            except Exception:
                expected_skipped.append(str(path))
    try:
        source = read_source(f"folder:{root}", image_size=16, bad_images=bad_images)
    except DataError as exc:
        assert str(root) in str(exc), exc
        valid = all(files.values()) and readable and (bad_images == "skip" or not expected_skipped)
        assert not valid, f"a valid folder was refused: {exc}"
        return "refused"
    assert bad_images == "skip" or not expected_skipped
    kept = [p for name in ("cats", "dogs") for p in files[name] if p in readable]
    assert source.ids.tolist() == [str(p) for p in kept] and sorted(source.skipped) == sorted(expected_skipped)
    assert source.labels.tolist() == [0 if p.parent.name == "cats" else 1 for p in kept]
    assert np.array_equal(source.images, np.stack([readable[p] for p in kept]))
    return "read"


def test_image_folders_are_read_as_pillow_reads_them_or_refused(tmp_path_factory):
    assert_mostly_valid(lambda folder: check_folder(tmp_path_factory.mktemp("photos"), *folder), folders(), 50)


@pytest.mark.slow
@settings(max_examples=1500, **SETTINGS)
@given(table=tables())
def test_many_more_pixel_tables(tmp_path_factory, table):
    check_table(tmp_path_factory.mktemp("table"), table)
