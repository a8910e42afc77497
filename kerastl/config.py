"""Configuration: frozen dataclasses read from YAML, with `--set key.sub=value` overrides.

Every key is checked: an unknown key is an error with a "did you mean", a value of the wrong
type names the key, the expected type and what was given.

Example:
    >>> cfg = load_config("configs/quickstart.yaml", overrides=["phases.0.epochs=1"])
    >>> cfg.phases[0].epochs
    1
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import numbers
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from kerastl.errors import ConfigError
from kerastl.registry import registry_of
from kerastl.weights import Weights


@dataclass(frozen=True)
class SplitConfig:
    """Fractions of the labelled data held out, stratified by class and seeded."""

    validation: float = 0.15
    test: float = 0.15


ResizeMode = Literal["squash", "crop", "pad"]  # data.resize: how a picture of another aspect ratio meets the input
RESIZE_MODES = typing.get_args(ResizeMode)


@dataclass(frozen=True)
class DataConfig:
    """Where the images come from and how they are split and batched."""

    source: str = "builtin:digits"
    validation: Optional[str] = None
    test: Optional[str] = None
    label_column: str = "label"
    image_shape: Optional[tuple[int, ...]] = None
    pixel_layout: Literal["hwc", "chw"] = "hwc"
    channels: Literal[1, 3] = 3
    classes: Optional[tuple[str, ...]] = None
    max_per_class: Optional[int] = None
    split: SplitConfig = field(default_factory=SplitConfig)
    batch_size: int = 32
    class_weight: Optional[Literal["balanced"]] = None
    sampling: Optional[Literal["balanced"]] = None
    chunk_size: int = 10_000
    out_of_range: Literal["error", "clip"] = "error"
    pixel_scale: Literal["auto", 255, 1] = "auto"
    bad_images: Literal["error", "skip"] = "error"
    multi_label: bool = False
    label_separator: str = "|"
    cache: Literal["memory", "disk"] = "memory"
    deduplicate: Literal["none", "exact", "near"] = "none"
    resize: ResizeMode = "squash"


@dataclass(frozen=True)
class HeadConfig:
    """The new classifier on top of the backbone.

    `norm: batch` standardizes the pooled features (BatchNormalization) before the Dense layers:
    pretrained features are large and un-normalized (VGG16's reach ~500), and a fresh Dense layer on
    them converges slowly. `auto` is batch for pretrained weights and none for `weights: none`, whose
    features are tiny and change as the whole network trains (there the BatchNorm's 1/std amplifies
    the gradients into the backbone). `init: probe` starts the output layer from a linear probe fitted on the
    frozen features (LP-FT); `auto` does so wherever it applies (single-label, no hidden layers).
    """

    pooling: Literal["avg", "max", "flatten"] = "avg"
    norm: Literal["auto", "batch", "none"] = "auto"
    dropout: float = 0.2
    hidden: tuple[int, ...] = ()
    init: Literal["auto", "probe", "random"] = "auto"


def size_hw(size) -> tuple[int, int]:
    """(height, width) of an input size given as one side (square) or as [height, width].

    Example:
        >>> size_hw(224), size_hw([192, 256])
        ((224, 224), (192, 256))
    """
    if isinstance(size, numbers.Integral):
        return int(size), int(size)
    height, width = size
    return int(height), int(width)


@dataclass(frozen=True)
class ModelConfig:
    """Backbone, its weights and input size, and the head."""

    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"
    input_size: Optional[Union[int, tuple[int, ...]]] = None
    center_crop: Optional[float] = None
    backbone_options: dict = field(default_factory=dict)
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation inside the model (training only), and on training batches in tf.data: Keras' MixUp
    and CutMix, and keras-cv's GridMask (`gridmask`: the largest share of each grid cell masked, 0 = off)."""

    preset: str = "light"
    flip: bool = True
    mixup: float = 0.0
    cutmix: float = 0.0
    gridmask: float = 0.0

    @property
    def on_batches(self) -> bool:
        """Whether training batches are augmented in tf.data (then the backbone sees new pixels every epoch)."""
        return self.mixup > 0 or self.cutmix > 0 or self.gridmask > 0


@dataclass(frozen=True)
class PhaseConfig:
    """One training phase.

    `unfreeze` is the backbone's trainable scope: "head" (or null: backbone frozen), "top:N" (or
    just N: the top N layers), "blocks:K" (the backbone's last K blocks, e.g. EfficientNet `block7`),
    "from:LAYER" (that layer and all above it) or "all". `lr_decay` multiplies the learning rate by
    its value once per block deeper; `bn` keeps BatchNorm in inference mode ("frozen") or lets its
    statistics update ("train"); "auto" is frozen for pretrained weights and train for `weights: none`; `ema` keeps an exponential moving average of the weights.
    """

    name: str
    epochs: int = 5
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = 0
    unfreeze: Union[int, str, None] = None
    lr_decay: Optional[float] = None
    bn: Literal["auto", "frozen", "train"] = "auto"
    ema: Optional[float] = None
    label_smoothing: float = 0.0
    early_stopping: Optional[int] = None

    @functools.cached_property
    def scope(self) -> tuple[str, Any]:
        """`unfreeze` parsed (once per phase): ("head" | "top" | "blocks" | "from" | "all" | "lora", its argument).

        Example:
            >>> PhaseConfig("finetune", unfreeze="blocks:2").scope
            ('blocks', 2)
        """
        return parse_unfreeze(self.unfreeze, f"phase {self.name!r} unfreeze")


@dataclass(frozen=True)
class StrategyConfig:
    """Phases from a preset instead of a `phases` list; `kerastl advise` explains the choice.

    `similarity` hints how close the images are to the backbone's source data (ImageNet); `epochs`
    and `learning_rate` are those of the head phase, later phases scale them (see kerastl.training.strategies).
    """

    preset: str = "auto"
    similarity: Optional[Literal["high", "low"]] = None
    epochs: int = 5
    learning_rate: float = 1e-3
    blocks: int = 3


@dataclass(frozen=True)
class PretrainConfig:
    """Pretrain the backbone from scratch on a source task (for use without ImageNet weights)."""

    source: str = "builtin:digits"
    classes: Optional[tuple[str, ...]] = None
    epochs: int = 10
    learning_rate: float = 1e-3
    batch_size: int = 32
    validation: float = 0.15
    bn_momentum: float = 0.9


@dataclass(frozen=True)
class ComputeConfig:
    """How training runs: cached backbone features for frozen phases, XLA, numeric precision, and
    `distribute` (see `kerastl.training.distribute`): `mirrored` (tf.distribute.MirroredStrategy over every GPU
    of one machine) or `multihost` (Keras DataParallel over processes/hosts, JAX backend)."""

    cache_features: bool = True
    augmented_copies: int = 0
    jit_compile: Literal["auto", True, False] = "auto"
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16"] = "float32"
    distribute: str = "none"


@dataclass(frozen=True)
class LossConfig:
    """The training loss: `crossentropy`, or `focal` (Keras' focal cross-entropy, Lin et al., 2017: the loss of
    an image is scaled by (1 - p)^gamma, so the many easy images of large classes count less)."""

    kind: Literal["crossentropy", "focal"] = "crossentropy"
    focal_gamma: float = 2.0


@dataclass(frozen=True)
class DistillConfig:
    """Knowledge distillation (Hinton et al., 2015): train on soft targets from a trained kerastl run,
    `alpha` x the true label + (1 - alpha) x the teacher's probabilities at `temperature`."""

    teacher: str
    temperature: float = 2.0
    alpha: float = 0.5


@dataclass(frozen=True)
class TrackingConfig:
    """Experiment tracking: `kind: mlflow` logs the config as parameters, every epoch's metrics, the final
    metrics and the run's files to MLflow (the `tracking` extra). `uri` is the MLflow tracking URI;
    default a local SQLite store `mlflow.db` beside the run directory, artifacts in `mlartifacts/` there."""

    kind: Literal["none", "mlflow"] = "none"
    uri: Optional[str] = None
    experiment: str = "kerastl"


@dataclass(frozen=True)
class ResultsConfig:
    """What a run leaves once it has trained: `keep` which weights as `model.keras` (`best`: the best epoch by
    `monitor`, `val_accuracy` (ties: lower validation loss) or `val_loss`, the last weights kept too as
    `model_last.keras` when they differ; `last`),
    `calibration` (`temperature`: temperature scaling fitted on the validation split) and `evaluation`
    (write `evaluation/`, as `kerastl evaluate` does, on the held-out split)."""

    keep: Literal["best", "last"] = "best"
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    calibration: Literal["temperature", "none"] = "temperature"
    evaluation: bool = True


@dataclass(frozen=True)
class TuneConfig:
    """`kerastl tune`: a KerasTuner search over config keys (see `kerastl.tuning`), read only by `tune`.

    `space` maps config keys (`phases.1.learning_rate`, `model.head.dropout`; `phases.*.KEY` is every phase) to
    a list of choices or a range `{min, max, log, step}`; empty: the default space of the config's phases.
    `algorithm`: KerasTuner's `random` search, `bayesian` optimisation, or `hyperband` (successive halving
    over the phases' epochs). `trials` and `time` (seconds, or "90s", "30m", "2h") bound the search; the
    objective is measured on the validation split (`folds` >= 2: the mean over k-fold cross-validation of
    training + validation images), never on the test split. The chosen config is then trained again on
    `seeds` other seeds to show the spread, and `compare_default` trains the config as given beside it.
    """

    algorithm: Literal["random", "bayesian", "hyperband"] = "random"
    trials: int = 10
    time: Union[int, str, None] = None
    objective: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    space: dict = field(default_factory=dict)
    folds: int = 0
    seeds: int = 2
    compare_default: bool = True

    @property
    def seconds(self) -> Optional[float]:
        """The time budget in seconds (None: no budget)."""
        return None if self.time is None else parse_duration(self.time, "tune.time")


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(value: Union[int, float, str], key: str) -> float:
    """Seconds in a duration given as a number of seconds or text like "90s", "30m", "1.5h".

    Example:
        >>> parse_duration("30m", "tune.time")
        1800.0
    """
    text = str(value).strip()
    number, unit = (text[:-1], text[-1]) if text[-1:] in DURATION_UNITS else (text, "s")
    try:
        seconds = float(number) * DURATION_UNITS[unit]
    except ValueError:
        seconds = float("nan")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"Config key {key!r} must be a positive duration like 600, 90s, 30m or 2h; got {value!r}.")
    return seconds


