"""Keep log chatter of TensorFlow and TFLite off stderr where it says nothing to the user."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager

RETRACING_NOTE = "triggered tf.function retracing"


class _NoRetracingNotes(logging.Filter):
    """Drops TensorFlow's "N out of the last M calls ... triggered tf.function retracing" warning. TensorFlow counts
    the traces of every Keras model's predict function together (they share one Python function), so a run that
    predicts with several models (frozen features, calibration logits, held-out splits, evaluation) trips it
    though each model traces once per input shape; it asks the user to change code they do not have."""

    def filter(self, record: logging.LogRecord) -> bool:
        return RETRACING_NOTE not in record.getMessage()


def hide_retracing_notes() -> None:
    """Install the filter on TensorFlow's Python logger (once)."""
    logger = logging.getLogger("tensorflow")
    if not any(isinstance(f, _NoRetracingNotes) for f in logger.filters):
        logger.addFilter(_NoRetracingNotes())


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
