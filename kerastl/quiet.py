"""Keep native (C++) log chatter of TensorFlow and TFLite off stderr where it says nothing to the user."""

from __future__ import annotations

import os
from contextlib import contextmanager


@contextmanager
def native_stderr_silenced():
    """Point file descriptor 2 at /dev/null for the block; Python exceptions still propagate normally."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