def default_phases() -> tuple[PhaseConfig, ...]:
    """The phases of a config without `phases` (and of `Recipe.default()`): head, then the top 30 layers at 1e-5."""
    return (
        PhaseConfig(name="head", epochs=5, learning_rate=1e-3),
        PhaseConfig(name="finetune", epochs=5, learning_rate=1e-5, unfreeze=30),
    )


@dataclass(frozen=True)
class Config:
    """A whole training run."""

    name: str = "run"
    seed: int = 42
    output_dir: Optional[str] = None
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    phases: tuple[PhaseConfig, ...] = field(default_factory=default_phases)
    strategy: Optional[StrategyConfig] = None
    pretrain: Optional[PretrainConfig] = None
    distill: Optional[DistillConfig] = None
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    results: ResultsConfig = field(default_factory=ResultsConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    tune: Optional[TuneConfig] = None
    tensorboard: bool = False
    deterministic: bool = False


def load_config(path: str | Path | None = None, overrides: typing.Sequence[str] = ()) -> Config:
    """Read a YAML config, apply `key.sub=value` overrides and validate it.

    Args:
        path: YAML file; None starts from the defaults.
        overrides: strings like `"phases.0.epochs=1"`; the value is parsed as YAML.

    Returns:
        The validated, frozen `Config`.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or inconsistent values.

    Example:
        >>> cfg = load_config(None, ["model.weights=none", "data.source=builtin:digits"])
        >>> cfg.model.weights
        'none'
    """
    raw: dict = {}
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise ConfigError(f"Cannot read config file {str(path)!r}: {exc.strerror}.") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"Config file {str(path)!r} is not valid YAML: {exc}".replace("\n", " ")) from None
        if not isinstance(raw, dict):
            raise ConfigError(f"Config file {str(path)!r} must hold a mapping of keys, got {type(raw).__name__}.")
    for override in overrides:
        apply_override(raw, override)
    return config_from_dict(raw)


