"""Readers that turn pixel tables, image folders, arrays and built-in sets into an `ImageSource`.

Every reader returns compact `uint8` images of shape [N, H, W, C], integer labels and the class
names, and explains bad input in one line naming the file, row, column or value.

Example:
    >>> src = read_source("builtin:digits")
    >>> src.images.shape, src.images.dtype, src.class_names[:3]
    ((1797, 8, 8, 1), dtype('uint8'), ('0', '1', '2'))
"""

from __future__ import annotations

import functools
import gzip
import math
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import pandas as pd

from kerastl.data.builtin import read_builtin
from kerastl.data.images import ImageSource
from kerastl.data.pixels import PixelScale
from kerastl.data.pictures import IMAGE_SUFFIXES, decode_picture, describe_changes, picture_shape
from kerastl.data.shards import join_sources, share
from kerastl.data.storage import data_path, is_pattern, is_uri, matching_files
from kerastl.data.store import ArrayStore, RowStore
from kerastl.errors import ConfigError, DataError, KerastlError
from kerastl.progress import progress_bar
from kerastl.registry import Registry



@dataclass(frozen=True)
class ReadOptions:
    """How sources are read: the `data.*` reading keys of a config, with the same defaults.

    Attributes:
        label_column: name of the label column in pixel tables.
        image_shape: [H, W] or [H, W, C] of pixel tables; inferred from the pixel count if None.
        pixel_layout: "hwc" or "chw": the order of pixels in a table row.
        require_labels: whether a table without the label column is an error.
        chunk_size: rows read at a time from Parquet and from CSVs that need pandas.
        out_of_range: "error" or "clip" for pixel values outside the pixel scale's range.
        pixel_scale: "auto", 255 or 1: what a table's pixel values are scaled from (`kerastl.data.pixels`).
        image_size: one side (square) or (H, W) image-folder pictures are resized to.
        resize: how image-folder pictures of another aspect ratio meet `image_size`: "squash", "crop" or "pad"
            (`kerastl.data.pictures.decode_picture`).
        channels: 1 or 3, the channels image-folder pictures are converted to.
        bad_images: "error" or "skip" for unreadable files in image folders.
        progress: draw a progress bar on stderr while reading a table.
        label_separator: multi-label tables: the label column holds several labels joined by this
            string (e.g. "cat|dog"); None for one label per row.
        cache_dir: tables and image folders: write the images to raw files in this folder as they are
            read and return them memory-mapped (bounded memory); None holds them in memory.
        shard: (process index, process count): a glob of table shards or a folder is read only in this process's
            share of its files (`kerastl.data.shards.share`; multi-host training); None reads every file.
    """

    label_column: str = "label"
    image_shape: Optional[Sequence[int]] = None
    pixel_layout: str = "hwc"
    require_labels: bool = True
    chunk_size: int = 10_000
    out_of_range: str = "error"
    pixel_scale: Union[str, int] = "auto"
    image_size: Optional[int | tuple[int, int]] = None
    resize: str = "squash"
    channels: int = 3
    bad_images: str = "error"
    progress: bool = False
    label_separator: Optional[str] = None
    cache_dir: Optional[Path] = None
    shard: Optional[tuple[int, int]] = None


@dataclass(frozen=True)
class SourceKind:
    """One kind of data source, read from `NAME:LOCATION` or from a bare path it recognises.

    Attributes:
        name: the scheme, e.g. "csv".
        read: `read(location, options)` -> `ImageSource`.
        suffixes: bare paths ending in one of these are this kind (lower case, e.g. ".csv.gz").
        directory: a bare path that is a directory is this kind.
        table: one image per row of pixel values (`data.pixel_layout` applies; `predict` reads every row).
        multi_label: can hold several labels per image (`data.label_separator`).
    """

    name: str
    read: Callable[[str, ReadOptions], ImageSource]
    suffixes: tuple[str, ...] = ()
    directory: bool = False
    table: bool = False
    multi_label: bool = False


SOURCE_KINDS: Registry[SourceKind] = Registry("data source")


