"""kerastl: transfer learning with Keras 3, from pixel tables or image folders to a deployable model.

Importing kerastl registers its serializable layers and optimizers with Keras (as `import keras_hub`
does), so `keras.saving.load_model("RUN/model.keras")` works after `import kerastl`; the heavier
modules (training, export) load on first use.

Example:
    >>> import kerastl
    >>> cfg = kerastl.load_config("configs/quickstart.yaml", overrides=["phases.0.epochs=1"])
    >>> result = kerastl.train(cfg, output_dir="runs/quickstart", overwrite=True)
    >>> result.metrics["test_accuracy"]
"""

from importlib import import_module

from kerastl.config import AugmentConfig as AugmentConfig
from kerastl.config import Config as Config
from kerastl.config import DataConfig as DataConfig
from kerastl.config import HeadConfig as HeadConfig
from kerastl.config import ModelConfig as ModelConfig
from kerastl.config import PhaseConfig as PhaseConfig
from kerastl.config import PretrainConfig as PretrainConfig
from kerastl.config import load_config as load_config
from kerastl.errors import ConfigError as ConfigError
from kerastl.errors import DataError as DataError
from kerastl.errors import ExportError as ExportError
from kerastl.errors import KerastlError as KerastlError
from kerastl.errors import RunDirError as RunDirError
from kerastl.errors import WeightsError as WeightsError
from kerastl.models.backbones import backbone_names as backbone_names
from kerastl.models.backbones import get_backbone as get_backbone

__version__ = "0.1.0"


def _register_serializable_objects() -> None:
    """Import the modules whose classes Keras must find by name when it loads a kerastl model, with
    TensorFlow's native start-up chatter (CUDA probes, absl notices) kept off stderr."""
    from kerastl.quiet import hide_retracing_notes, native_stderr_silenced

    hide_retracing_notes()
    with native_stderr_silenced():
        import kerastl.models.classifier  # noqa: F401  ImageClassifier
        import kerastl.models.layers  # noqa: F401  Preprocess, Normalize
        import kerastl.training.optimizers  # noqa: F401  LayerwiseAdam, ...


_register_serializable_objects()

# Public names whose modules import TensorFlow/Keras: loaded on first access.
_LAZY = {
    "train": "kerastl.training.trainer",
    "TrainResult": "kerastl.training.trainer",
    "build_model": "kerastl.models.classifier",
    "load_model": "kerastl.models.classifier",
    "evaluate": "kerastl.analysis.evaluation",
    "predict": "kerastl.deploy.predict",
    "explain": "kerastl.analysis.gradcam",
    "distill": "kerastl.training.distillation",
    "gradcam": "kerastl.analysis.gradcam",
    "find_label_issues": "kerastl.analysis.labelissues",
    "write_model_card": "kerastl.analysis.modelcard",
    "export": "kerastl.deploy.export",
    "pretrain_backbone": "kerastl.training.pretrain",
    "probe": "kerastl.training.baselines",
    "convert_hed_vgg16": "kerastl.models.hed",
    "read_source": "kerastl.data.sources",
    "from_arrays": "kerastl.data.sources",
    "from_dataframe": "kerastl.data.sources",
    "ImageSource": "kerastl.data.sources",
    "load_splits": "kerastl.data.pipeline",
    "make_dataset": "kerastl.data.pipeline",
}

__all__ = [
    "AugmentConfig", "Config", "DataConfig", "HeadConfig", "ModelConfig", "PhaseConfig", "PretrainConfig",
    "load_config", "ConfigError", "DataError", "ExportError", "KerastlError", "RunDirError", "WeightsError",
    "backbone_names", "get_backbone", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kerastl' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