def read_config(config: "Config | str | Path | None", overrides: typing.Sequence[str], function: str) -> Config:
    """What a Python entry point was given as its config: a `Config`, or a YAML path (None: the defaults) with the
    deprecated `overrides` strings of the command line's `--set`, which get a `DeprecationWarning`."""
    if overrides:
        warn_overrides(function, stacklevel=4)
    return config if isinstance(config, Config) else load_config(config, overrides)


def warn_overrides(function: str, stacklevel: int = 3) -> None:
    """The `DeprecationWarning` of a Python entry point given `overrides` strings; `stacklevel` 3 points at the
    caller of the function that calls this one."""
    warnings.warn(
        f"{function}(overrides=[...]) is deprecated: pass a Config (kerastl.load_config, then dataclasses.replace); "
        "`key=value` strings are the command line's --set.", DeprecationWarning, stacklevel=stacklevel,
    )


def section_from_dict(cls: type, raw: dict, where: str) -> Any:
    """One config section (`HeadConfig`, `AugmentConfig`, ...) from a plain dict, checked and coerced as
    `load_config` does (unknown keys with a "did you mean", wrong types, lists to tuples); `where` is its key.

    Example:
        >>> section_from_dict(HeadConfig, {"hidden": [64]}, "model.head").hidden
        (64,)
    """
    return _build(cls, raw, where)


