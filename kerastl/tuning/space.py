"""The search space of `kerastl tune`: config keys and the values a trial may give them.

A `tune.space` entry maps a config key to a list of choices or a range:

    tune:
      space:
        phases.0.learning_rate: {min: 1.0e-4, max: 1.0e-2, log: true}
        phases.1.unfreeze: [head, "blocks:1", "blocks:2", all]
        phases.*.label_smoothing: [0.0, 0.1]      # every phase

Every value is checked against the config before the search starts (a value that makes the config invalid is a
`ConfigError` naming `tune.space.KEY`). Without a space, `default_space` searches the config's own phases.

Example:
    >>> cfg = load_config("configs/quickstart.yaml")
    >>> space = read_space(cfg)
    >>> trial_config(cfg, {"model.head.dropout": 0.5}).model.head.dropout
    0.5
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

from kerastl.config import (
    Config,
    ConfigError,
    TuneConfig,
    config_from_dict,
    config_to_dict,
    set_key,
)
from kerastl.registry import registry_of

# Keys a search may not vary: which images are trained and judged on, the seed (choosing among seeds is choosing
# luck), where the run goes, and the search itself.
FIXED_KEYS = ("name", "seed", "output_dir", "tune", "data.source", "data.validation", "data.test", "data.split",
              "data.classes", "data.max_per_class", "data.label_column", "data.multi_label", "pretrain", "distill")
EVERY_PHASE = "phases.*."


@dataclass(frozen=True)
class Dimension:
    """One searched config key: `choices`, or a range from `low` to `high` (`log`: sampled on a log scale;
    `step`: a grid step); integers when both ends are integers and `log` is off or they are."""

    key: str
    choices: tuple = ()
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    step: Optional[float] = None

    @property
    def is_range(self) -> bool:
        return not self.choices

    @property
    def integer(self) -> bool:
        return self.is_range and isinstance(self.low, int) and isinstance(self.high, int)

    def candidates(self) -> tuple:
        """The values checked before the search: every choice, or both ends of the range."""
        return self.choices or (self.low, self.high)

    def declare(self, hp, default: Any) -> None:
        """Declare this dimension on KerasTuner `HyperParameters` `hp`, starting at `default` when it is one of its values."""
        if self.is_range:
            inside = isinstance(default, (int, float)) and not isinstance(default, bool) and self.low <= default <= self.high
            start = (int(default) if self.integer else float(default)) if inside else None
            sampling = "log" if self.log else "linear"
            if self.integer:
                hp.Int(self.key, self.low, self.high, step=int(self.step) if self.step else None, sampling=sampling, default=start)
            else:
                hp.Float(self.key, float(self.low), float(self.high), step=self.step, sampling=sampling, default=start)
            return
        labels = [_label(value) for value in self.choices]
        hp.Choice(self.key, labels, default=_label(default) if default in self.choices else None)

    def value_of(self, sampled: Any) -> Any:
        """The config value of a value KerasTuner sampled (choices are sampled by their text label)."""
        if self.is_range:
            return sampled
        return {_label(value): value for value in self.choices}[sampled]


def _label(value: Any) -> str:
    """A choice as KerasTuner holds it: one type per hyperparameter, so every choice is its YAML text."""
    return value if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else repr(value) if value is not None else "null"


def require_keras_tuner() -> None:
    """Raise a `ConfigError` naming the extra when KerasTuner is not installed."""
    import importlib.util

    if importlib.util.find_spec("keras_tuner") is None:
        raise ConfigError("kerastl tune runs KerasTuner, which is not installed: pip install 'kerastl[tune]'.")


def with_budget(cfg: Config, trials: Optional[int] = None, time: Optional[int | str] = None) -> Config:
    """`cfg` with a tune section (default `TuneConfig()`) whose `trials` and `time` are replaced where given, checked
    as a config's own values are.

    Raises:
        ConfigError: a bad budget, or `compute.distribute` set (trials run on one device).
    """
    limits = {key: value for key, value in (("trials", trials), ("time", time)) if value is not None}
    cfg = config_from_dict(config_to_dict(dataclasses.replace(cfg, tune=dataclasses.replace(cfg.tune or TuneConfig(), **limits))))
    if cfg.compute.distribute != "none":
        raise ConfigError("Config key 'compute.distribute' must be none for kerastl tune: trials run on one device.")
    require_keras_tuner()
    return cfg


def read_space(cfg: Config) -> tuple[Dimension, ...]:
    """The dimensions of `cfg.tune.space` (or `default_space(cfg)` when it is empty), each value checked.

    Raises:
        ConfigError: a key the search may not vary, a malformed entry, or a value that makes the config invalid.
    """
    tune = cfg.tune or TuneConfig()
    entries = tune.space or default_space(cfg)
    dimensions = tuple(_dimension(key, spec) for key, spec in entries.items())
    for dimension in dimensions:
        for value in dimension.candidates():
            try:
                trial_config(cfg, {dimension.key: value})
            except ConfigError as exc:
                raise ConfigError(f"Config key 'tune.space.{dimension.key}': the value {value!r} makes the config invalid: {exc}") from None
    return dimensions


def _dimension(key: Any, spec: Any) -> Dimension:
    where = f"tune.space.{key}"
    if not isinstance(key, str) or not key:
        raise ConfigError(f"Config key 'tune.space' must map config keys to choices or ranges, got key {key!r}.")
    fixed = next((k for k in FIXED_KEYS if key == k or key.startswith(k + ".")), None)
    if fixed is not None:
        raise ConfigError(f"Config key {where!r}: {fixed!r} is fixed during a search (it decides the data, the seed or the "
                          "search itself); search model, augment, loss, compute and phases keys.")
    if isinstance(spec, list) and spec:
        if any(isinstance(value, (dict, list)) for value in spec):
            raise ConfigError(f"Config key {where!r}: choices must be single values (numbers, text, true/false, null), got {spec!r}.")
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec) and any(isinstance(v, float) for v in spec):
            spec = [float(v) for v in spec]  # [0, 0.1] is two numbers, not an integer and a float
        return Dimension(key, choices=tuple(dict.fromkeys(spec)))
    if isinstance(spec, dict) and set(spec) >= {"min", "max"} and set(spec) <= {"min", "max", "log", "step"}:
        low, high = (_number(spec[end], f"{where}.{end}") for end in ("min", "max"))
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise ConfigError(f"Config key '{where}.log' must be true or false, got {log!r}.")
        step = None if spec.get("step") is None else _number(spec["step"], f"{where}.step")
        if not low < high:
            raise ConfigError(f"Config key {where!r}: min must be below max, got min {low} and max {high}.")
        if log and low <= 0:
            raise ConfigError(f"Config key {where!r}: a log range needs min > 0, got {low}.")
        if step is not None and step <= 0:
            raise ConfigError(f"Config key '{where}.step' must be positive, got {step}.")
        return Dimension(key, low=low, high=high, log=log, step=step)
    raise ConfigError(f"Config key {where!r} must be a list of choices or a range {{min, max, log, step}}, got {spec!r}.")


def _number(value: Any, key: str) -> float | int:
    if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as text
        try:
            value = float(value)
        except ValueError:
            pass
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return value
    raise ConfigError(f"Config key {key!r} must be a number, got {value!r}.")


def trial_config(base: Config, values: dict[str, Any], name: Optional[str] = None) -> Config:
    """`base` with each searched key set to its value (`phases.*.KEY` in every phase), without its tune section.

    Raises:
        ConfigError: the values make an invalid config (as `load_config` reports it).
    """
    raw = config_to_dict(dataclasses.replace(base, tune=None, name=name or base.name))
    for key, value in values.items():
        if key.startswith(EVERY_PHASE):
            for index in range(len(raw["phases"])):
                set_key(raw, f"phases.{index}.{key[len(EVERY_PHASE):]}", value)
        else:
            set_key(raw, key, value)
    return config_from_dict(raw)


def config_value(cfg: Config, key: str) -> Any:
    """The value `cfg` gives config key `key` (the first phase's for `phases.*.KEY`; None when absent)."""
    node: Any = config_to_dict(cfg)
    key = key.replace("*", "0", 1) if key.startswith(EVERY_PHASE) else key
    for part in key.split("."):
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return None
    return node


def default_space(cfg: Config) -> dict[str, Any]:
    """The space searched without `tune.space`: each phase's learning rate (a log range from 1/10 to 10x its
    value), the unfreeze depth of the phases after the first (the config's own, head only, the last one or two
    blocks, all), `lr_decay` of those, the head's dropout, label smoothing, the augmentation preset and the
    optimizer (Adam, or AdamW's weight decay). Configs planned by a `strategy` preset need their own space.

    Example:
        >>> sorted(default_space(load_config(None)))[:2]
        ['augment.preset', 'model.head.dropout']
    """
    if not cfg.phases:
        raise ConfigError("Config key 'tune.space' is needed with a 'strategy' preset (its phases are planned from the data); "
                          "list the keys to search, e.g. strategy.learning_rate: {min: 1.0e-4, max: 1.0e-2, log: true}.")
    space: dict[str, Any] = {}
    spec = registry_of("backbone").get(cfg.model.backbone)
    deeper = ["head", "blocks:1", "blocks:2", "all"] if spec.blocks else ["head", "top:10", "top:30", "all"]
    for index, phase in enumerate(cfg.phases):
        space[f"phases.{index}.learning_rate"] = {"min": phase.learning_rate / 10, "max": min(phase.learning_rate * 10, 1.0), "log": True}
        if index > 0 and phase.scope[0] in ("head", "top", "blocks", "from", "all"):
            space[f"phases.{index}.unfreeze"] = list(dict.fromkeys([phase.unfreeze or "head", *deeper]))
            space[f"phases.{index}.lr_decay"] = list(dict.fromkeys([phase.lr_decay, 0.8, 0.6]))
    space["model.head.dropout"] = [0.0, 0.2, 0.5]
    space["phases.*.label_smoothing"] = [0.0, 0.1]
    space["augment.preset"] = ["none", "light", "strong"]
    space["phases.*.optimizer"] = ["adam", "adamw"]
    return space
