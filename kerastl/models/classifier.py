"""Build the transfer-learning model: raw pixels → preprocessing → frozen backbone → new head.

Example:
    >>> from kerastl import ModelConfig, build_model
    >>> model = build_model(ModelConfig(weights="none", input_size=32, backbone_options={"alpha": 0.35}),
    ...                     num_classes=10, image_shape=(8, 8, 1))
    >>> model.input.dtype, model.output.shape
    ('uint8', (None, 10))
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Optional, Sequence

import keras

from kerastl.config import AugmentConfig, HeadConfig, ModelConfig
from kerastl.errors import ConfigError, ExportError
from kerastl.models.augment import augmentation_layers
from kerastl.models.backbones import backbone_input, create_backbone, get_backbone

FEATURE_LAYER = "pool"  # the pooled features: the head's input, and what frozen phases cache
HEAD_NORM = "head_norm"  # the BatchNormalization of the pooled features, with model.head.norm: batch
LOGITS_LAYER = "logits"  # the output Dense layer (linear); models saved before calibration had a softmax Dense "probabilities"
OUTPUT_LAYER = "probabilities"  # the `Calibrated` layer: logits at the model's temperature, to probabilities
# With random weights BatchNorm learns its statistics from the few hundred steps a small dataset gives;
# Keras' 0.99 (MobileNetV2: 0.999) leaves them near their initial values and inference at chance.
SCRATCH_BN_MOMENTUM = 0.9


@keras.saving.register_keras_serializable(package="kerastl")
class ImageClassifier(keras.Model):
    """A kerastl model: raw `uint8` pixels in, class probabilities out, and what kerastl knows about it.

    A functional model (preprocessing, backbone, head) whose config also holds its `facts`, so they
    travel with `model.keras` (as keras-hub's `ImageClassifier` holds its backbone and preprocessor):
    `backbone` (the registry name), `class_names`, `multi_label`, `feature_layer` (the layer whose
    output is the pooled features), `normalization` (the backbone's preprocessing mode), `input_size`
    (the backbone's input side) and `weights` (what the backbone started from: imagenet, preset, file, none).

    Example:
        >>> model = build_model(ModelConfig(weights="none", input_size=32), 3, (28, 28, 1))
        >>> model.facts["backbone"], model.facts["multi_label"], model.facts["class_names"]
        ('mobilenet_v2', False, ['0', '1', '2'])
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):  # Functional's own signature: Keras revives it as one
        facts = kwargs.pop("facts", {})
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.facts = dict(facts)

    def get_config(self):
        return {**super().get_config(), "facts": self.facts}


def model_facts(model) -> dict:
    """The kerastl facts of `model` (see `ImageClassifier`); for a model saved by kerastl before models carried
    them, the same facts read from its layer names and output activation."""
    if isinstance(model, ImageClassifier):
        return model.facts
    return {
        "backbone": model.name.removeprefix("kerastl_"),
        "class_names": [str(k) for k in range(model.output_shape[-1])],
        "multi_label": getattr(model.layers[-1], "activation", None) is keras.activations.sigmoid
        or getattr(model.layers[-1], "multi_label", False),
        "feature_layer": FEATURE_LAYER,
    }


def input_size(model_cfg: ModelConfig) -> int:
    """The backbone's input side: the configured one, else the backbone's default."""
    return model_cfg.input_size or get_backbone(model_cfg.backbone).default_size


def build_model(
    model_cfg: ModelConfig,
    num_classes: int,
    image_shape: Sequence[int],
    augment: Optional[AugmentConfig] = None,
    seed: int = 0,
    weights: Optional[str] = None,
    multi_label: bool = False,
    precision: str = "float32",
    class_names: Optional[Sequence[str]] = None,
    backbone_training: Optional[bool] = False,
) -> ImageClassifier:
    """A Keras model taking raw `uint8` images at their native shape and returning class probabilities
    (softmax; independent sigmoid probabilities per class with `multi_label`).

    The backbone (layer "backbone") is frozen and always called with `training=False`, so its
    BatchNorm layers stay in inference mode even when layers are unfrozen later.

    Args:
        model_cfg: backbone, weights, input size, centre crop and head options.
        num_classes: size of the softmax output.
        image_shape: (H, W, C) of the raw images the model takes.
        augment: augmentation applied inside the model during training only; None for none.
        seed: seed of the augmentation layers.
        weights: overrides `model_cfg.weights` ("imagenet", "none" or a weights file path).
        multi_label: a sigmoid head for images holding any number of the classes.
        precision: Keras dtype policy of the layers: "float32", "mixed_float16" or "mixed_bfloat16";
            the output layer always computes in float32.
        class_names: the name of each class, kept in the model's facts; default "0".."K-1".
        backbone_training: the `training` argument the backbone is called with. False (transfer learning)
            keeps its BatchNorm in inference mode whatever is unfrozen; None lets it follow `fit`, for
            pretraining a backbone from scratch, whose BatchNorm statistics must be learned.

    Returns:
        An uncompiled `ImageClassifier`.

    Raises:
        ConfigError: unknown backbone or invalid options. WeightsError: weights unavailable or unfit.

    Example:
        >>> model = build_model(ModelConfig(weights="none", input_size=32), 3, (28, 28, 1))
        >>> model.get_layer("backbone").trainable
        False
    """
    if num_classes < 2:
        raise ConfigError(f"A classifier needs at least 2 classes, got num_classes={num_classes}.")
    spec = get_backbone(model_cfg.backbone)
    size = input_size(model_cfg)
    weights = weights or model_cfg.weights
    if weights == "pretrain":
        raise ConfigError("model.weights 'pretrain' is resolved by kerastl.train; pass the pretrained weights file path.")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)  # layers take the policy when created; restored at once
    try:
        inputs, outputs = _assemble(
            model_cfg, spec, size, weights, num_classes, image_shape, augment, seed, multi_label, backbone_training
        )
    finally:
        keras.config.set_dtype_policy(previous)
    facts = {
        "backbone": spec.name,
        "class_names": [str(name) for name in class_names] if class_names is not None else [str(k) for k in range(num_classes)],
        "multi_label": multi_label,
        "feature_layer": FEATURE_LAYER,
        "normalization": spec.preprocess,
        "input_size": size,
        "weights": "none" if weights == "none" else "file" if weights != "imagenet" else spec.pretrained,
    }
    model_name = "kerastl_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", spec.name)  # a hub:/path name holds "/" and ":"
    return ImageClassifier(inputs, outputs, name=model_name, facts=facts)


