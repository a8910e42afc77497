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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional, Sequence

import keras

from kerastl.config import AugmentConfig, HeadConfig, ModelConfig, config_to_dict, size_hw
from kerastl.errors import ConfigError, ExportError
from kerastl.models.augment import augmentation_layers
from kerastl.models.backbone_layers import backbone_input
from kerastl.models.backbones import BACKBONE_LAYER_NAME, create_backbone, get_backbone
from kerastl.labels import LabelKind
from kerastl.weights import Weights
from kerastl.rundir import MODEL_FILE

NORMALIZE_LAYER = "normalize"  # the last layer of the in-model preprocessing
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

    Shaped like keras-hub's `ImageClassifier`: build it with `from_preset`, reach its parts as
    `model.preprocessor` (cast, gray→RGB, resize, augmentation in training only, the backbone's own
    normalization), `model.backbone` (frozen, called with `training=False`) and `model.head` (pooling to
    probabilities), `compile()` it with working defaults, `fit` and `predict` it as any Keras model, or
    train it with the recipe: `kerastl.fine_tune(model, x, y)`.

    It is a functional model whose config also holds its `facts`, so they travel with `model.keras`:
    `backbone` (the registry name), `class_names`, `multi_label`, `feature_layer` (the layer whose
    output is the pooled features), `normalization` (the backbone's preprocessing mode), `input_size`
    (the backbone's input: one side, or [height, width]), `resize` (how an image of another aspect ratio meets
    it: squash, crop or pad), `weights` (what the backbone started from: imagenet, preset, file, none), and the
    `head`, `augment`, `center_crop` and `backbone_options` it was built with.

    Example:
        >>> model = ImageClassifier.from_preset("mobilenet_v2", num_classes=3, weights=None, input_size=32,
        ...                                     image_shape=(28, 28, 1), backbone_options={"alpha": 0.35})
        >>> model.class_names, model.backbone.trainable
        (['0', '1', '2'], False)
        >>> model.compile()
        >>> model.fit(images, labels, epochs=1)   # uint8 images [N, 28, 28, 1], integer labels [N]
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):  # Functional's own signature: Keras revives it as one
        facts = kwargs.pop("facts", {})
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        self.facts = dict(facts)

    def get_config(self):
        return {**super().get_config(), "facts": self.facts}

    @classmethod
    def from_preset(
        cls,
        preset: str,
        num_classes: int,
        weights: Optional[str] = "imagenet",
        input_size: Optional[int | Sequence[int]] = None,
        image_shape: Optional[Sequence[int]] = None,
        head: Optional[HeadConfig | dict] = None,
        augment: Optional[AugmentConfig | dict | str] = "light",
        class_names: Optional[Sequence[str]] = None,
        multi_label: bool = False,
        center_crop: Optional[float] = None,
        resize: str = "squash",
        backbone_options: Optional[dict] = None,
        precision: str = "float32",
        seed: int = 0,
    ) -> "ImageClassifier":
        """A new classifier on a registered backbone (`kerastl.backbone_names()`), as keras-hub's `from_preset`.

        Args:
            preset: a backbone name: "mobilenet_v2", "efficientnet_b0", "hub:dinov2_small", "hub:/path/to/preset"...
            num_classes: number of classes (at least 2).
            weights: "imagenet" (Keras downloads and caches them; for a hub preset, the preset's own), None for
                random initialisation (as in `keras.applications`), or the path of a weights file.
            input_size: the backbone's input: one side (square) or (height, width); default the backbone's own side.
            image_shape: (H, W, C) of the raw images the model takes; default (height, width, 3) of `input_size`.
            head: a `HeadConfig` or a dict of its fields (pooling, norm, dropout, hidden, init).
            augment: augmentation inside the model, in training only: a preset name ("none", "light", "medium",
                "strong"), an `AugmentConfig` or a dict of its fields.
            class_names: the name of each class; default "0".."K-1".
            multi_label: independent sigmoid probabilities per class instead of a softmax.
            center_crop, resize, backbone_options, precision, seed: as `model.center_crop`, `data.resize` (squash, crop
                or pad: how images of another aspect ratio meet `input_size`), `model.backbone_options`,
                `compute.precision` and `seed` in a config.

        Raises:
            ConfigError: an unknown backbone or invalid options. WeightsError: weights unavailable or unfit.
        """
        from kerastl.config import DataConfig, config_from_parts, section_from_dict

        if isinstance(augment, str):
            augment = AugmentConfig(preset=augment)
        elif isinstance(augment, dict):
            augment = section_from_dict(AugmentConfig, augment, "augment")
        head = section_from_dict(HeadConfig, head, "model.head") if isinstance(head, dict) else head or HeadConfig()
        model_cfg = ModelConfig(
            backbone=preset, weights="none" if weights is None else str(weights),
            input_size=input_size if input_size is None or isinstance(input_size, int) else tuple(input_size),
            center_crop=center_crop, backbone_options=dict(backbone_options or {}), head=head,
        )
        data = DataConfig(multi_label=multi_label, resize=resize)
        config_from_parts(model=model_cfg, augment=augment or AugmentConfig(preset="none"), data=data)
        spec = ClassifierSpec(
            model_cfg, class_names or default_class_names(num_classes), image_shape or (*input_size_of(model_cfg), 3),
            multi_label, resize, augment, precision, seed,
        )
        if spec.num_classes != num_classes:
            raise ConfigError(f"class_names holds {spec.num_classes} names for num_classes={num_classes}.")
        return spec.build()

    def compile(self, optimizer="adam", loss="auto", metrics="auto", **kwargs):
        """Keras' `compile`, with defaults that fit the head: `loss="auto"` is cross-entropy on integer labels
        or one-hot rows (binary cross-entropy for a multi-label model), `metrics="auto"` its accuracy."""
        kind = self.label_kind
        super().compile(
            optimizer=optimizer,
            loss=kind.default_loss() if isinstance(loss, str) and loss == "auto" else loss,
            metrics=[kind.accuracy()] if isinstance(metrics, str) and metrics == "auto" else metrics,
            **kwargs,
        )

    def fit(self, *args, **kwargs):
        """Keras' `fit`, with the optimizer built for the trainable weights before TensorFlow traces the training
        step: on one device Keras builds it inside that trace, and TensorFlow, seeing variables created, traces the
        step a second time (2.3 s of a MobileNetV2 fine-tune epoch here). It is built for the weights Keras would
        build it for, in the model's `tf.distribute` strategy's scope."""
        if keras.backend.backend() == "tensorflow" and getattr(self, "optimizer", None) is not None and not self.optimizer.built:
            with self.distribute_strategy.scope():
                self.optimizer.build(self.trainable_variables)
        return super().fit(*args, **kwargs)

    def compile_from_config(self, config):
        """Compile a loaded model as it was saved (Keras skips models whose `compile` is overridden)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.built:
            self.optimizer.build(self.trainable_variables)

    @property
    def backbone(self):
        """The backbone layer (a `keras.applications` or keras-hub model), frozen until a phase unfreezes it."""
        return self.get_layer(BACKBONE_LAYER_NAME)

    @property
    def preprocessor(self):
        """The in-model preprocessing as a Keras model sharing this model's layers: uint8 images in, the
        backbone's normalized input out (augmentation runs only with `training=True`)."""
        return keras.Model(self.inputs, self.get_layer(NORMALIZE_LAYER).output, name="preprocessor")

    @property
    def head(self):
        """The head as a Keras model sharing this model's layers: the backbone's output in, probabilities out,
        so `model.head(model.backbone(model.preprocessor(x)))` answers as `model(x)`."""
        return layers_after(self, BACKBONE_LAYER_NAME, keras.Input(shape=self.backbone.output.shape[1:]), "head")

    @property
    def class_names(self) -> list[str]:
        return list(self.facts["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.facts["class_names"])

    @property
    def label_kind(self) -> LabelKind:
        return label_kind(self)


def model_facts(model) -> dict:
    """The kerastl facts of `model` (see `ImageClassifier`); for a model saved by kerastl before models carried
    them, the same facts read from its layer names and output activation."""
    if isinstance(model, ImageClassifier):
        return model.facts
    return {
        "backbone": model.name.removeprefix("kerastl_"),
        "class_names": list(default_class_names(model.output_shape[-1])),
        "multi_label": getattr(model.layers[-1], "activation", None) is keras.activations.sigmoid
        or getattr(model.layers[-1], "multi_label", False),
        "feature_layer": FEATURE_LAYER,
    }


def input_size(model_cfg: ModelConfig) -> tuple[int, int]:
    """(height, width) of the backbone's input: the configured size, else the backbone's default side."""
    return size_hw(model_cfg.input_size or get_backbone(model_cfg.backbone).default_size)


input_size_of = input_size  # for ImageClassifier.from_preset, whose `input_size` argument hides the function


def layers_after(model, layer_name: str, inputs, name: str, last: Optional[str] = None):
    """A Keras model calling `model`'s own layers after `layer_name` (in order, up to and including `last`; by
    default to the output) on `inputs`."""
    names = [layer.name for layer in model.layers]
    stop = names.index(last) + 1 if last is not None else len(names)
    x = inputs
    for layer in model.layers[names.index(layer_name) + 1 : stop]:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def head_model(model, logits: bool = False):
    """The head from the pooled features on: pooled features [B, D] in, probabilities out (same layer objects),
    what frozen phases fit on cached features; with `logits`, the logits (the output layer's input) out."""
    feature_layer = model_facts(model)["feature_layer"]
    inputs = keras.Input(shape=model.get_layer(feature_layer).output.shape[1:], name="features")
    return layers_after(model, feature_layer, inputs, f"{model.name}_head", last=LOGITS_LAYER if logits else None)


@dataclass(frozen=True)
class ClassifierSpec:
    """Everything a classifier is built from: the model section (backbone, weights, input size, head), its
    classes, the raw images it takes and how they meet its input, its augmentation, precision and seed.

    Example:
        >>> spec = ClassifierSpec(ModelConfig(weights="none", input_size=32), ("cat", "dog"), image_shape=(28, 28, 1))
        >>> spec.build().class_names
        ['cat', 'dog']
    """

    model: ModelConfig
    class_names: tuple[str, ...]
    image_shape: tuple[int, ...]
    multi_label: bool = False  # independent sigmoid probabilities per class instead of a softmax
    resize: str = "squash"  # how an image of another aspect ratio meets the input: squash, crop or pad (data.resize)
    augment: Optional[AugmentConfig] = None  # augmentation inside the model, in training only; None for none
    precision: str = "float32"  # Keras dtype policy of the layers; the output layer always computes in float32
    seed: int = 0  # seed of the augmentation layers and the head's dropout

    def __post_init__(self):
        object.__setattr__(self, "class_names", tuple(str(name) for name in self.class_names))
        object.__setattr__(self, "image_shape", tuple(self.image_shape))

    @classmethod
    def from_config(cls, cfg, class_names: Sequence[str], image_shape: Sequence[int],
                    weights: Optional[str] = None) -> "ClassifierSpec":
        """The classifier a run config describes, for `class_names` and images of `image_shape`; `weights`
        replaces `model.weights` (a run's resolved "pretrain" file)."""
        model = cfg.model if weights is None else replace(cfg.model, weights=weights)
        return cls(model, class_names, image_shape, cfg.data.multi_label, cfg.data.resize, cfg.augment,
                   cfg.compute.precision, cfg.seed)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def build(self, backbone_training: Optional[bool] = False) -> "ImageClassifier":
        """A Keras model taking raw `uint8` images at `image_shape` and returning class probabilities.

        The backbone (layer "backbone") is frozen and called with `training=backbone_training`: False (transfer
        learning) keeps its BatchNorm in inference mode whatever is unfrozen later; None lets it follow `fit`, for
        pretraining a backbone from scratch, whose BatchNorm statistics must be learned.

        Raises:
            ConfigError: unknown backbone or invalid options. WeightsError: weights unavailable or unfit.
        """
        if self.num_classes < 2:
            raise ConfigError(f"A classifier needs at least 2 classes, got num_classes={self.num_classes}.")
        backbone_spec = get_backbone(self.model.backbone)
        choice = Weights.parse(self.model.weights)
        if choice.kind == "pretrain":
            raise ConfigError("model.weights 'pretrain' is resolved by kerastl.train; pass the pretrained weights file path.")
        previous = keras.config.dtype_policy()
        keras.config.set_dtype_policy(self.precision)  # layers take the policy when created; restored at once
        try:
            inputs, outputs = _assemble(self, backbone_spec, backbone_training)
        finally:
            keras.config.set_dtype_policy(previous)
        size = input_size(self.model)
        facts = {
            "backbone": backbone_spec.name,
            "class_names": list(self.class_names),
            "multi_label": self.multi_label,
            "feature_layer": FEATURE_LAYER,
            "normalization": backbone_spec.preprocess,
            "input_size": size[0] if size[0] == size[1] else list(size),
            "resize": self.resize,
            "weights": {"none": "none", "file": "file", "imagenet": backbone_spec.pretrained}[choice.kind],
            "head": config_to_dict(self.model.head),
            "augment": None if self.augment is None else config_to_dict(self.augment),
            "center_crop": self.model.center_crop,
            "backbone_options": dict(self.model.backbone_options),
        }
        model_name = "kerastl_" + re.sub(r"[^A-Za-z0-9_.-]+", "_", backbone_spec.name)  # a hub:/path name holds "/" and ":"
        return ImageClassifier(inputs, outputs, name=model_name, facts=facts)


def build_model(
    model_cfg: ModelConfig,
    num_classes: int,
    image_shape: Sequence[int],
    augment: Optional[AugmentConfig] = None,
    seed: int = 0,
    weights: Optional[str] = None,
) -> ImageClassifier:
    """A single-label Keras model taking raw `uint8` images at `image_shape` and returning softmax probabilities
    over classes "0".."K-1" (`ClassifierSpec` for class names, multi-label, resize rule and precision).

    The backbone (layer "backbone") is frozen and always called with `training=False`, so its
    BatchNorm layers stay in inference mode even when layers are unfrozen later.

    Args:
        model_cfg: backbone, weights, input size, centre crop and head options.
        num_classes: size of the softmax output.
        image_shape: (H, W, C) of the raw images the model takes.
        augment: augmentation applied inside the model during training only; None for none.
        seed: seed of the augmentation layers.
        weights: overrides `model_cfg.weights` ("imagenet", "none" or a weights file path).

    Returns:
        An uncompiled `ImageClassifier`.

    Raises:
        ConfigError: unknown backbone or invalid options. WeightsError: weights unavailable or unfit.

    Example:
        >>> model = build_model(ModelConfig(weights="none", input_size=32), 3, (28, 28, 1))
        >>> model.get_layer("backbone").trainable
        False
    """
    model_cfg = replace(model_cfg, weights=weights) if weights else model_cfg
    return ClassifierSpec(model_cfg, default_class_names(num_classes), image_shape, augment=augment, seed=seed).build()


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """"0".."K-1": the class names of a model built without names."""
    return tuple(str(k) for k in range(num_classes))


def _assemble(classifier: ClassifierSpec, spec, backbone_training):
    from kerastl.models.layers import Normalize, Preprocess

    model_cfg = classifier.model
    size = input_size(model_cfg)
    inputs = keras.Input(shape=classifier.image_shape, dtype="uint8", name="pixels")
    x = Preprocess(size, channels=3, crop=model_cfg.center_crop, resize=classifier.resize, name="preprocess")(inputs)
    layers = augmentation_layers(classifier.augment, classifier.seed) if classifier.augment is not None else []
    if layers:
        x = keras.Sequential(layers, name="augment")(x)
    scale, offset = spec.scale_offset(model_cfg.backbone_options)
    x = Normalize(spec.preprocess, scale=scale, offset=offset, name=NORMALIZE_LAYER)(x)
    pooling = {"pooling": model_cfg.head.pooling} if spec.pools_inside else {}
    backbone = create_backbone(spec, model_cfg.weights, size, model_cfg.backbone_options, **pooling)
    pretrained = Weights.parse(model_cfg.weights).pretrained
    if not pretrained:
        set_batchnorm_momentum(backbone, SCRATCH_BN_MOMENTUM)
    backbone.trainable = False
    x = backbone(backbone_input(backbone, x), training=backbone_training)
    norm = model_cfg.head.norm if model_cfg.head.norm != "auto" else ("batch" if pretrained else "none")
    head = replace(model_cfg.head, norm=norm)
    return inputs, _head(x, head, classifier, spec.pools_inside, spec.tokens)


def set_batchnorm_momentum(backbone, momentum: float) -> None:
    """Set the momentum of every BatchNormalization layer of `backbone`."""
    for layer in backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def label_kind(model) -> LabelKind:
    """Whether a kerastl model answers one class per image (softmax) or any number (a sigmoid head)."""
    return LabelKind(bool(model_facts(model)["multi_label"]))


def _head(features, head: HeadConfig, classifier: ClassifierSpec, pooled: bool, tokens=None):
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
        x = keras.layers.Dropout(head.dropout, seed=classifier.seed, name=f"dropout_{i}")(x) if head.dropout else x
        x = keras.layers.Dense(units, activation="relu", name=f"hidden_{i}")(x)
    if head.dropout:
        x = keras.layers.Dropout(head.dropout, seed=classifier.seed, name="dropout")(x)
    logits = keras.layers.Dense(classifier.num_classes, dtype="float32", name=LOGITS_LAYER)(x)
    return Calibrated(classifier.multi_label, dtype="float32", name=OUTPUT_LAYER)(logits)


def feature_extractor(model):
    """A Keras model from uint8 pixels to the pooled frozen features, sharing `model`'s layers."""
    import keras

    return keras.Model(model.input, model.get_layer(model_facts(model)["feature_layer"]).output)


def load_model(path: str | Path):
    """Load a kerastl `.keras` model (safe mode: no code is run from the file).

    Example:
        >>> model = load_model("runs/quickstart/model.keras")
    """
    from kerastl.serializable import register_all

    register_all()
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise ExportError(f"No model at {str(path)!r}; expected a run directory or a .keras file.")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, OSError) as exc:
        raise ExportError(f"{path}: not a loadable Keras model ({str(exc).splitlines()[0]}).") from None


def model_input_shape(model) -> tuple[int, int, int]:
    """(H, W, C) of the raw images a kerastl model takes."""
    return tuple(int(d) for d in model.input_shape[1:])


def model_resize(model) -> str:
    """How a kerastl model resizes images of another aspect ratio than its input ("squash", "crop" or "pad"); files
    read for it (`predict`, `explain`) are resized by the same rule."""
    return model.get_layer("preprocess").resize
