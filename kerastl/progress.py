"""The progress bar long reads draw on stderr (click's), kept at the edge: readers only call `advance(done)`.

Example:
    >>> with progress_bar("reading train.csv", total=1_000_000, enabled=True) as advance:
    ...     advance(500_000)   # how much is done so far (bytes, rows or files)
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Callable, Iterator


@contextmanager
def progress_bar(label: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    """Yield `advance(done)`; draws a click progress bar labelled `label` on stderr when `enabled`."""
    if not enabled:
        yield lambda done: None
        return
    import click

    with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
        yield lambda done: bar.update(done - bar.pos)
