"""Where data files live: a local path, or a URI (`gs://`, `s3://`, `hdfs://`, `file://`) read through pyarrow's
file systems (`pyarrow.fs`) — the same few operations either way, so every reader takes both.

`data_path` gives a `pathlib.Path` for a local path and a `RemotePath` (the subset of `Path` the readers use: name,
suffix, `/`, is_file, is_dir, exists, stat().st_size, open, iterdir, glob, rglob) for a URI. `matching_files` expands a
pattern in the last part of a location (`data/train-*.parquet`).

Example:
    >>> path = data_path("gs://my-bucket/train.parquet")   # pyarrow's GcsFileSystem; credentials as pyarrow finds them
    >>> path.is_file(), path.stat().st_size
"""

from __future__ import annotations

import fnmatch
import io
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Optional, Union

from kerastl.errors import DataError

URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
PATTERN_CHARS = "*?["  # a location holding one of these names several files (fnmatch rules)


def is_uri(location: str) -> bool:
    """Whether `location` is a URI (`scheme://...`) rather than a local path."""
    return bool(URI.match(str(location)))


def is_pattern(location: str) -> bool:
    """Whether the last part of `location` is a pattern naming several files (`train-*.parquet`)."""
    return any(char in str(location).rstrip("/").rsplit("/", 1)[-1] for char in PATTERN_CHARS)


def data_path(location: Union[str, Path]) -> Union[Path, "RemotePath"]:
    """A `Path` for a local path, a `RemotePath` for a URI."""
    return RemotePath.from_uri(str(location)) if is_uri(str(location)) else Path(location)


def matching_files(location: str) -> list:
    """The files whose names match the pattern in the last part of `location`, sorted by name.

    Raises:
        DataError: no file matches.
    """
    parent, _, pattern = str(location).rstrip("/").rpartition("/")
    folder = data_path(parent or ".")
    files = sorted((path for path in folder.glob(pattern) if path.is_file()), key=str) if folder.is_dir() else []
    if not files:
        raise DataError(f"{location}: no file matches.")
    return files


@dataclass(frozen=True)
class RemotePath:
    """A file or folder on a pyarrow file system, written back as the URI it came from.

    Example:
        >>> RemotePath.from_uri("file:///data/train.csv").name
        'train.csv'
    """

    filesystem: Any
    path: str  # on the file system: "bucket/key" for object stores, "/abs/path" for file://
    scheme: str  # "gs://", "s3://", "file://"...
    kind: Optional[str] = field(default=None, compare=False)  # "file" / "directory", when a listing told us

    @classmethod
    def from_uri(cls, uri: str) -> "RemotePath":
        import pyarrow.fs as pafs

        try:
            filesystem, path = pafs.FileSystem.from_uri(uri)
        except Exception as exc:  # pyarrow raises several types for an unknown scheme or a file system not built in
            raise DataError(f"{uri}: cannot open this location through pyarrow's file systems ({exc}).") from None
        return cls(filesystem, path.rstrip("/") or path, URI.match(uri).group(0))

    def __str__(self) -> str:
        return self.scheme + self.path

    def __lt__(self, other: "RemotePath") -> bool:  # sorted() orders folders and files by path, as for Path
        return self.path < other.path

    def __truediv__(self, name: str) -> "RemotePath":
        return RemotePath(self.filesystem, f"{self.path.rstrip('/')}/{name}", self.scheme)

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    def _kind(self) -> str:
        return self.kind or _kind_name(self.filesystem.get_file_info(self.path).type)

    def is_file(self) -> bool:
        return self._kind() == "file"

    def is_dir(self) -> bool:
        return self._kind() == "directory"

    def exists(self) -> bool:
        return self._kind() != "missing"

    def stat(self) -> SimpleNamespace:
        return SimpleNamespace(st_size=self.filesystem.get_file_info(self.path).size)

    def open(self, mode: str = "rb"):
        if mode != "rb":
            raise ValueError("kerastl reads remote data; it does not write there.")
        return io.BufferedReader(self.filesystem.open_input_file(self.path))  # adds readline, which pandas needs

    def _listing(self, recursive: bool) -> Iterator["RemotePath"]:
        import pyarrow.fs as pafs

        for info in self.filesystem.get_file_info(pafs.FileSelector(self.path, recursive=recursive)):
            yield RemotePath(self.filesystem, info.path, self.scheme, _kind_name(info.type))

    def iterdir(self) -> Iterator["RemotePath"]:
        return self._listing(recursive=False)

    def glob(self, pattern: str) -> Iterator["RemotePath"]:
        return (path for path in self._listing(recursive=False) if fnmatch.fnmatch(path.name, pattern))

    def rglob(self, pattern: str) -> Iterator["RemotePath"]:
        return (path for path in self._listing(recursive=True) if fnmatch.fnmatch(path.name, pattern))


def _kind_name(file_type) -> str:
    import pyarrow.fs as pafs

    return {pafs.FileType.File: "file", pafs.FileType.Directory: "directory"}.get(file_type, "missing")
