"""The generic registry: choosable things (backbones, source kinds, export formats, ...) by name,
entries are data, looked up through one `get()` that explains unknown names.

Example:
    >>> sizes = Registry("size")
    >>> sizes.register("small", 32)
    32
    >>> sizes.get("smal")
    Traceback (most recent call last):
    kerastl.errors.ConfigError: Unknown size 'smal'. Did you mean 'small'? Expected one of: small.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Generic, TypeVar

from kerastl.errors import ConfigError

T = TypeVar("T")
REGISTRIES: dict[str, "Registry"] = {}  # kind -> registry; `import kerastl` creates those a config names


def registry_of(kind: str) -> "Registry":
    """The registry of `kind` (e.g. "backbone"), created when its module was imported (see `kerastl/__init__.py`)."""
    return REGISTRIES[kind]


class Registry(Generic[T]):
    """A name → entry table that explains unknown names. The first registry of each kind is listed in
    `REGISTRIES`, where code that must not import the registry's module (the config checks) finds it."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        REGISTRIES.setdefault(kind, self)

    def register(self, name: str, entry: T) -> T:
        if name in self._entries:
            raise ValueError(f"{self.kind} {name!r} is registered twice.")
        self._entries[name] = entry
        return entry

    def get(self, name: str) -> T:
        key = str(name).lower().replace("-", "_")
        if key in self._entries:
            return self._entries[key]
        close = difflib.get_close_matches(key, self._entries, n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"Unknown {self.kind} {name!r}.{hint} Expected one of: {', '.join(self._entries)}.")

    def values(self) -> list[T]:
        """The entries, in registration order."""
        return list(self._entries.values())

    def names(self, pattern: str = "*") -> list[str]:
        return [name for name in self._entries if fnmatch.fnmatch(name, pattern)]