def source_kind(spec: str) -> tuple[SourceKind, str]:
    """The kind of source `spec` names and its location: `scheme:location`, or a bare path by its suffix.

    Raises:
        ConfigError: an unknown scheme, or a bare path no kind recognises.
    """
    scheme, sep, location = spec.partition(":")
    if sep and len(scheme) > 1 and not is_uri(spec):  # a Windows drive letter is not a scheme, nor gs:// or s3://
        return SOURCE_KINDS.get(scheme), location
    path = data_path(spec)
    for kind in SOURCE_KINDS.values():
        if (kind.directory and path.is_dir()) or (kind.suffixes and path.name.lower().endswith(kind.suffixes)):
            return kind, spec
    if not path.exists():
        raise DataError(f"{spec}: no such file or folder.")
    suffixes = ", ".join(suffix for kind in SOURCE_KINDS.values() for suffix in kind.suffixes)
    raise ConfigError(
        f"Cannot tell what kind of data {spec!r} is: write SCHEME:PATH with a scheme among "
        f"{', '.join(SOURCE_KINDS.names())}, or a folder or a file ending in {suffixes}."
    )


def in_many_files(spec: str) -> bool:
    """Whether `spec` names data in many files (a folder, or a glob of table shards), which processes can share out."""
    try:
        kind, location = source_kind(spec)
    except KerastlError:
        return False
    return kind.directory or (kind.table and is_pattern(location))


def is_table(spec: str) -> bool:
    """Whether `spec` names a pixel table (one image per row), even when the file is gone; False for
    anything that is not a recognisable source."""
    try:
        return source_kind(spec)[0].table
    except KerastlError:
        return False


def read_source(spec: str, options: Optional[ReadOptions] = None, **changes) -> ImageSource:
    """Read the source named by `scheme:location`, e.g. `csv:train.csv`, `folder:photos/`, `builtin:digits`.

    A bare path is read by its suffix (`.csv`, `.csv.gz`, `.parquet`) or as a folder.

    Args:
        spec: `builtin:NAME`, `csv:PATH`, `parquet:PATH`, `folder:PATH`, or a bare path.
        options: how to read it (`ReadOptions`); default `ReadOptions()`.
        **changes: `ReadOptions` fields to change, e.g. `label_column="kind"`.

    Returns:
        The `ImageSource`.

    Raises:
        DataError: the source is missing, empty or malformed. ConfigError: an unknown kind of source.

    Example:
        >>> read_source("builtin:digits").images.shape
        (1797, 8, 8, 1)
    """
    options = replace(options or ReadOptions(), **changes)
    kind, location = source_kind(spec)
    if options.label_separator is not None and not kind.multi_label:
        multi = ", ".join(f"{k.name}:" for k in SOURCE_KINDS.values() if k.multi_label)
        raise DataError(f"{spec}: multi-label data needs a label column, so a {multi} table (or kerastl.from_arrays).")
    if kind.table and is_pattern(location):
        return _read_shards(kind, location, options)
    return kind.read(location, options)


def _read_shards(kind: SourceKind, pattern: str, options: ReadOptions) -> ImageSource:
    """The table shards `pattern` matches (this process's share of them, with `options.shard`) as one source, in
    file-name order; its classes are those of every file read."""
    files = share(matching_files(pattern), options.shard, pattern)
    parts = [kind.read(str(file), options) for file in files]
    names = sorted({name for part in parts for name in part.class_names}, key=_label_sort_key)
    return join_sources(parts, names, pattern, options.cache_dir)


