"""Starting TensorFlow in a `kerastl` command's process: quietly, and in the process `kerastl.cli.main` owns,
without the work that process never needs.

Example:
    >>> import_tensorflow(owns_process=False)  # as in a notebook: only the C++ chatter is kept off stderr
"""

from __future__ import annotations

import gc
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

from kerastl.quiet import native_stderr_silenced

# Packages that importing TensorFlow and Keras imports only because they are installed, for features a command's
# process never uses: matplotlib for `keras.visualization` (kerastl draws in a child process,
# `kerastl.analysis.drawing`); scikit-learn for `keras.wrappers` (a run's scikit-learn calls go to that child,
# `kerastl.offload`; a command that needs scikit-learn itself imports it when it does); JAX for TFLite's converter
# of JAX functions (Keras on the JAX backend, `compute.distribute: multihost`, does need it and keeps it).
UNUSED_BY_THE_IMPORT = ("matplotlib", "sklearn")
UNUSED_BY_THE_IMPORT_ON_TENSORFLOW = ("jax",)


def import_tensorflow(owns_process: bool) -> None:
    """Import TensorFlow (and Keras with it) and start its devices with their C++ chatter (CUDA probes, absl
    notices) kept off stderr. The devices start here, not at the first operation.

    `owns_process`: the process ends with the command (`kerastl.cli.main`). Then
    - the packages in `UNUSED_BY_THE_IMPORT` are kept out of the import (with matplotlib and JAX left out,
      importing TensorFlow and starting its devices took 3.2–3.9 s against 4.6–5.1 s here; with scikit-learn
      also left out, 2.9–3.1 s against 3.7–4.3 s); they import as usual afterwards;
    - Python's cycle collector is off during the import and the objects it leaves are then frozen
      (`gc.freeze`): the import makes about 760,000 objects that live until the process ends, and collecting
      among them while they are made and at every later full collection took 1.7 s of that run (resident
      memory 844 MB instead of 841 MB). The collector is on again for the command's own work.
    A process that goes on after the command (click's test runner, a notebook) imports as it would without kerastl.
    """
    paused = owns_process and gc.isenabled()
    if paused:
        gc.disable()
    kept_out = _unused_by_the_import() if owns_process else ()
    try:
        with native_stderr_silenced(), _kept_out_of_imports(kept_out):
            import tensorflow

            tensorflow.config.list_physical_devices()
    finally:
        if paused:
            gc.freeze()
            gc.enable()


def _unused_by_the_import() -> tuple[str, ...]:
    """`UNUSED_BY_THE_IMPORT`, with JAX when Keras is to run on TensorFlow."""
    on_tensorflow = keras_backend_name() == "tensorflow"
    return UNUSED_BY_THE_IMPORT + (UNUSED_BY_THE_IMPORT_ON_TENSORFLOW if on_tensorflow else ())


def keras_backend_name() -> str:
    """The backend Keras will load, found as Keras finds it: `KERAS_BACKEND`, else "backend" in the
    `keras.json` of `KERAS_HOME` (default `~/.keras`), else tensorflow."""
    if "KERAS_BACKEND" in os.environ:
        return os.environ["KERAS_BACKEND"]
    keras_home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        return json.loads(Path(keras_home, "keras.json").read_text()).get("backend", "tensorflow")
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


@contextmanager
def _kept_out_of_imports(packages):
    """Within the block, importing one of `packages` (not imported yet) raises ImportError, as when it is not
    installed (Python's rule for a None entry in `sys.modules`); after it they import as usual."""
    kept_out = [name for name in packages if name not in sys.modules]
    for name in kept_out:
        sys.modules[name] = None
    try:
        yield
    finally:
        for name in kept_out:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def end_process(status) -> NoReturn:
    """Exit with `status` (as `sys.exit` reads it) after what a normal exit does first (threads still running are
    joined, `atexit` handlers run, the standard streams flushed), skipping the interpreter's teardown: freeing every
    module takes about 2 s once TensorFlow is loaded (`kerastl.cli.main`), about 0.2 s in the picture child with
    matplotlib and pandas (`kerastl.analysis.drawing.main`), and does nothing a finished process needs."""
    import atexit
    import threading

    for thread in threading.enumerate():
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # the handlers registered with atexit (logging, tracking clients), as Python runs them
    if status is not None and not isinstance(status, int):
        print(status, file=sys.stderr)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status or 0)
