"""The kerastl classes Keras must find by name to load a kerastl model, and when they are registered.

`import kerastl` does not import Keras (so `kerastl --help` answers at once): the classes are registered
as soon as Keras is imported, or at once when it already is, as `import keras_hub` does, so
`keras.saving.load_model("RUN/model.keras")` works after `import kerastl`.

Example:
    >>> import kerastl, keras
    >>> keras.saving.get_registered_object("kerastl>ImageClassifier")
    <class 'kerastl.models.classifier.ImageClassifier'>
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

SERIALIZABLE_MODULES = (
    "kerastl.models.layers",  # Preprocess, Normalize, TokenPooling, Calibrated
    "kerastl.models.losses",  # ClassCrossentropy
    "kerastl.training.layerwise",  # LayerwiseAdam, ...
    "kerastl.models.classifier",  # ImageClassifier
)


def register_all() -> None:
    """Import every module holding registered classes, with TensorFlow's native start-up chatter (CUDA probes,
    absl notices) kept off stderr."""
    from kerastl.quiet import hide_retracing_notes, native_stderr_silenced

    hide_retracing_notes()
    with native_stderr_silenced():
        for module in SERIALIZABLE_MODULES:
            importlib.import_module(module)


def register_when_keras_loads() -> None:
    """Register now if Keras is loaded, else right after Keras is first imported (a one-shot import hook).

    When Keras is first imported by a kerastl module that is itself still loading, the hook leaves the
    registration to that import's end (`kerastl.__getattr__` and `load_model` call `register_all`): importing
    the classes in the middle of it could meet a half-loaded module.
    """
    if "keras" in sys.modules:
        register_all()
    elif not any(isinstance(finder, _AfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKeras())


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when `keras` is about to load, wraps its loader to register kerastl's classes after."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "keras":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("keras")
        if spec is None or spec.loader is None:
            return spec
        load = spec.loader.exec_module

        def exec_module(module):
            from kerastl.quiet import native_stderr_silenced

            with native_stderr_silenced():  # TensorFlow's CUDA probes and absl notices, as register_all
                load(module)
            if not _kerastl_loading():
                register_all()

        spec.loader.exec_module = exec_module
        return spec


def _kerastl_loading() -> bool:
    """Whether a kerastl module is partway through its import."""
    return any(
        name.startswith("kerastl.") and getattr(getattr(module, "__spec__", None), "_initializing", False)
        for name, module in list(sys.modules.items())
    )