def from_arrays(
    images, labels=None, class_names: Optional[Sequence[str]] = None, origin: str = "arrays", pixel_scale="auto"
) -> ImageSource:
    """An `ImageSource` from in-memory arrays.

    Args:
        images: array [N, H, W] or [N, H, W, C]: uint8, or numbers read by `pixel_scale`.
        labels: array [N] of class indices (with `class_names`) or of label values; a 0/1 array
            [N, K] for multi-label data (names default to "0".."K-1"); or None.
        class_names: names of the class indices; inferred from `labels` when None.
        pixel_scale: "auto", 255 or 1: non-uint8 values are 0..255 (rounded) or 0..1 floats (times 255);
            "auto" takes 0..1 when all values are within 0..1 and some are fractional (see `kerastl.data.pixels`).

    Raises:
        DataError: a wrong shape, values outside the scale (NaN included), or labels that do not fit.

    Example:
        >>> src = from_arrays(np.zeros((4, 8, 8), "uint8"), [0, 1, 0, 1])
        >>> src.image_shape, src.class_names
        ((8, 8, 1), ('0', '1'))
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4):
        raise DataError(f"{origin}: images must have shape [N, H, W] or [N, H, W, C] with C in 1, 3, 4; got {images.shape}.")
    conversions = ()
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.number) or np.isnan(images).any():
            raise DataError(f"{origin}: images must hold pixel values (numbers, no NaN); got dtype {images.dtype}.")
        scale = PixelScale(pixel_scale, origin=origin)
        flat = images.reshape(len(images), -1).astype(np.float64)
        images = scale.to_uint8(flat, first_row=0, columns=range(flat.shape[1])).reshape(images.shape)
        conversions = scale.notes()
    if labels is None:
        return ImageSource(images, None, tuple(class_names or ()), origin, conversions=conversions)
    labels = np.asarray(labels)
    if len(labels) != len(images):
        raise DataError(f"{origin}: {len(images)} images but {len(labels)} labels.")
    if labels.ndim == 2:
        names = tuple(map(str, class_names)) if class_names is not None else tuple(str(i) for i in range(labels.shape[1]))
        if len(names) != labels.shape[1] or not np.isin(labels, (0, 1)).all():
            raise DataError(f"{origin}: multi-label labels must be 0/1 with one column per class ({len(names)} names).")
        return ImageSource(images, labels.astype(np.uint8), names, origin, conversions=conversions)
    if class_names is None:
        names, encoded = encode_labels(labels)
        return ImageSource(images, encoded, names, origin, conversions=conversions)
    if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= len(class_names):
        raise DataError(f"{origin}: labels must be class indices 0..{len(class_names) - 1} when class_names are given.")
    return ImageSource(images, labels.astype(np.int64), tuple(map(str, class_names)), origin, conversions=conversions)


def from_dataframe(
    frame: pd.DataFrame,
    label_column: str = "label",
    image_shape: Optional[Sequence[int]] = None,
    pixel_layout: str = "hwc",
    require_labels: bool = True,
    out_of_range: str = "error",
    origin: str = "DataFrame",
    pixel_scale="auto",
) -> ImageSource:
    """An `ImageSource` from a DataFrame of pixel rows (a label column plus one column per pixel), its pixel
    values read by `pixel_scale` ("auto", 255 or 1, as `data.pixel_scale`).

    Example:
        >>> frame = pd.DataFrame(np.zeros((2, 5), "uint8"), columns=["label", "p0", "p1", "p2", "p3"])
        >>> from_dataframe(frame).image_shape
        (2, 2, 1)
    """
    options = ReadOptions(
        label_column=label_column, image_shape=image_shape, pixel_layout=pixel_layout, require_labels=require_labels,
        out_of_range=out_of_range, pixel_scale=pixel_scale,
    )
    return _read_pixel_chunks([frame], list(frame.columns), origin, options)


def encode_labels(values: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """Class names (numeric order for numbers, else alphabetical) and each value's class index."""
    if np.issubdtype(values.dtype, np.integer):  # the usual labels: sorted numerically without a Python loop
        unique, index = np.unique(values, return_inverse=True)
        return tuple(str(v) for v in unique.tolist()), index.reshape(-1).astype(np.int64)
    as_text = [_label_text(v) for v in values]
    unique = sorted(set(as_text), key=_label_sort_key)
    index = {name: i for i, name in enumerate(unique)}
    return tuple(unique), np.array([index[v] for v in as_text], dtype=np.int64)