def config_from_parts(**sections: Any) -> Config:
    """A checked `Config` from sections given as objects (`model=ModelConfig(...)`, `phases=(...)`, ...); the
    checks are those of `load_config`.

    Example:
        >>> config_from_parts(model=ModelConfig(backbone="vgg16", weights="none")).model.backbone
        'vgg16'
    """
    cfg = Config(**sections)
    _check_consistency(cfg)
    return cfg


def config_from_dict(raw: dict) -> Config:
    """Validate a plain dict (as read from YAML) into a `Config`.

    Example:
        >>> config_from_dict({"seed": 1}).seed
        1
    """
    raw = _expand_strategy(raw)
    if raw.get("strategy") is not None and "phases" not in raw:
        raw = {**raw, "phases": []}
    cfg = _build(Config, raw, "")
    _check_consistency(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict:
    """The config as plain YAML-ready data (lists, dicts, scalars)."""
    return _plain(dataclasses.asdict(cfg))


def dump_config(cfg: Config) -> str:
    """The config as YAML text, with every default filled in."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def apply_override(raw: dict, override: str) -> None:
    """Set `a.b.0.c=value` in a nested dict/list structure, in place (the value read as YAML)."""
    key, sep, text = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"Override {override!r} must look like key.sub=value, e.g. phases.0.epochs=1.")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        value = text
    set_key(raw, key, value)


def set_key(raw: dict, key: str, value: Any) -> None:
    """Set the config key `a.b.0.c` to `value` in a nested dict/list structure (as read from YAML), in place.

    Example:
        >>> raw = {}; set_key(raw, "model.head.dropout", 0.5); raw
        {'model': {'head': {'dropout': 0.5}}}
    """
    parts = key.split(".")
    if parts[0] == "strategy":  # a strategy set from outside replaces the file's phases list
        raw.pop("phases", None)
        raw.update(_expand_strategy(raw))
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"Override {key!r}: {where!r} needs an index below {len(node)}, got {part!r}.")
            index = int(part)
            if last:
                node[index] = value
            else:
                node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {} if not _is_phases(parts, depth) else _default_phase_dicts())
        else:
            raise ConfigError(f"Override {key!r}: {'.'.join(parts[:depth])!r} holds a value, not keys.")


def _expand_strategy(raw: dict) -> dict:
    """`strategy: auto` is short for `strategy: {preset: auto}`."""
    if isinstance(raw.get("strategy"), str):
        return {**raw, "strategy": {"preset": raw["strategy"]}}
    return raw


def _is_phases(parts: list[str], depth: int) -> bool:
    return depth == 0 and parts[0] == "phases"


def _default_phase_dicts() -> list[dict]:
    return [dataclasses.asdict(p) for p in default_phases()]


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"Config key {where or '<root>'!r} must be a mapping, got {raw!r}.")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"Unknown config key {path!r}.{hint} Known keys here: {', '.join(fields)}.")
        kwargs[key] = _coerce(value, hints[key], path)
    missing = [
        name for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"Config key {where or '<root>'!r} is missing required key(s): {', '.join(missing)}.")
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        others = [option for option in options if option is not type(None)]
        if len(others) == 1:  # Optional[X]: X's own error is the precise one
            return _coerce(value, others[0], path)
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, path)
            except ConfigError:
                pass
        raise ConfigError(f"Config key {path!r} must be {_describe(hint)}, got {value!r}.")
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value in allowed and type(value) in {type(a) for a in allowed}:
            return value
        raise ConfigError(f"Config key {path!r} must be one of {', '.join(map(repr, allowed))}; got {value!r}.")
    if origin is tuple:
        item_type = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"Config key {path!r} must be a list of {_describe(item_type)}, got {value!r}.")
        return tuple(_coerce(item, item_type, f"{path}.{i}") for i, item in enumerate(value))
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"Config key {path!r} must be a mapping, got {value!r}.")
        _check_finite(value, path)
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is not None and math.isfinite(number):
            return number
        if number is not None:
            raise ConfigError(f"Config key {path!r} must be a finite number, got {value!r}.")
    elif hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool) and path.split(".")[-2:-1] == ["classes"]:
            return str(value)
    raise ConfigError(f"Config key {path!r} must be {_describe(hint)}, got {value!r}.")


def _check_finite(value: Any, path: str) -> None:
    """Raise ConfigError at the first infinite or NaN number in a free-form mapping (`model.backbone_options`,
    `tune.space`), lists and mappings within it included."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"Config key {path!r} must be a finite number, got {value!r}.")
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for key, item in items:
        _check_finite(item, f"{path}.{key}")


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is Literal:
        return " or ".join(map(repr, typing.get_args(hint)))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    if hint is type(None):
        return "null"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(hint, str(hint))


# Inclusive bounds of numeric keys (None: unbounded); "phases.*" applies to every phase. Values outside
# would fail later, deep in pandas, tf.data or Keras, or train nothing.
BOUNDS = {
    "seed": (0, 2**32 - 1),
    "data.max_per_class": (1, None),
    "data.chunk_size": (1, None),
    "data.batch_size": (1, 2**16),
    "model.input_size": (1, 2048),
    "augment.mixup": (0, 100),
    "augment.cutmix": (0, 100),
    "augment.gridmask": (0, 1),
    "compute.augmented_copies": (0, 1000),
    "phases.*.epochs": (0, 100_000),
    "phases.*.warmup_epochs": (0, 100_000),
    "phases.*.early_stopping": (1, None),
    "phases.*.learning_rate": (None, 1000),
    "strategy.epochs": (1, 100_000),
    "strategy.learning_rate": (None, 1000),
    "pretrain.epochs": (0, 100_000),
    "pretrain.learning_rate": (1e-12, 1000),
    "pretrain.batch_size": (1, 2**16),
    "pretrain.validation": (0, 0.9),
    "pretrain.bn_momentum": (0, 0.9999),
    "loss.focal_gamma": (0, 10),
    "distill.temperature": (0.05, 100),
    "distill.alpha": (0, 1),
    "tune.trials": (1, 100_000),
    "tune.seeds": (0, 100),
    "tune.folds": (0, 100),
}


def _check_bounds(cfg: Config) -> None:
    for pattern, (low, high) in BOUNDS.items():
        section, _, rest = pattern.partition(".*.")
        items = [(f"{section}.{i}.{rest}", _lookup(phase, rest)) for i, phase in enumerate(cfg.phases)] if rest else [
            (pattern, _lookup(cfg, pattern))
        ]
        for key, value in items:
            if value is None:
                continue
            values = value if isinstance(value, tuple) else (value,)  # model.input_size: [height, width]
            if any((low is not None and v < low) or (high is not None and v > high) for v in values):
                shown = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
                raise ConfigError(f"Config key {key!r} must be in {shown}, got {shown_value(value)}.")


def shown_value(value: Any) -> str:
    """A config value as the user wrote it in YAML (a tuple as a list)."""
    return str(list(value)) if isinstance(value, tuple) else str(value)


def _lookup(node: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        node = getattr(node, part, None) if node is not None else None
    return node


# Config keys whose values are the names of a registry (by its kind), besides the values listed: the registry
# is the one list of choices (created by `import kerastl`, which imports every module holding one, so this
# module imports none of them). "phases.*" is every phase.
REGISTRY_CHOICES = {
    "model.backbone": ("backbone", ()),
    "augment.preset": ("augmentation preset", ()),
    "phases.*.optimizer": ("optimizer", ()),
    "strategy.preset": ("strategy preset", ("auto",)),
    "compute.distribute": ("distribute engine", ()),
}


def choice_registry(key: str):
    """The `Registry` whose names config key `key` takes (a key of `REGISTRY_CHOICES`)."""
    return registry_of(REGISTRY_CHOICES[key][0])


def _check_registry_choices(cfg: Config) -> None:
    for key, (_, also) in REGISTRY_CHOICES.items():
        section, _, field_name = key.rpartition(".")
        if section == "phases.*":
            places = [(f"phases.{i}.{field_name}", getattr(p, field_name)) for i, p in enumerate(cfg.phases)]
        else:
            places = [(key, _lookup(cfg, key))] if _lookup(cfg, section) is not None else []
        for path, value in places:
            if value in also:
                continue
            try:
                choice_registry(key).get(value)
            except ConfigError as exc:
                extra = f" (or {', '.join(also)})" if also else ""
                raise ConfigError(f"Config key {path!r}: {exc}".rstrip(".") + f"{extra}.") from None


def _check_consistency(cfg: Config) -> None:
    _check_registry_choices(cfg)
    _check_bounds(cfg)
    split = cfg.data.split
    for name in ("validation", "test"):
        fraction = getattr(split, name)
        if not 0 <= fraction < 1:
            raise ConfigError(f"Config key 'data.split.{name}' must be in [0, 1), got {fraction}.")
    if split.validation + split.test >= 1:
        raise ConfigError("Config keys 'data.split.validation' + 'data.split.test' must sum to less than 1.")
    if cfg.compute.augmented_copies < 0:
        raise ConfigError(f"Config key 'compute.augmented_copies' must be 0 or more, got {cfg.compute.augmented_copies}.")
    if cfg.data.batch_size < 1:
        raise ConfigError(f"Config key 'data.batch_size' must be at least 1, got {cfg.data.batch_size}.")
    if cfg.data.image_shape is not None and (len(cfg.data.image_shape) not in (2, 3) or min(cfg.data.image_shape) < 1):
        raise ConfigError(f"Config key 'data.image_shape' must be [H, W] or [H, W, C], got {list(cfg.data.image_shape)}.")
    for key in ("class_weight", "sampling"):
        if cfg.data.multi_label and getattr(cfg.data, key) is not None:
            raise ConfigError(f"Config key 'data.{key}' works for single-label data only; drop it with data.multi_label: true.")
    if cfg.data.multi_label and not cfg.data.label_separator:
        raise ConfigError("Config key 'data.label_separator' must not be empty.")
    if Weights.parse(cfg.model.weights).kind == "pretrain" and cfg.pretrain is None:
        raise ConfigError("Config key 'model.weights' is 'pretrain' but the config has no 'pretrain' section.")
    if cfg.tune is not None:
        _check_tune(cfg.tune)
    if cfg.strategy is not None:
        _check_strategy(cfg)
    elif not cfg.phases:
        raise ConfigError("Config key 'phases' must list at least one phase (or set 'strategy').")
    names = [p.name for p in cfg.phases]
    if len(set(names)) != len(names):
        raise ConfigError(f"Config key 'phases' has repeated phase names: {names}.")
    for i, phase in enumerate(cfg.phases):
        if phase.epochs < 0:
            raise ConfigError(f"Config key 'phases.{i}.epochs' must be 0 or more, got {phase.epochs}.")
        if phase.learning_rate <= 0:
            raise ConfigError(f"Config key 'phases.{i}.learning_rate' must be positive, got {phase.learning_rate}.")
        parse_unfreeze(phase.unfreeze, f"phases.{i}.unfreeze")
        if phase.lr_decay is not None and not 0 < phase.lr_decay <= 1:
            raise ConfigError(f"Config key 'phases.{i}.lr_decay' must be in (0, 1], got {phase.lr_decay}.")
        if phase.ema is not None and not 0 < phase.ema < 1:
            raise ConfigError(f"Config key 'phases.{i}.ema' must be in (0, 1), e.g. 0.999; got {phase.ema}.")
        if not 0 <= phase.label_smoothing < 1:
            raise ConfigError(f"Config key 'phases.{i}.label_smoothing' must be in [0, 1), got {phase.label_smoothing}.")
    _check_model(cfg)  # after the phases: the backbone's rules read each phase's parsed `unfreeze`


def _check_model(cfg: Config) -> None:
    """The model section's own rules; those that depend on the backbone (its input size, pooling, LoRA) live with the
    backbone specs (`check_config`, found through the registry)."""
    size = cfg.model.input_size
    if isinstance(size, tuple) and len(size) != 2:
        raise ConfigError(f"Config key 'model.input_size' must be one side or [height, width], got {list(size)}.")
    choice_registry("model.backbone").get(cfg.model.backbone).check_config(cfg)
    if cfg.model.center_crop is not None and not 0 < cfg.model.center_crop <= 1:
        raise ConfigError(f"Config key 'model.center_crop' must be in (0, 1], got {cfg.model.center_crop}.")
    if not 0 <= cfg.model.head.dropout < 1:
        raise ConfigError(f"Config key 'model.head.dropout' must be in [0, 1), got {cfg.model.head.dropout}.")
    if cfg.model.head.init == "probe" and (cfg.model.head.hidden or cfg.data.multi_label):
        raise ConfigError(
            "Config key 'model.head.init' is 'probe', which needs a single-label head without hidden layers; "
            "set it to auto or random, or drop model.head.hidden / data.multi_label."
        )


def _check_tune(tune: TuneConfig) -> None:
    """The tune section's own values; its `space` is checked against the config by `kerastl.tuning.space`."""
    if tune.folds == 1:
        raise ConfigError("Config key 'tune.folds' must be 0 (select on the validation split) or at least 2, got 1.")
    if tune.time is not None:
        parse_duration(tune.time, "tune.time")


def _check_strategy(cfg: Config) -> None:
    strategy = cfg.strategy
    if cfg.phases:
        raise ConfigError("Config keys 'strategy' and 'phases' exclude each other: the strategy preset plans the phases.")
    if strategy.epochs < 1:
        raise ConfigError(f"Config key 'strategy.epochs' must be at least 1, got {strategy.epochs}.")
    if strategy.learning_rate <= 0:
        raise ConfigError(f"Config key 'strategy.learning_rate' must be positive, got {strategy.learning_rate}.")
    if strategy.blocks < 1:
        raise ConfigError(f"Config key 'strategy.blocks' must be at least 1, got {strategy.blocks}.")


UNFREEZE_FORMS = "head, top:N (or N), blocks:K, from:LAYER_NAME, all, lora:R"


def parse_unfreeze(value: Union[int, str, None], key: str = "unfreeze") -> tuple[str, Union[int, str, None]]:
    """Split an `unfreeze` value into (kind, argument); kind is head, top, blocks, from, all or lora.

    Example:
        >>> parse_unfreeze("blocks:2")
        ('blocks', 2)
        >>> parse_unfreeze(30)
        ('top', 30)
    """
    if value is None or value == "head":
        return "head", None
    if value == "all":
        return "all", None
    if isinstance(value, int) and not isinstance(value, bool):
        kind, argument = "top", str(value)
    elif isinstance(value, str) and ":" in value:
        kind, _, argument = value.partition(":")
    else:
        raise ConfigError(f"Config key {key!r} must be one of {UNFREEZE_FORMS}; got {value!r}.")
    if kind == "from" and argument:
        return kind, argument
    if kind in ("top", "blocks") and argument.isdigit():
        return kind, int(argument)
    if kind == "lora" and argument.isdigit() and int(argument) > 0:
        return kind, int(argument)
    raise ConfigError(f"Config key {key!r} must be one of {UNFREEZE_FORMS}; got {value!r}.")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
