"""Sources in many files: which files a process reads (all of them, or in multi-host training its share), and
the sources read from several files joined into one.

A multi-host run gives process `k` of `n` the files `k, k + n, k + 2n, ...` of the sorted list (`ReadOptions.shard =
(k, n)`), so each host reads and holds only its share; a folder is shared out the same way within each class.

Example:
    >>> share(["a.parquet", "b.parquet", "c.parquet"], (1, 2), "data/*.parquet")
    ['b.parquet']
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from kerastl.data.images import ImageSource
from kerastl.data.store import ROWS_PER_COPY, ArrayStore, on_disk
from kerastl.errors import DataError


def share(files: Sequence, shard: Optional[tuple[int, int]], origin: str) -> list:
    """The files process `shard[0]` of `shard[1]` reads: every n-th from its own number; all of them for None.

    Raises:
        DataError: fewer files than processes (a process would read nothing).
    """
    if shard is None:
        return list(files)
    index, count = shard
    if len(files) < count:
        raise DataError(
            f"{origin}: {len(files)} files for {count} processes; each process reads its own files, so write at least "
            f"{count} shards (or read with fewer processes)."
        )
    return list(files)[index::count]


def join_sources(parts: Sequence[ImageSource], class_names: Sequence[str], origin: str,
                 cache_dir: Optional[Path] = None) -> ImageSource:
    """One source holding the images of `parts` in order, relabelled to `class_names` (the classes of every file);
    each image's id is `FILE: row K` (tables) or its path. With `cache_dir` the joined images are one file there,
    copied a chunk at a time, and the parts' own files are removed."""
    parts = [part.with_classes(class_names) for part in parts]
    store = ArrayStore(cache_dir)
    for part in parts:
        for start in range(0, len(part), ROWS_PER_COPY):
            store.append(np.asarray(part.images[start : start + ROWS_PER_COPY]))
    for part in parts:
        if on_disk(part.images):
            Path(part.images.filename).unlink(missing_ok=True)  # the joined file holds them now
    ids = np.concatenate([_file_ids(part) for part in parts])
    labels = None if parts[0].labels is None else np.concatenate([part.labels for part in parts])
    return ImageSource(
        store.finish(), labels, tuple(class_names), origin, tuple(name for part in parts for name in part.skipped), ids=ids,
        conversions=tuple(dict.fromkeys(note for part in parts for note in part.conversions)),
    )


def _file_ids(part: ImageSource) -> np.ndarray:
    """Where each image of a part is: its file path, or `FILE: row K` for a table row."""
    return part.image_ids() if part.ids is not None else np.char.add(f"{part.origin}: ", part.image_ids())