def encode_label_sets(values: np.ndarray, separator: str) -> tuple[tuple[str, ...], np.ndarray]:
    """Class names and a multi-hot [N, K] uint8 array from labels like "cat|dog" (an empty cell: no class).

    Example:
        >>> encode_label_sets(np.array(["cat|dog", "dog"]), "|")
        (('cat', 'dog'), array([[1, 1], [0, 1]], dtype=uint8))
    """
    sets = [[part.strip() for part in _label_text(v).split(separator) if part.strip()] for v in values]
    names = tuple(sorted({name for labels in sets for name in labels}, key=_label_sort_key))
    index = {name: i for i, name in enumerate(names)}
    multi_hot = np.zeros((len(sets), len(names)), np.uint8)
    for row, labels in enumerate(sets):
        multi_hot[row, [index[name] for name in labels]] = 1
    return names, multi_hot


def infer_image_shape(num_pixels: int, image_shape: Optional[Sequence[int]], pixel_layout: str, origin: str) -> tuple:
    """(H, W, C) for a row of `num_pixels` values: the given shape checked, or a square gray/RGB guess.

    `image_shape` is the image's shape, [H, W] or [H, W, C], whatever order the row stores the pixels
    in (`pixel_layout`). Channels written first, as in [3, 32, 32], are read as the same image when
    that is the only reading (1 or 3 in the first place only).
    """
    if image_shape is not None:
        shape = _image_hwc(tuple(int(d) for d in image_shape), origin)
        if math.prod(shape) != num_pixels:
            raise DataError(
                f"{origin}: rows have {num_pixels} pixel values but image_shape {list(image_shape)} needs {math.prod(shape)}."
            )
        return shape
    for channels in (1, 3):
        side = math.isqrt(num_pixels // channels)
        if side * side * channels == num_pixels:
            return (side, side, channels)
    raise DataError(
        f"{origin}: {num_pixels} pixel values per row fit no square gray or RGB image; set data.image_shape [H, W, C]."
    )


def _image_hwc(shape: tuple, origin: str) -> tuple:
    """(H, W, C) from [H, W], [H, W, C], or unambiguously channel-first [C, H, W]."""
    if len(shape) == 2:
        return (*shape, 1)
    channels_first, channels_last = shape[0] in (1, 3), shape[-1] in (1, 3)
    if channels_first and not channels_last:
        return (shape[1], shape[2], shape[0])
    if channels_first and channels_last and shape[0] != shape[-1]:
        raise DataError(
            f"{origin}: data.image_shape {list(shape)} reads two ways: {shape[0]}×{shape[1]} pixels with {shape[2]} "
            f"channel(s) [H, W, C], or {shape[1]}×{shape[2]} with {shape[0]} [C, H, W]; image_shape means [H, W, C], "
            "so write the image's height, width and channels in that order."
        )
    return shape


def _label_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _label_sort_key(name: str):
    try:
        return (0, float(name), name)
    except ValueError:
        return (1, 0.0, name)


def _read_pixel_chunks(chunks: Iterable[pd.DataFrame], columns: list, origin: str, options: ReadOptions) -> ImageSource:
    layout = _table_layout(columns, origin, options)
    label_column = options.label_column
    scale = PixelScale(options.pixel_scale, options.out_of_range, origin)

    def checked_rows():
        start = 0
        for chunk in chunks:
            pixels = _checked_pixels(chunk[layout.pixel_columns], start, origin, scale)
            labels = None
            if layout.has_labels:
                labels = chunk[label_column]
                if labels.isna().any():
                    row = start + int(np.flatnonzero(labels.isna().to_numpy())[0]) + 1
                    raise DataError(f"{origin}: row {row}, column {label_column!r}: empty label.")
                labels = labels.to_numpy()
            yield pixels, labels
            start += len(chunk)

    return _assemble(checked_rows(), layout, origin, options, scale)


@dataclass(frozen=True)
class _TableLayout:
    """Where a pixel table's label and pixels are, and the image shape its rows make."""

    has_labels: bool
    pixel_columns: list
    shape: tuple
    pixel_layout: str


def _table_layout(columns, origin: str, options: ReadOptions) -> _TableLayout:
    label_column = options.label_column
    has_labels = label_column in columns
    if options.require_labels and not has_labels:
        shown = ", ".join(map(str, columns[:6])) + (", ..." if len(columns) > 6 else "")
        raise DataError(f"{origin}: no label column {label_column!r}; the columns are: {shown}. Set data.label_column.")
    pixel_columns = [c for c in columns if c != label_column] if has_labels else list(columns)
    if not pixel_columns:
        raise DataError(f"{origin}: no pixel columns besides {label_column!r}.")
    shape = infer_image_shape(len(pixel_columns), options.image_shape, options.pixel_layout, origin)
    return _TableLayout(has_labels, pixel_columns, shape, options.pixel_layout)


def _assemble(
    rows: Iterable[tuple], layout: _TableLayout, origin: str, options: ReadOptions, scale: Optional[PixelScale] = None
) -> ImageSource:
    """An `ImageSource` from (uint8 pixels [n, P], label values or None) chunks, noting what `scale` did."""
    store, label_parts = ArrayStore(options.cache_dir), []
    try:
        for pixels, labels in rows:
            store.append(_to_images(pixels, layout.shape, layout.pixel_layout))
            if labels is not None:
                label_parts.append(labels)
        if store.rows == 0:
            raise DataError(f"{origin}: no data rows (header only).")
    except BaseException:
        store.discard()
        raise
    images = store.finish()
    conversions = scale.notes() if scale is not None else ()
    if not layout.has_labels:
        return ImageSource(images, None, (), origin, conversions=conversions)
    values = np.concatenate(label_parts)
    separator = options.label_separator
    names, labels = encode_label_sets(values, separator) if separator else encode_labels(values)
    return ImageSource(images, labels, names, origin, conversions=conversions)


def _checked_pixels(frame: pd.DataFrame, start: int, origin: str, scale: PixelScale) -> np.ndarray:
    if scale.integers_pass and all(pd.api.types.is_integer_dtype(dtype) for dtype in frame.dtypes):  # the usual table
        values = frame.to_numpy()
        if values.min(initial=0) >= 0 and values.max(initial=0) <= 255:
            scale.chosen = 255
            return values.astype(np.uint8)
    numeric = frame
    if not all(pd.api.types.is_numeric_dtype(dtype) for dtype in frame.dtypes):
        numeric = frame.apply(pd.to_numeric, errors="coerce")
    values = numeric.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        row, col = (int(i) for i in np.argwhere(bad)[0])
        cell = frame.iat[row, col]
        if pd.isna(cell) or str(cell).strip() == "":
            what = "empty cell"
        else:
            what = f"non-numeric value {cell!r}" if isinstance(cell, str) else f"value {float(cell):g} is not a finite number"
        raise DataError(f"{origin}: row {start + row + 1}, column {frame.columns[col]!r}: {what}.")
    return scale.to_uint8(values, start + 1, list(frame.columns))


def _to_images(pixels: np.ndarray, shape: tuple, pixel_layout: str) -> np.ndarray:
    h, w, c = shape
    if pixel_layout == "chw":
        return pixels.reshape(-1, c, h, w).transpose(0, 2, 3, 1).copy()
    return pixels.reshape(-1, h, w, c)


CSV_SEPARATORS = (",", ";", "\t")  # the ones spreadsheets and locales write; the header line decides


def _read_csv(location: str, options: ReadOptions) -> ImageSource:
    """Read a pixel CSV as people write it: comma, semicolon or tab separated, with or without a UTF-8
    byte-order mark, CRLF line ends, blank lines, plain or gzip-compressed (`.gz`).

    A plain integer table goes through pyarrow's multithreaded parser straight to `uint8`; anything
    else (0..1 floats, values outside 0..255, gaps, text, ragged rows) through pandas, which reads
    what can be read and names the row and column of what cannot.
    """
    path = _existing_file(location)
    separator, columns = _csv_header(path)
    layout = _table_layout(columns, str(path), options)
    try:
        if options.pixel_scale == 1:  # integers 0/1 to scale: the tolerant reader does it
            raise _NotPlainTable
        with _csv_bytes(path) as (raw, text), progress_bar(f"reading {path.name}", path.stat().st_size, options.progress) as advance:
            rows = _arrow_csv_rows(text, separator, columns, layout, options.label_column)
            return _assemble(_after_each(rows, lambda: advance(raw.tell())), layout, str(path), options)
    except _NotPlainTable:
        pass
    read = functools.partial(pd.read_csv, sep=separator, encoding="utf-8-sig", skipinitialspace=True)
    with _csv_bytes(path) as (raw, text), progress_bar(f"reading {path.name}", path.stat().st_size, options.progress) as advance:
        chunks = read(text, chunksize=options.chunk_size)
        return _read_pixel_chunks(_guard_ragged(chunks, path, lambda chunk: advance(raw.tell())), columns, str(path), options)


def _csv_header(path: Path) -> tuple[str, list]:
    """(separator, column names as pandas reads them)."""
    try:
        with _csv_bytes(path) as (raw, text):
            header = text.readline().decode("utf-8-sig", errors="replace")
            text.seek(0)
            separator = max(CSV_SEPARATORS, key=header.count)
            columns = list(pd.read_csv(text, sep=separator, encoding="utf-8-sig", skipinitialspace=True, nrows=0).columns)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty.") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({str(exc).strip()}).") from None
    return separator, columns


