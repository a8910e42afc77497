"""kerastl: transfer learning with Keras 3, from pixel tables or image folders to a deployable model.

Importing kerastl does not import Keras or TensorFlow: the names below load their modules on first use.
Its serializable classes are registered with Keras as soon as Keras is imported (see
`kerastl.serializable`), so `keras.saving.load_model("RUN/model.keras")` works after `import kerastl`.

Example:
    >>> import kerastl
    >>> model = kerastl.ImageClassifier.from_preset("mobilenet_v2", num_classes=10, image_shape=(28, 28, 1))
    >>> history = kerastl.fine_tune(model, images, labels, validation_data=(val_images, val_labels))
    >>> result = kerastl.train(kerastl.load_config("configs/quickstart.yaml"), output_dir="runs/quickstart")
"""

import sys
from importlib import import_module

from kerastl.config import AugmentConfig as AugmentConfig
from kerastl.config import Config as Config
from kerastl.config import DataConfig as DataConfig
from kerastl.config import HeadConfig as HeadConfig
from kerastl.config import LossConfig as LossConfig
from kerastl.config import ModelConfig as ModelConfig
from kerastl.config import PhaseConfig as PhaseConfig
from kerastl.config import PretrainConfig as PretrainConfig
from kerastl.config import ResultsConfig as ResultsConfig
from kerastl.config import TuneConfig as TuneConfig
from kerastl.config import load_config as load_config
from kerastl.errors import ConfigError as ConfigError
from kerastl.errors import DataError as DataError
from kerastl.errors import ExportError as ExportError
from kerastl.errors import KerastlError as KerastlError
from kerastl.errors import RunDirError as RunDirError
from kerastl.errors import WeightsError as WeightsError
from kerastl.models.backbones import backbone_names as backbone_names
from kerastl.models.backbones import get_backbone as get_backbone
# The modules holding the registries a config names (none imports Keras): the config checks find them by kind.
from kerastl.models import augment as _augment  # noqa: F401
from kerastl.training import distribute as _distribute  # noqa: F401
from kerastl.training import optimizers as _optimizers  # noqa: F401
from kerastl.training import strategies as _strategies  # noqa: F401
from kerastl.quiet import hide_retracing_notes
from kerastl.serializable import register_all, register_when_keras_loads

__version__ = "0.1.0"


hide_retracing_notes()
register_when_keras_loads()

# Public names whose modules import TensorFlow/Keras: loaded on first access.
_LAZY = {
    "ImageClassifier": "kerastl.models.classifier",
    "fine_tune": "kerastl.training.recipe",
    "Recipe": "kerastl.training.recipe",
    "train": "kerastl.training.trainer",
    "TrainResult": "kerastl.training.trainer",
    "RunMetrics": "kerastl.run_metrics",
    "read_metrics": "kerastl.run_metrics",
    "build_model": "kerastl.models.classifier",
    "ClassifierSpec": "kerastl.models.classifier",
    "load_model": "kerastl.models.classifier",
    "evaluate": "kerastl.analysis.evaluation",
    "predict": "kerastl.deploy.predict",
    "explain": "kerastl.analysis.gradcam",
    "distill": "kerastl.training.trainer",
    "tune": "kerastl.tuning.search",
    "TuneResult": "kerastl.tuning.search",
    "gradcam": "kerastl.analysis.gradcam",
    "find_label_issues": "kerastl.analysis.labelissues",
    "find_duplicates": "kerastl.analysis.duplicates",
    "embed": "kerastl.analysis.embeddings",
    "similar": "kerastl.analysis.embeddings",
    "write_model_card": "kerastl.analysis.modelcard",
    "export": "kerastl.deploy.export",
    "benchmark": "kerastl.deploy.benchmark",
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
    "AugmentConfig", "Config", "DataConfig", "HeadConfig", "LossConfig", "ModelConfig", "PhaseConfig", "PretrainConfig",
    "ResultsConfig", "TuneConfig",
    "load_config", "ConfigError", "DataError", "ExportError", "KerastlError", "RunDirError", "WeightsError",
    "backbone_names", "get_backbone", *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        if "keras" in sys.modules:  # its first import may have come while a kerastl module was loading
            register_all()
        return value
    raise AttributeError(f"module 'kerastl' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
