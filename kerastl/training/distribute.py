"""Where training runs (`compute.distribute`), on existing engines only:

- `none`: one device.
- `mirrored`: TensorFlow's `tf.distribute.MirroredStrategy` over every GPU of this machine.
- `multihost`: Keras 3's own distribution API (`keras.distribution.DataParallel`) over several
  processes or hosts, on the JAX backend (Keras 3 with TensorFlow fails under
  `MultiWorkerMirroredStrategy`: keras-team/keras#20585). A source in one file is read by every process
  with the same seed, and Keras gives each process its own shard of every batch; a source in many files (a
  folder, a glob of table shards) is read by each process in its share of the files (`data_shard`), and each
  process gives its own batches (`Engine.feed_own_data`). Keras keeps the weights in sync.
  Processes find each other through Keras' variables (`MULTIHOST_VARIABLES`).

Example:
    >>> engine = start_engine("none", batch_size=32)
    >>> with engine.scope():
    ...     model = build_model(...)
"""

from __future__ import annotations

import contextlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager, Optional

from kerastl.errors import ConfigError, DataError, RunDirError
from kerastl.registry import Registry

MULTIHOST_VARIABLES = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",  # host:port of process 0, the coordinator
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",  # 0 .. NUM_PROCESSES - 1, one per process
)


@dataclass(frozen=True)
class Engine:
    """A started engine: `scope()` to build and train in, and how many model replicas and processes it has."""

    name: str
    scope: Callable[[], ContextManager]
    replicas: int = 1
    processes: int = 1
    gather: Callable[[int], list[int]] = lambda value: [value]  # one number from every process, in process order
    feed_own_data: Callable[[], None] = lambda: None  # each process gives its own batches (no Keras sharding)
    average: Callable[[float], float] = lambda value: value  # the mean of one number over every process

    @property
    def distributed(self) -> bool:
        """Whether a batch is split among replicas; each then needs an equal, non-empty share, so training
        and validation batches drop the remainder and final metrics come from a single-device copy."""
        return self.replicas > 1


ONE_DEVICE = Engine("none", contextlib.nullcontext)


def process_id(name: str) -> int:
    """This process's number (0 but for `multihost`), read without starting anything.

    Raises:
        ConfigError: `multihost` without the Keras distribution variables, or with a bad process id.
    """
    if name != "multihost":
        return 0
    missing = [variable for variable in MULTIHOST_VARIABLES if not os.environ.get(variable)]
    if missing:
        raise ConfigError(
            "compute.distribute: multihost needs " + ", ".join(missing) + " set in every process "
            "(coordinator host:port, number of processes, this process's id from 0)."
        )
    processes, given = (os.environ[v] for v in MULTIHOST_VARIABLES[1:])
    if not (processes.isdigit() and given.isdigit() and int(given) < int(processes)):
        raise ConfigError(
            f"KERAS_DISTRIBUTION_PROCESS_ID={given!r} must be a whole number below "
            f"KERAS_DISTRIBUTION_NUM_PROCESSES={processes!r}."
        )
    return int(given)


def data_shard(name: str) -> Optional[tuple[int, int]]:
    """(this process, number of processes) for `multihost` over several processes, whose processes each read their
    share of a source in many files; None when one process reads everything."""
    if name != "multihost":
        return None
    number = process_id(name)  # checks the variables first
    processes = int(os.environ["KERAS_DISTRIBUTION_NUM_PROCESSES"])
    return (number, processes) if processes > 1 else None


def check_same_classes(engine: Engine, class_names) -> None:
    """Raise `DataError` unless every process found the same classes (processes reading their own share of the
    files could miss a class that only other files hold)."""
    found = engine.gather(zlib.crc32("\n".join(class_names).encode()) & 0x7FFFFFFF)
    if len(set(found)) > 1:
        raise DataError(
            f"The processes found different classes in their shares of the data (this process: {', '.join(class_names)}); "
            "each process reads its own files, so write shards (or folder files) that each hold every class."
        )


def check_resume_point(engine: Engine, epochs: int) -> None:
    """Raise `RunDirError` unless every process resumes after the same number of finished `epochs`
    (processes killed between writing their epoch backups could differ by one)."""
    found = engine.gather(epochs)
    if len(set(found)) > 1:
        where = ", ".join(f"process {number}: {count}" for number, count in enumerate(found))
        raise RunDirError(
            f"The processes would resume after different numbers of finished epochs ({where}): copy the "
            "checkpoints/ folder of the run directory that is furthest ahead over the others', then resume again."
        )


def process_run_dir(run_dir: Path) -> Path:
    """The run directory this process writes: `run_dir`, but `run_dir.process-K` for the process whose
    KERAS_DISTRIBUTION_PROCESS_ID is K > 0, so processes sharing a file system never write the same files."""
    number = os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID", "").strip()
    return run_dir if number in ("", "0") else run_dir.with_name(f"{run_dir.name}.process-{number}")


def start_engine(name: str, batch_size: int) -> Engine:
    """Start the engine `name` names; `batch_size` (global, split among replicas) must divide evenly.

    Raises:
        ConfigError: `multihost` off the JAX backend or without its variables, or a batch size that is
            not a multiple of the number of replicas.
    """
    engine = ENGINES.get(name)()
    check_batch_size(engine, batch_size)
    return engine


def _start_mirrored() -> Engine:
    import tensorflow as tf

    strategy = tf.distribute.MirroredStrategy()
    return Engine("mirrored", strategy.scope, strategy.num_replicas_in_sync)


def check_batch_size(engine: Engine, batch_size: int) -> None:
    """Raise `ConfigError` unless the global `batch_size` splits evenly among the engine's replicas."""
    if batch_size % engine.replicas:
        raise ConfigError(
            f"data.batch_size={batch_size} must be a multiple of the {engine.replicas} replicas of "
            f"compute.distribute: {engine.name}."
        )


def _start_multihost() -> Engine:
    import keras

    if keras.backend.backend() != "jax":
        raise ConfigError(
            "compute.distribute: multihost runs on the JAX backend: set KERAS_BACKEND=jax and install jax "
            f"(this process runs Keras on {keras.backend.backend()!r}; see the README, 'Multi-GPU and multi-host')."
        )
    process_id("multihost")
    import jax

    if not jax.distributed.is_initialized():
        jax.config.update("jax_cpu_collectives_implementation", "gloo")  # collectives between CPU processes
        keras.distribution.initialize()  # reads MULTIHOST_VARIABLES
    distribution = keras.distribution.DataParallel(devices=keras.distribution.list_devices())
    return Engine(
        "multihost", distribution.scope, len(keras.distribution.list_devices()), jax.process_count(), _gather_from_processes,
        feed_own_data=lambda: setattr(distribution, "auto_shard_dataset", False), average=_average_over_processes,
    )


def _average_over_processes(value: float) -> float:
    import numpy as np
    from jax.experimental import multihost_utils

    return float(np.mean(multihost_utils.process_allgather(np.float32(value))))


def _gather_from_processes(value: int) -> list[int]:
    import numpy as np
    from jax.experimental import multihost_utils

    return [int(v) for v in np.asarray(multihost_utils.process_allgather(np.int32(value))).ravel()]


# compute.distribute -> a function starting that engine
ENGINES: Registry[Callable[[], Engine]] = Registry("distribute engine")
ENGINES.register("none", lambda: ONE_DEVICE)
ENGINES.register("mirrored", _start_mirrored)
ENGINES.register("multihost", _start_multihost)