class _NotPlainTable(Exception):
    """The fast reader met something only the tolerant reader reads or explains."""


ARROW_BLOCK_BYTES = 4 << 20  # measured: 4 MiB blocks parse fastest here (1 MiB and 64 MiB are 1.3x and 2x slower)


def _arrow_csv_rows(text, separator: str, columns: list, layout: "_TableLayout", label_column: str):
    """(uint8 pixels, label values) per block of a CSV whose pixels are all integers in 0..255."""
    import pyarrow as pa
    import pyarrow.csv as pa_csv

    names = [str(c) for c in columns]
    pixel_names = [str(c) for c in layout.pixel_columns]
    try:
        batches = pa_csv.open_csv(
            text,
            read_options=pa_csv.ReadOptions(column_names=names, skip_rows=1, block_size=ARROW_BLOCK_BYTES),
            parse_options=pa_csv.ParseOptions(delimiter=separator),
            convert_options=pa_csv.ConvertOptions(
                column_types={name: pa.uint8() for name in pixel_names}, strings_can_be_null=True
            ),
        )
        for batch in batches:
            pixel_arrays = [batch.column(name) for name in pixel_names]
            if any(array.null_count for array in pixel_arrays):
                raise _NotPlainTable
            labels = None
            if layout.has_labels:
                label_array = batch.column(label_column)
                plain = pa.types.is_integer(label_array.type) or pa.types.is_string(label_array.type)
                if label_array.null_count or not plain:
                    raise _NotPlainTable
                labels = label_array.to_numpy(zero_copy_only=False)
            yield np.column_stack([array.to_numpy() for array in pixel_arrays]), labels
    except (pa.ArrowException, OSError, EOFError):  # not a uint8, a ragged row, not text, a truncated .gz
        raise _NotPlainTable from None


