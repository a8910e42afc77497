"""One test per row of the README's "Pixel types" table: each input pixel type is read exactly, scaled by
the documented rule (and the rule reported), or refused with one error naming the file and the range."""

import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from kerastl.data.pictures import decode_picture
from kerastl.data.sources import from_arrays, from_dataframe, read_source
from kerastl.errors import DataError

RNG = np.random.default_rng(0)


def write_table(path, pixels, labels=None):
    frame = pd.DataFrame(pixels, columns=[f"p{i}" for i in range(pixels.shape[1])])
    frame.insert(0, "label", labels if labels is not None else np.arange(len(pixels)) % 2)
    if str(path).endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


def flat(source):
    return source.images.reshape(len(source), -1)


# ---- tables and arrays ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_integers_0_to_255_are_read_as_stored(tmp_path, suffix):
    pixels = RNG.integers(0, 256, (6, 16))
    source = read_source(str(write_table(tmp_path / f"t{suffix}", pixels)))
    assert np.array_equal(flat(source), pixels) and source.conversions == ()


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_floats_within_0_1_are_scaled_by_255_and_reported(tmp_path, suffix):
    pixels = RNG.random((6, 16))
    source = read_source(str(write_table(tmp_path / f"t{suffix}", pixels)))
    assert np.array_equal(flat(source), np.round(pixels * 255))
    assert source.conversions == (f"{tmp_path / f't{suffix}'}: pixel values are 0..1 floats, scaled by 255 and rounded "
                                  "(data.pixel_scale: auto).",)


def test_arrays_and_dataframes_follow_the_same_rule():
    pixels = RNG.random((4, 16))
    frame = pd.DataFrame(pixels, columns=[f"p{i}" for i in range(16)]).assign(label=[0, 1, 0, 1])
    expected = np.round(pixels * 255)
    assert np.array_equal(flat(from_arrays(pixels.reshape(4, 4, 4), [0, 1, 0, 1])), expected)
    assert np.array_equal(flat(from_dataframe(frame)), expected)
    assert np.array_equal(flat(from_arrays(pixels.reshape(4, 4, 4), [0, 1, 0, 1], pixel_scale=255)), np.round(pixels))


def test_fractional_values_in_0_255_are_rounded_and_reported(tmp_path):
    pixels = np.array([[0.4, 0.6, 254.5, 3.5], [10.0, 2.49, 7.51, 200.0]])
    source = read_source(str(write_table(tmp_path / "t.csv", pixels)))
    assert flat(source).tolist() == [[0, 1, 254, 4], [10, 2, 8, 200]]  # halves to even, as NumPy rounds
    assert source.conversions == (f"{tmp_path / 't.csv'}: fractional pixel values rounded to the nearest integer "
                                  "(data.pixel_scale: auto).",)


def test_pixel_scale_1_reads_integer_0_1_tables_as_black_and_white(tmp_path):
    pixels = RNG.integers(0, 2, (4, 16))
    path = str(write_table(tmp_path / "t.csv", pixels))
    assert np.array_equal(flat(read_source(path, pixel_scale=1)), pixels * 255)
    assert np.array_equal(flat(read_source(path)), pixels)  # auto: integers are 0..255 values


def test_pixel_scale_255_keeps_small_floats_as_small_values(tmp_path):
    pixels = RNG.random((4, 16))
    assert np.array_equal(flat(read_source(str(write_table(tmp_path / "t.csv", pixels)), pixel_scale=255)), np.round(pixels))


def test_a_later_chunk_that_contradicts_the_0_1_reading_is_refused(tmp_path):
    pixels = np.vstack([RNG.random((4, 4)), [[0, 17, 30, 255]]])
    path = str(write_table(tmp_path / "t.csv", pixels))
    with pytest.raises(DataError, match=r"row 5, column 'p1': value 17 is outside 0..1, the range the first rows set .*pixel_scale: 255"):
        read_source(path, chunk_size=4)


def test_values_outside_the_scale_are_refused_or_clipped_when_asked(tmp_path):
    path = str(write_table(tmp_path / "t.csv", np.array([[0.0, 0.5, 1.5, 0.2]])))
    with pytest.raises(DataError, match=r"row 1, column 'p2': value 1.5 is outside 0..1, the range of data.pixel_scale: 1"):
        read_source(path, pixel_scale=1)
    assert flat(read_source(path, pixel_scale=1, out_of_range="clip")).tolist() == [[0, 128, 255, 51]]


@pytest.mark.parametrize("cell, message", [("inf", "value inf is not a finite number"), ("x", "non-numeric value 'x'"),
                                           ("", "empty cell")])
def test_cells_that_are_not_pixel_values_are_refused(tmp_path, cell, message):
    path = tmp_path / "t.csv"
    path.write_text(f"label,p0,p1,p2,p3\n0,1,2,{cell},4\n")
    with pytest.raises(DataError, match=f"row 1, column 'p2': {message}"):
        read_source(str(path))


