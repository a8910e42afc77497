"""Job files, and asking a child process to compute one: a call (a function's name and its arguments) written to a
file for a child of this process (`kerastl.analysis.drawing.main`), and its answer, written beside it.

Arrays go into `.npz` members and the rest into JSON beside them (no pickle).

Example:
    >>> write_job(folder / "job.npz", "plot_confusion_matrix", {"matrix": matrix, "class_names": ["cat", "dog"]})
    >>> read_job(folder / "job.npz")[0]
    'plot_confusion_matrix'
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

CALL = "__call__"  # the job file's member holding the function's name and its arguments but the arrays, as JSON
ARRAY = "__array__"  # in that JSON, {ARRAY: member} stands for the array in that member
DONE = "done"  # the child's answer (a line on its standard output) when it wrote a call's result
CHILDREN: list[subprocess.Popen] = []  # the children this process started and has not seen end, the newest last


def ask_child(name: str, arguments: dict) -> tuple[bool, object]:
    """`kerastl.offload.compute_now(name, **arguments)` computed by the newest of `CHILDREN`: (True, its result), or
    (False, None) when there is no child or it could not answer (it ended, or the call raised: its error output
    has the error). The child answers once it has done the jobs sent before."""
    if not CHILDREN:
        return False, None
    child = CHILDREN[-1]
    with tempfile.TemporaryDirectory(prefix="kerastl-call-") as folder:
        job = Path(folder) / "call.npz"
        write_job(job, name, arguments)
        try:
            child.stdin.write(f"{job}\n")
            child.stdin.flush()
            answer = child.stdout.readline()
        except (OSError, ValueError):  # the child has ended (a broken or closed pipe)
            return False, None
        if answer != f"{DONE}\n":
            return False, None
        return True, read_job(result_file(job))[1]["value"]


def result_file(job: Path) -> Path:
    """Where the child writes the result of the call in `job` (as `write_job(file, name, {"value": result})`)."""
    return job.with_name(f"{job.stem}.result.npz")


def write_job(file: Path, name: str, arguments: dict) -> None:
    """Write the call `name(**arguments)` to `file` (see `read_job`)."""
    arrays: dict = {}

    def encode(value):
        if isinstance(value, np.ndarray):
            arrays[f"a{len(arrays)}"] = value
            return {ARRAY: f"a{len(arrays) - 1}"}
        if isinstance(value, dict):
            return {key: encode(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(item) for item in value]
        if isinstance(value, np.generic):
            return value.item()
        return str(value) if isinstance(value, Path) else value

    call = json.dumps({"name": name, "arguments": encode(arguments)})
    with open(file, "wb") as handle:
        np.savez(handle, **{CALL: np.array(call)}, **arrays)


def read_job(file: Path) -> tuple[str, dict]:
    """The function name and arguments `write_job` wrote to `file`."""
    with np.load(file, allow_pickle=False) as saved:
        call = json.loads(str(saved[CALL]))
        arrays = {member: saved[member] for member in saved.files if member != CALL}

    def decode(value):
        if isinstance(value, dict):
            return arrays[value[ARRAY]] if set(value) == {ARRAY} else {key: decode(item) for key, item in value.items()}
        return [decode(item) for item in value] if isinstance(value, list) else value

    return call["name"], decode(call["arguments"])