def _after_each(items: Iterable, callback) -> Iterator:
    for item in items:
        yield item
        callback()


@contextmanager
def _csv_bytes(path: Path):
    """(the file's raw handle, for progress by bytes on disk; the handle to parse, decompressed for `.gz`)."""
    with path.open("rb") as raw:
        if path.suffix.lower() == ".gz":
            with gzip.GzipFile(fileobj=raw) as text:
                yield raw, text
        else:
            yield raw, raw


def _guard_ragged(chunks: Iterator[pd.DataFrame], path: Path, after_chunk) -> Iterator[pd.DataFrame]:
    try:
        for chunk in chunks:
            if not isinstance(chunk.index, pd.RangeIndex):  # pandas took the first field of every row as an index
                raise DataError(
                    f"{path}: ragged rows: the rows hold one field more than the header's {len(chunk.columns)} names, so "
                    "every value would shift by one column; add the missing name to the header or remove the extra field."
                )
            yield chunk
            after_chunk(chunk)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: ragged rows: {str(exc).strip()}") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:  # a truncated .gz, bytes that are not text
        raise DataError(f"{path}: not a readable CSV file ({str(exc).strip()}).") from None


def _read_parquet(location: str, options: ReadOptions) -> ImageSource:
    import pyarrow.parquet as pq

    path = _existing_file(location)
    try:
        table_file = pq.ParquetFile(path if isinstance(path, Path) else path.open("rb"))
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise DataError(f"{path}: not a readable Parquet file ({exc}).") from None
    columns = list(table_file.schema_arrow.names)
    with progress_bar(f"reading {path.name}", table_file.metadata.num_rows, options.progress) as advance:

        def batches():
            rows_read = 0
            for batch in table_file.iter_batches(batch_size=options.chunk_size):
                frame = batch.to_pandas()
                yield frame
                rows_read += len(frame)
                advance(rows_read)

        return _read_pixel_chunks(batches(), columns, str(path), options)