def _assemble(model_cfg, spec, size, weights, num_classes, image_shape, augment, seed, multi_label, backbone_training):
    from kerastl.models.layers import Normalize, Preprocess

    inputs = keras.Input(shape=tuple(image_shape), dtype="uint8", name="pixels")
    x = Preprocess(size, channels=3, crop=model_cfg.center_crop, name="preprocess")(inputs)
    layers = augmentation_layers(augment, seed) if augment is not None else []
    if layers:
        x = keras.Sequential(layers, name="augment")(x)
    scale, offset = spec.scale_offset(model_cfg.backbone_options)
    x = Normalize(spec.preprocess, scale=scale, offset=offset, name="normalize")(x)
    pooling = {"pooling": model_cfg.head.pooling} if spec.pools_inside else {}
    backbone = create_backbone(spec, weights, size, model_cfg.backbone_options, **pooling)
    if weights == "none":
        set_batchnorm_momentum(backbone, SCRATCH_BN_MOMENTUM)
    backbone.trainable = False
    x = backbone(backbone_input(backbone, x), training=backbone_training)
    norm = model_cfg.head.norm if model_cfg.head.norm != "auto" else ("none" if weights == "none" else "batch")
    head = replace(model_cfg.head, norm=norm)
    return inputs, _head(x, head, num_classes, seed, multi_label, spec.pools_inside, spec.tokens)


def set_batchnorm_momentum(backbone, momentum: float) -> None:
    """Set the momentum of every BatchNormalization layer of `backbone`."""
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def is_multi_label(model) -> bool:
    """Whether a kerastl model has a multi-label (sigmoid) head."""
    return bool(model_facts(model)["multi_label"])


def _head(features, head: HeadConfig, num_classes: int, seed: int, multi_label: bool, pooled: bool, tokens=None):
    """pool (an identity when the backbone pooled itself; the class token or mean token of a transformer)
    -> norm -> [dropout -> hidden]* -> dropout -> logits -> probabilities."""
    from kerastl.models.layers import Calibrated, TokenPooling

    pooling = {
        "avg": keras.layers.GlobalAveragePooling2D,
        "max": keras.layers.GlobalMaxPooling2D,
        "flatten": keras.layers.Flatten,
    }[head.pooling]
    if tokens is not None:
        x = TokenPooling(tokens, skip=1 if tokens == "class" else 0, name=FEATURE_LAYER)(features)
    else:
        x = (keras.layers.Identity if pooled else pooling)(name=FEATURE_LAYER)(features)
    if head.norm == "batch":
        x = keras.layers.BatchNormalization(name=HEAD_NORM)(x)
    for i, units in enumerate(head.hidden):
        x = keras.layers.Dropout(head.dropout, seed=seed, name=f"dropout_{i}")(x) if head.dropout else x
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    if head.dropout:
        x = keras.layers.Dropout(head.dropout, seed=seed, name="dropout")(x)
    logits = keras.layers.Dense(num_classes, dtype="float32", name=LOGITS_LAYER)(x)
    return Calibrated(multi_label, dtype="float32", name=OUTPUT_LAYER)(logits)


def load_model(path: str | Path):
    """Load a kerastl `.keras` model (safe mode: no code is run from the file).

    Example:
        >>> model = load_model("runs/quickstart/model.keras")
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise ExportError(f"No model at {str(path)!r}; expected a run directory or a .keras file.")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, OSError) as exc:
        raise ExportError(f"{path}: not a loadable Keras model ({str(exc).splitlines()[0]}).") from None


def model_input_shape(model) -> tuple[int, int, int]:
    """(H, W, C) of the raw images a kerastl model takes."""
    return tuple(int(d) for d in model.input_shape[1:])
