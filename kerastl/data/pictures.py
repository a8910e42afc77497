"""Decode one picture file to `uint8` pixels by a documented rule per pixel type, or refuse it.

The rules (README "Pixel types"): 8-bit pictures are read as stored; 16-bit pictures keep their high
byte (`v >> 8`, what Pillow itself does for 16-bit RGB); 32-bit integer pictures holding 16-bit values
likewise, others are refused; 32-bit float pictures within 0..1 are scaled by 255 and rounded, others are
refused; alpha is dropped (colour as stored); palettes are looked up; photos are turned upright by their
EXIF orientation; a picture of another aspect ratio than the target is stretched to it, cut to its centre or fitted
between black bars (`data.resize`: squash, crop, pad). Each picture reports which of these changed it, so a run can
say so.

A JPEG at least twice the target size on both sides is decoded at 1/2, 1/4 or 1/8 scale (Pillow's `draft`,
the decoder's own DCT scaling) and then resized: faster on photos (BENCHMARKS.md), and within a few grey
levels of decoding at full size (README "Pixel types"; tested).

Example:
    >>> image, changes = decode_picture("scan16.png", 64, channels=1)
    >>> image.dtype, image.shape, changes
    (dtype('uint8'), (64, 64, 1), ('16-bit',))
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from kerastl.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
EXIF_ORIENTATION = 0x0112
TURNED = (5, 6, 7, 8)  # EXIF orientations stored a quarter turn from upright: width and height swap

# What each change means, for the run's notes (`describe_changes`).
CHANGES = {
    "exif": "turned upright by their EXIF orientation",
    "16-bit": "16-bit, reduced to 8 bits by keeping the high byte (v >> 8)",
    "float": "32-bit float within 0..1, scaled by 255 and rounded",
    "alpha": "with an alpha channel, dropped (colour kept as stored)",
    "squash": "of another aspect ratio than the model's input, stretched to it (data.resize: squash)",
    "crop": "of another aspect ratio than the model's input, cut to their centre at its aspect ratio (data.resize: crop)",
    "pad": "of another aspect ratio than the model's input, fitted whole between black bars (data.resize: pad)",
}
ASPECT_TOLERANCE = 0.01  # aspect ratios closer than this (relative) are the same: a resize, not a reshaping


def _opened(path):
    """What Pillow opens: a local path as it is, a remote file (`kerastl.data.storage.RemotePath`) as a file object."""
    return contextlib.nullcontext(path) if isinstance(path, (str, Path)) else path.open("rb")


def decode_picture(
    path: Path | str, size: int | tuple[int, int], channels: int, resize: str = "squash"
) -> tuple[np.ndarray, tuple[str, ...]]:
    """One picture as `uint8` [H, W, channels] at `size` (one side or (H, W); bilinear), and the changes applied (keys
    of `CHANGES`). A picture of another aspect ratio is stretched (`resize="squash"`), cut to its centre at the
    target's aspect ratio ("crop") or fitted whole inside black bars ("pad").

    Raises:
        DataError: the file is not a readable picture, or holds a pixel type with no exact 8-bit reading.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    height, width, _ = picture_shape(size, channels)
    try:
        with _opened(path) as source, Image.open(source) as picture:
            changes = ["16-bit"] if _decoded_from_16_bits(picture) else []
            orientation = picture.getexif().get(EXIF_ORIENTATION, 1)
            if picture.format == "JPEG":  # decode at 1/2, 1/4 or 1/8 scale where the target is that much smaller
                picture.draft(None, (height, width) if orientation in TURNED else (width, height))
            if orientation != 1:
                picture = ImageOps.exif_transpose(picture)
                changes.append("exif")
            picture, change = _to_8_bits(picture, path)
            changes += [change] if change else []
            if picture.mode in ("P", "PA"):
                picture = picture.convert("RGBA")
            if picture.mode in ALPHA_MODES:
                changes.append("alpha")
            picture = picture.convert("L" if channels == 1 else "RGB")
            if aspect_differs(picture.height, picture.width, (height, width)):
                changes.append(resize)
            picture = _resized(picture, (width, height), resize)
            array = np.asarray(picture, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: corrupt or unreadable image ({exc}).") from None
    return (array[..., None] if channels == 1 else array), tuple(changes)


def picture_shape(size: int | tuple[int, int], channels: int) -> tuple[int, int, int]:
    """The shape (H, W, channels) of what `decode_picture` returns at `size` (one side or (H, W))."""
    height, width = (size, size) if isinstance(size, int) else size
    return height, width, channels


def aspect_differs(height: int, width: int, target: tuple[int, int]) -> bool:
    """Whether a height x width picture has another aspect ratio than `target` (H, W), beyond `ASPECT_TOLERANCE`."""
    return abs((width / height) / (target[1] / target[0]) - 1) > ASPECT_TOLERANCE


def _resized(picture, size: tuple[int, int], resize: str):
    """`picture` at `size` (W, H) by the `data.resize` rule, bilinear (Pillow's `ImageOps.fit` / `ImageOps.pad`)."""
    from PIL import Image, ImageOps

    if resize == "crop":
        return ImageOps.fit(picture, size, Image.Resampling.BILINEAR)
    if resize == "pad":
        return ImageOps.pad(picture, size, Image.Resampling.BILINEAR, color=0)
    return picture.resize(size, Image.Resampling.BILINEAR)


def describe_changes(counts: dict[str, int], total: int, origin: str) -> tuple[str, ...]:
    """One sentence per kind of change, e.g. "photos/: 3 of 120 pictures 16-bit, reduced to 8 bits ..."."""
    return tuple(f"{origin}: {counts[key]} of {total} pictures {CHANGES[key]}." for key in CHANGES if counts.get(key))


def _decoded_from_16_bits(picture) -> bool:
    """Whether Pillow reduces this file's 16-bit colour samples to 8 bits as it decodes (16-bit RGB/RGBA PNG)."""
    tile = getattr(picture, "tile", None) or []
    return picture.mode not in SIXTEEN_BIT_MODES and bool(tile) and ";16" in str(getattr(tile[0], "args", ""))


def _to_8_bits(picture, path):
    """(an 8-bit picture, the change made or None); 16-bit colour is reduced by Pillow itself (high byte)."""
    from PIL import Image

    mode = picture.mode
    if mode in SIXTEEN_BIT_MODES or mode == "I":
        values = np.asarray(picture)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(
                f"{path}: 32-bit integer pixels {values.min()}..{values.max()} are outside 0..65535; kerastl reads 8- and "
                "16-bit pictures (and 32-bit ones holding 16-bit values): convert it to 8 or 16 bits."
            )
        return Image.fromarray((values.astype(np.uint32) >> 8).astype(np.uint8), "L"), "16-bit"
    if mode == "F":
        values = np.asarray(picture)
        if not np.isfinite(values).all() or values.min(initial=0) < 0 or values.max(initial=0) > 1:
            raise DataError(
                f"{path}: 32-bit float pixels {np.nanmin(values):g}..{np.nanmax(values):g} are not within 0..1; kerastl "
                "scales float pictures within 0..1 by 255: rescale it or save it as 8 or 16 bits."
            )
        return Image.fromarray(np.round(values * 255.0).astype(np.uint8), "L"), "float"
    return picture, None
