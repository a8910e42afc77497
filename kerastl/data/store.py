"""Where decoded images (and cached backbone features) are kept: in memory (a NumPy array), or on disk
(`data.cache: disk`) as raw files, memory-mapped, so data larger than memory trains with bounded memory.

A disk store writes each chunk as it is read (`ArrayStore`: tables, features), or each row into its place in a file
of all the rows (`RowStore`: image folders, decoded by several threads at once); splitting a memory-mapped source
copies the chosen rows chunk by chunk into a new file beside it, never the whole set into memory.

Example:
    >>> store = ArrayStore(Path("runs/big/cache"))       # None keeps images in memory
    >>> for chunk in chunks:
    ...     store.append(chunk)                            # uint8 [n, H, W, C]
    >>> images = store.finish()                           # np.memmap [N, H, W, C]
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

ROWS_PER_COPY = 4096  # rows moved at a time when a split is copied between disk files
SUFFIX = ".raw"


class ArrayStore:
    """Collects array chunks of one shape and `dtype` (uint8 images, float32 features); `directory=None`
    keeps them in memory."""

    def __init__(self, directory: Optional[str | Path], dtype=np.uint8):
        self.dtype = np.dtype(dtype)
        self.parts: list[np.ndarray] = []
        self.rows = 0
        self.shape: Optional[tuple] = None
        self.path = None if directory is None else _new_file(Path(directory))
        self.handle = None if self.path is None else open(self.path, "wb")

    def append(self, images: np.ndarray) -> None:
        self.shape, self.rows = images.shape[1:], self.rows + len(images)
        if self.handle is None:
            self.parts.append(images)
        else:
            self.handle.write(np.ascontiguousarray(images, self.dtype).tobytes())

    def finish(self) -> np.ndarray:
        """The images: one array in memory, or the file mapped read-only."""
        if self.handle is None:
            return np.concatenate(self.parts).astype(self.dtype, copy=False)
        self.handle.close()
        return np.memmap(self.path, self.dtype, "r", shape=(self.rows, *self.shape))

    def discard(self) -> None:
        """Drop what was written (after a read failed)."""
        if self.handle is not None:
            self.handle.close()
            self.path.unlink(missing_ok=True)


class RowStore:
    """`count` rows of one `shape` written in any order, each into its place (`store.rows[i] = image`, from reading
    threads at once), in memory or, with `directory`, in a memory-mapped file. Unlike `ArrayStore` no chunk is copied
    into a whole at the end: reading N images holds N images, not 2N.

    Example:
        >>> store = RowStore(None, len(files), (224, 224, 3))
        >>> store.rows[7] = picture                           # uint8 [224, 224, 3]
        >>> images = store.finish(kept=[0, 1, 2, 4, 5, 6, 7])  # row 3 unreadable: the rows after it move up
    """

    def __init__(self, directory: Optional[str | Path], count: int, shape: tuple, dtype=np.uint8):
        self.path = None if directory is None else _new_file(Path(directory))
        self.rows = (np.empty((count, *shape), dtype) if self.path is None
                     else np.memmap(self.path, np.dtype(dtype), "w+", shape=(count, *shape)))

    def finish(self, kept: Sequence[int]) -> np.ndarray:
        """The rows `kept` (ascending), moved up in place over the ones left out: an array in memory, or the file
        (cut to them) mapped read-only."""
        for row, index in enumerate(kept):
            if row != index:
                self.rows[row] = self.rows[index]
        rows, shape, dtype = self.rows, self.rows.shape[1:], self.rows.dtype
        if self.path is None:
            return rows[: len(kept)]
        rows.flush()
        del rows, self.rows  # the writable map closes before the file is cut
        os.truncate(self.path, len(kept) * int(np.prod(shape)) * dtype.itemsize)
        return np.memmap(self.path, dtype, "r", shape=(len(kept), *shape))

    def discard(self) -> None:
        """Drop what was written (after a read failed)."""
        self.rows = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def on_disk(images: np.ndarray) -> bool:
    return isinstance(images, np.memmap)


def take_rows(images: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """`images[indices]`; for a disk store, copied into a new file beside it, a chunk at a time."""
    if not on_disk(images) or len(indices) == 0:
        return images[indices]
    store = ArrayStore(Path(images.filename).parent, images.dtype)
    for start in range(0, len(indices), ROWS_PER_COPY):
        store.append(np.asarray(images[np.asarray(indices[start : start + ROWS_PER_COPY])]))
    return store.finish()


def keep_only(directory: Path, kept: Iterable[np.ndarray]) -> None:
    """Delete the store files in `directory` that none of the `kept` arrays maps (intermediate splits)."""
    names = {Path(images.filename).name for images in kept if on_disk(images)}
    for path in directory.glob(f"*{SUFFIX}"):
        if path.name not in names:
            path.unlink(missing_ok=True)


def _new_file(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"array-{uuid.uuid4().hex[:12]}{SUFFIX}"