PICTURES_PER_TASK = 32  # pictures a reading thread decodes per task: fewer hand-offs to the main thread


def _read_folder(location: str, options: ReadOptions) -> ImageSource:
    root, bad_images, channels = data_path(location), options.bad_images, options.channels
    if not root.is_dir():
        raise DataError(f"{root}: no such folder.")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"{root}: no class sub-folders; expected one folder per class holding images.")
    files, labels, skipped = [], [], []
    for index, folder in enumerate(class_dirs):
        found = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
        images = [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES]
        others = [p for p in found if p.suffix.lower() not in IMAGE_SUFFIXES]
        skipped += [str(p) for p in others]
        if others and bad_images == "error":
            raise DataError(
                f"{others[0]}: not an image file ({', '.join(IMAGE_SUFFIXES)}); "
                "remove it or set data.bad_images: skip."
            )
        if not images:
            raise DataError(f"{folder}: class folder holds no images ({', '.join(IMAGE_SUFFIXES)}).")
        images = share(images, options.shard, str(folder))
        files += images
        labels += [index] * len(images)
    size = options.image_size or 224
    store, keep, changes = RowStore(options.cache_dir, len(files), picture_shape(size, channels)), [], {}

    def decode(path):
        try:
            return decode_picture(path, size, channels, options.resize)
        except DataError:
            if bad_images == "error":
                raise
            return None

    def decode_many(start):  # in a worker thread: each picture into its row; the changes of each (None: skipped)
        changed = []
        for index, path in enumerate(files[start : start + PICTURES_PER_TASK], start):
            picture, picture_changes = decode(path) or (None, None)
            if picture is not None:
                store.rows[index] = picture
            changed.append(picture_changes)
        return changed

    starts = range(0, len(files), PICTURES_PER_TASK)
    try:
        with ThreadPoolExecutor() as pool, progress_bar(f"reading {root.name}", len(files), options.progress) as advance:
            for start, changed in zip(starts, pool.map(decode_many, starts)):
                for index, picture_changes in enumerate(changed, start):
                    if picture_changes is None:
                        skipped.append(str(files[index]))
                        continue
                    keep.append(index)
                    for change in picture_changes:
                        changes[change] = changes.get(change, 0) + 1
                advance(start + len(changed))
        if not keep:
            raise DataError(f"{root}: none of the {len(files)} image files could be read.")
    except BaseException:
        store.discard()
        raise
    images = store.finish(keep)
    labels = np.array(labels, dtype=np.int64)[keep]
    paths = np.array([str(files[index]) for index in keep])
    return ImageSource(images, labels, tuple(p.name for p in class_dirs), str(root), tuple(skipped), ids=paths,
                       conversions=describe_changes(changes, len(keep), str(root)))


def _existing_file(location: str):
    path = data_path(location)
    if not path.is_file():
        raise DataError(f"{path}: no such file.")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty.")
    return path


for _kind in (
    SourceKind("csv", _read_csv, suffixes=(".csv", ".csv.gz", ".tsv"), table=True, multi_label=True),
    SourceKind("parquet", _read_parquet, suffixes=(".parquet", ".pq"), table=True, multi_label=True),
    SourceKind("builtin", lambda name, options: read_builtin(name), table=True),  # served as pixel rows too
    SourceKind("folder", _read_folder, directory=True),
):
    SOURCE_KINDS.register(_kind.name, _kind)
