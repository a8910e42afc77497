"""scikit-learn's part of a run (the stratified split, the linear probe and k-NN), computed where it costs least.

A `kerastl` command's own process keeps scikit-learn out of TensorFlow's import (`kerastl.startup`): importing it
there took 0.9–1.2 s before a run could start, most of it scipy.stats. `kerastl train` starts its child process
(`kerastl.analysis.drawing`) before that import, and the child imports scikit-learn beside it; `computed` then
sends these calls to the child. A process that has imported scikit-learn already (a notebook, a test, any process
where Keras imported it) computes them itself, as does one without a child. The calls are deterministic functions
of arrays, so where they run changes no result: what the child cannot answer (it ended, or the call raised) is
computed here, where a call's own error is raised as usual.

Example:
    >>> remaining, validation = computed("stratified_parts", labels=labels, fractions=[0.2], seed=42)
"""

from __future__ import annotations

import importlib
import sys

from kerastl.jobs import ask_child

# name -> "module:function"; each takes and returns NumPy arrays, numbers, strings, None, lists and dicts of them
COMPUTATIONS = {
    "stratified_parts": "kerastl.data.splitting:stratified_parts",
    "frozen_baselines": "kerastl.training.linear_probe:frozen_baselines",
}


def computed(name: str, **arguments):
    """`compute_now(name, **arguments)`, in the command's child process when this process has not imported
    scikit-learn and a child is running (see the module's docstring), else here."""
    if "sklearn" not in sys.modules:
        answered, result = ask_child(name, arguments)
        if answered:
            return result
    return compute_now(name, **arguments)


def compute_now(name: str, **arguments):
    """Call the function `COMPUTATIONS[name]` in this process."""
    if name not in COMPUTATIONS:
        raise ValueError(f"{name!r} is none of the computations a run sends its child: {', '.join(COMPUTATIONS)}.")
    module, function = COMPUTATIONS[name].split(":")
    return getattr(importlib.import_module(module), function)(**arguments)


def import_computations() -> None:
    """Import the modules `COMPUTATIONS` call, scikit-learn's among them (the child does this while it waits)."""
    import sklearn.linear_model  # noqa: F401
    import sklearn.model_selection  # noqa: F401
    import sklearn.neighbors  # noqa: F401

    for target in COMPUTATIONS.values():
        importlib.import_module(target.split(":")[0])