@pytest.mark.parametrize("text", ["label,pixel0\na,217,9\n", "label,p0,p1,p2,p3\na,1,2,3,4,5\nb,3,4,5,6,7\n"])
def test_rows_with_one_field_more_than_the_header_are_refused_not_shifted(tmp_path, text):
    """pandas would take the first field as an index and read every value one column to the left (found by fuzzing)."""
    path = tmp_path / "t.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=r"t.csv: ragged rows: the rows hold one field more than the header's"):
        read_source(str(path))


def test_data_stats_reports_the_scaling(tmp_path):
    from kerastl.cli import cli

    path = write_table(tmp_path / "t.csv", RNG.random((40, 16)), labels=np.arange(40) % 2)
    config = tmp_path / "c.yaml"
    config.write_text(f"data:\n  source: csv:{path}\nmodel:\n  input_size: 32\n")
    result = CliRunner().invoke(cli, ["data", "stats", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "Note: " in result.output and "0..1 floats, scaled by 255" in result.output


# ---- pictures ---------------------------------------------------------------------------------------


def png16(array, path):
    """A 16-bit PNG (gray, or RGB when [H, W, 3]) written byte by byte: Pillow writes only 16-bit gray."""
    array = array if array.ndim == 3 else array[..., None]
    height, width, channels = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, {1: 0, 3: 2}[channels], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    return path


def rgb_picture(height=6, width=8):
    return RNG.integers(0, 256, (height, width, 3)).astype(np.uint8)


def decode(path, channels=3, size=None):
    picture = Image.open(path)
    return decode_picture(path, size or (picture.height, picture.width), channels)


def test_8_bit_gray_and_rgb_are_read_as_stored(tmp_path):
    rgb, gray = rgb_picture(), rgb_picture()[..., 0]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert np.array_equal(decode(tmp_path / "rgb.png")[0], rgb)
    image, changes = decode(tmp_path / "gray.png", channels=1)
    assert np.array_equal(image[..., 0], gray) and changes == ()
    assert np.array_equal(decode(tmp_path / "gray.png")[0], np.repeat(gray[..., None], 3, -1))


def test_rgb_to_one_channel_is_pillows_luma(tmp_path):
    rgb = rgb_picture()
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    rgb = rgb.astype(np.int64)
    luma = (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114) / 1000  # ITU-R 601-2
    assert np.abs(decode(tmp_path / "rgb.png", channels=1)[0][..., 0] - luma).max() <= 1


def test_palette_pictures_are_looked_up(tmp_path):
    picture = Image.fromarray(rgb_picture()).quantize(8)
    picture.save(tmp_path / "p.png")
    assert np.array_equal(decode(tmp_path / "p.png")[0], np.asarray(picture.convert("RGB")))


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_is_dropped_with_colour_as_stored(tmp_path, mode):
    rgba = np.concatenate([rgb_picture(), RNG.integers(0, 256, (6, 8, 1)).astype(np.uint8)], -1)
    picture = Image.fromarray(rgba, "RGBA").convert(mode)
    picture.save(tmp_path / "a.png")
    image, changes = decode(tmp_path / "a.png")
    colour = rgba[..., :3] if mode == "RGBA" else np.repeat(np.asarray(picture)[..., :1], 3, -1)
    assert np.array_equal(image, colour) and changes == ("alpha",)


def test_cmyk_jpeg_is_converted_as_pillow_does(tmp_path):
    picture = Image.fromarray(rgb_picture(16, 16)).convert("CMYK")
    picture.save(tmp_path / "c.jpg", quality=100)
    with Image.open(tmp_path / "c.jpg") as reread:
        assert reread.mode == "CMYK"
        expected = np.asarray(reread.convert("RGB"))
    assert np.array_equal(decode(tmp_path / "c.jpg")[0], expected)


def test_16_bit_gray_keeps_the_high_byte_not_clipped(tmp_path):
    gradient = np.linspace(0, 65535, 32 * 32).reshape(32, 32).astype(np.uint16)
    Image.fromarray(gradient).save(tmp_path / "g16.png")
    image, changes = decode(tmp_path / "g16.png", channels=1)
    assert np.array_equal(image[..., 0], gradient >> 8) and changes == ("16-bit",)
    assert (image == 255).mean() < 0.01  # Pillow's own convert("L") makes 99.6% of it white


def test_16_bit_rgb_keeps_the_high_byte(tmp_path):
    values = RNG.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    image, changes = decode(png16(values, tmp_path / "rgb16.png"))
    assert np.array_equal(image, values >> 8) and changes == ("16-bit",)


def test_32_bit_integer_pictures_holding_16_bit_values_are_reduced_others_refused(tmp_path):
    values = RNG.integers(0, 65536, (5, 7)).astype(np.int32)
    Image.fromarray(values).save(tmp_path / "i.tif")
    assert np.array_equal(decode(tmp_path / "i.tif", channels=1)[0][..., 0], values >> 8)
    Image.fromarray(values * 4).save(tmp_path / "big.tif")
    with pytest.raises(DataError, match=r"big.tif: 32-bit integer pixels .* outside 0..65535"):
        decode(tmp_path / "big.tif")


def test_32_bit_float_pictures_within_0_1_are_scaled_others_refused(tmp_path):
    values = RNG.random((5, 7)).astype(np.float32)
    Image.fromarray(values).save(tmp_path / "f.tif")
    image, changes = decode(tmp_path / "f.tif", channels=1)
    assert np.array_equal(image[..., 0], np.round(values * 255)) and changes == ("float",)
    Image.fromarray(values * 300).save(tmp_path / "big.tif")
    with pytest.raises(DataError, match=r"big.tif: 32-bit float pixels .* not within 0..1"):
        decode(tmp_path / "big.tif")


def test_1_bit_pictures_are_black_and_white(tmp_path):
    bits = RNG.integers(0, 2, (6, 8)).astype(bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    assert np.array_equal(decode(tmp_path / "b.png", channels=1)[0][..., 0], bits * 255)


@pytest.mark.parametrize("orientation, turn", [(3, 2), (6, -1), (8, 1)])  # np.rot90 turns counter-clockwise
def test_photos_are_read_upright_by_their_exif_orientation(tmp_path, orientation, turn):
    stored = rgb_picture(6, 10)
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(tmp_path / "photo.png", exif=exif.tobytes())
    image, changes = decode_picture(tmp_path / "photo.png", np.rot90(stored, turn).shape[:2], 3)
    assert np.array_equal(image, np.rot90(stored, turn)) and changes == ("exif",)


def test_a_folder_reports_what_it_converted(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(rgb_picture()).save(tmp_path / name / "plain.png")
    Image.fromarray(np.full((6, 8), 4000, np.uint16)).save(tmp_path / "a" / "deep.png")
    source = read_source(f"folder:{tmp_path}", image_size=8)
    assert source.conversions == (
        f"{tmp_path}: 1 of 3 pictures 16-bit, reduced to 8 bits by keeping the high byte (v >> 8).",
        f"{tmp_path}: 3 of 3 pictures of another aspect ratio than the model's input, stretched to it (data.resize: squash).",
    )
    assert source.images[0].max() == 4000 >> 8


def test_large_jpegs_decode_at_reduced_scale_within_a_few_grey_levels(tmp_path):
    """JPEGs at least twice the target size are decoded by the JPEG decoder at 1/2-1/8 scale (draft mode) and
    then resized; against decoding at full size and resizing, on scikit-image's five photographs at 500x375:
    mean |difference| 0.7-4.5 grey levels, 99th percentile 5-26 at 32-128 px (README "Pixel types"); the
    astronaut, the most detailed, gives the largest."""
    skimage_data = pytest.importorskip("skimage.data")
    photo = np.asarray(Image.fromarray(skimage_data.astronaut()).resize((500, 375)))
    Image.fromarray(photo).save(tmp_path / "photo.jpg", quality=90)
    for size in (32, 64, 128):
        image, _ = decode_picture(tmp_path / "photo.jpg", size, 3)
        with Image.open(tmp_path / "photo.jpg") as picture:
            full = np.asarray(picture.convert("RGB").resize((size, size), Image.Resampling.BILINEAR))
        difference = np.abs(image.astype(int) - full.astype(int))
        assert difference.mean() <= 5 and np.percentile(difference, 99) <= 30, (size, difference.mean())
    drafted = Image.open(tmp_path / "photo.jpg")
    drafted.draft(None, (64, 64))
    assert drafted.size == (125, 94)  # the decoder itself scaled by 1/4: what makes the read fast


def test_a_run_reports_the_scaling_in_its_log_metrics_and_report(tmp_path):
    """Digits 0-2 exported as 0..1 floats: the run trains on 0..255 pixels, prints the rule as it starts, and keeps it
    in metrics.json and report.md."""
    import json

    from kerastl.cli import cli
    from tests.conftest import TINY

    digits = read_source("builtin:digits").select(["0", "1", "2"], max_per_class=30, seed=0)
    path = write_table(tmp_path / "floats.csv", digits.images.reshape(len(digits), -1) / 255.0, digits.labels)
    overrides = [o for o in TINY if not o.startswith(("data.source", "data.classes"))]
    overrides += [f"data.source=csv:{path}", "phases.1.epochs=0", "results.calibration=none"]
    sets = [part for item in overrides for part in ("--set", item)]
    result = CliRunner().invoke(cli, ["train", "--config", "/dev/null", "--output-dir", str(tmp_path / "run"), *sets])
    assert result.exit_code == 0, result.output
    note = f"{path}: pixel values are 0..1 floats, scaled by 255 and rounded (data.pixel_scale: auto)."
    assert f"Note: {note}" in result.stderr
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["pixel_conversions"] == [note]
    assert note in (tmp_path / "run" / "report.md").read_text()
    held_out = np.load(tmp_path / "run" / "heldout.npz")["images"]
    assert held_out.max() > 200  # the pixels the model saw are 0..255, not 0/1
