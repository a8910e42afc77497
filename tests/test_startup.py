"""Starting TensorFlow in a command's process (`kerastl.startup`)."""

import json
import os
import subprocess
import sys

import pytest

from kerastl.startup import keras_backend_name


def test_the_command_process_imports_tensorflow_without_matplotlib_sklearn_and_jax_which_import_later_as_usual():
    """In the process `main` owns, Keras' gallery plotting, Keras' scikit-learn wrappers and TFLite's JAX converter
    find their packages missing, so the import skips them; the run can still import all three afterwards. A fresh
    process, so that nothing is imported before."""
    script = """
import sys
import kerastl.cli
kerastl.cli._PROCESS_ENDS_WITH_THE_COMMAND = True
kerastl.cli._import_tensorflow_quietly()
print("imported with TensorFlow:", sorted(name for name in ("matplotlib", "sklearn", "jax") if name in sys.modules))
from keras.src.visualization import plot_image_gallery
from keras.src.wrappers import fixes
from tensorflow.lite.python import util
print("left without:", plot_image_gallery.plt is None, fixes.sklearn is None, util._jit is None)
import matplotlib.pyplot, sklearn.linear_model, jax
print("imported after:", matplotlib.pyplot.__name__, sklearn.linear_model.__name__, jax.__name__)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KERAS_BACKEND": "tensorflow"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == [
        "imported with TensorFlow: []", "left without: True True True",
        "imported after: matplotlib.pyplot sklearn.linear_model jax"]


@pytest.mark.parametrize(("environment", "keras_json", "expected"), [
    ({"KERAS_BACKEND": "jax"}, {"backend": "tensorflow"}, "jax"),
    ({}, {"backend": "jax"}, "jax"),
    ({}, {"floatx": "float32"}, "tensorflow"),
    ({}, None, "tensorflow"),
])
def test_the_keras_backend_is_found_as_keras_finds_it(tmp_path, monkeypatch, environment, keras_json, expected):
    """JAX is kept out of the import only where Keras will not run on it: the environment variable first, then
    keras.json in KERAS_HOME."""
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    if keras_json is not None:
        (tmp_path / "keras.json").write_text(json.dumps(keras_json))
    assert keras_backend_name() == expected
